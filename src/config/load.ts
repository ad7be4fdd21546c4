import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { sequenceLength } from '../model/dims';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import {
  CONFIG_FIELDS,
  ConvertError,
  isDiffusersFolder,
  readDiffusersConfig,
  type DiffusersConfig,
} from '../convert/config';
import { ConfigError, type ConfigProblem, UserError } from '../errors';
import {
  BUILTIN_ENGINE,
  curriculumSchema,
  MOVED_FIELDS,
  PRESET_FIELDS,
  stageConfigSchema,
  type StageConfig,
} from './schema';
import { BUILTIN, EngineCatalog, type EnginePreset, isTttVideoDitTrainer } from '../engine/preset';
import { externalBatchProblems, externalMeshProblems, layoutProblems } from '../engine/mesh';
import { layoutSupport } from '../engine/registry';
import { tttVideoDitProblems } from '../engine/ttt-video-dit/config';
import { normaliseStageName, videoLengthInfo, type VideoLengthInfo } from '../shared/stages';
import { PACKAGE_ROOT } from '../package-root';
import { type AllowedRoots, confinePath } from '../allowed-paths';
import { configPathProblems } from './confine';

/** Overrides: dotted field name -> value. Strings are parsed as TOML values when they look like one ("5", "1e-5", "true", "[...]"). */
export type Overrides = Record<string, unknown>;

export interface LoadOptions {
  /** Devices available to one training process; the mesh product must equal it. Default: availableDevices(). */
  devices?: number;
  /** Check that dataset and init paths exist (default true). */
  checkPaths?: boolean;
  /** Name shown for override problems (default "--set"). */
  overrideSource?: string;
  /**
   * The roots that paths may reach (src/allowed-paths.ts): config files are checked before they
   * are read, path fields before anything looks at them. Absent: nothing is confined (a local
   * `train`, whose user is the machine's user).
   */
  allowed?: AllowedRoots;
  /** Where `engine.preset` is looked up (default: the package's configs/engine/ only). */
  engines?: EngineCatalog;
  /**
   * Validate for the built-in trainer whatever `engine.preset` says: the trainer itself (the
   * training child, `ttt-curriculum train`) is the built-in engine.
   */
  builtinEngine?: boolean;
}

export interface LoadedStage {
  file: string;
  config: StageConfig;
  video: VideoLengthInfo;
  /** sha256 of the validated config JSON without [launcher] (and [engine] while built in): detects a config edited under a running job. */
  hash: string;
  /** The engine that trains it (engine.preset): the built-in trainer or a preset. */
  engine: EnginePreset;
}

export { PACKAGE_ROOT };

/**
 * Devices one training process drives. TensorFlow.js runs one device per process, so 1,
 * unless TTT_DEVICES says otherwise (for a launcher that runs one process per device).
 */
export function availableDevices(): number {
  const env = process.env.TTT_DEVICES;
  if (env !== undefined && /^\d+$/.test(env) && Number(env) > 0) return Number(env);
  return 1;
}

/** Resolves a config path: absolute, relative to `base` (default cwd), else relative to the package root. */
export function resolveConfigPath(p: string, base = process.cwd()): string {
  if (path.isAbsolute(p)) return p;
  const local = path.resolve(base, p);
  if (fs.existsSync(local)) return local;
  const shipped = path.resolve(PACKAGE_ROOT, p);
  if (fs.existsSync(shipped)) return shipped;
  return local;
}

function readToml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read config file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, {
      where: file,
      kind: 'ConfigError',
      fix: 'check the path; relative paths are resolved against the working directory, then the package root',
    });
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const msg = e instanceof TomlError ? `line ${e.line}, column ${e.column}: ${e.message.split('\n')[0]}` : String(e);
    throw new ConfigError([
      { file, field: '(file)', message: `not valid TOML: ${msg}`, fix: 'correct the TOML syntax' },
    ]);
  }
}

/** Parses a string override the way TOML would read it, falling back to the raw string. */
export function coerceOverride(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  try {
    const v = (parseToml(`v = ${raw}`) as { v: unknown }).v;
    return v;
  } catch {
    return raw;
  }
}

/** Names that would reach an object's prototype instead of a field of it. */
const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  if (parts.some((p) => PROTOTYPE_KEYS.has(p))) throw new Error(`setPath: refusing ${dotted}`);
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    const next = Object.hasOwn(cur, p) ? cur[p] : undefined;
    if (next === undefined || next === null || typeof next !== 'object' || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

function getPath(obj: unknown, parts: readonly PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const p of parts) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/**
 * Turns "--training.steps=5" or "--training.steps 5" style arguments into overrides (a flag with
 * no value, e.g. "--wandb.disable", is true); returns the rest untouched.
 */
export function parseCliOverrides(args: readonly string[]): { overrides: Overrides; rest: string[] } {
  const overrides: Overrides = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const m = /^--([a-z_]+\.[a-z0-9_.]+)(?:=(.*))?$/s.exec(a);
    if (!m) {
      rest.push(a);
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      const next = args[i + 1];
      // A flag without a value is a boolean set to true, as in TTT-Video-DiT's `--wandb.disable`.
      if (next === undefined || next.startsWith('--')) value = 'true';
      else {
        value = next;
        i++;
      }
    }
    overrides[m[1]!] = value;
  }
  return { overrides, rest };
}

function describeExpected(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `set it to a ${issue.expected}`;
    case 'invalid_value':
      return `use one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return `use a value ${issue.inclusive === false ? '>' : '>='} ${String(issue.minimum)}`;
    case 'too_big':
      return `use a value ${issue.inclusive === false ? '<' : '<='} ${String(issue.maximum)}`;
    default:
      return 'correct the value';
  }
}

function zodProblems(
  file: string,
  raw: unknown,
  error: z.ZodError,
  overridden: Set<string>,
  overrideSource: string,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const field = [...issue.path, key].join('.');
        const moved = MOVED_FIELDS[field];
        const preset = issue.path.join('.') === 'engine' && (PRESET_FIELDS as readonly string[]).includes(key);
        problems.push({
          file,
          field,
          value: getPath(raw, [...issue.path, key]),
          message: moved
            ? `this field lives in another section here`
            : preset
              ? 'this field belongs in an engine preset, not in a stage config'
              : 'unknown field',
          fix: moved
            ? `move it to ${moved}`
            : preset
              ? 'put it in a preset file <name>.toml in a worker --engine-dir folder (or configs/engine/) and set engine.preset = "<name>" (see README, "Engines")'
              : `remove it or check its spelling (see the configuration reference in README.md)`,
        });
      }
      continue;
    }
    const field = issue.path.join('.');
    const value = getPath(raw, issue.path);
    const missing = value === undefined && issue.code === 'invalid_type';
    problems.push({
      file: overridden.has(field) ? overrideSource : file,
      field,
      value,
      message: missing ? 'required field is missing' : issue.message,
      fix: missing ? `add ${field} to the file or pass --${field}=VALUE` : describeExpected(issue),
    });
  }
  return problems;
}

/** Semantic checks the schema cannot express. The mesh and batch rules depend on the engine. */
function semanticProblems(
  file: string,
  c: StageConfig,
  video: VideoLengthInfo,
  engine: EnginePreset,
  opts: LoadOptions,
): ConfigProblem[] {
  const engineProblems =
    engine.kind === 'command'
      ? [
          ...externalMeshProblems(file, c, engine),
          ...externalBatchProblems(file, c),
          ...commandLayoutProblems(engine),
          // What TTT-Video-DiT's train.py cannot train as configured: refused when the job is
          // planned, not at its first shard (stage 1's init weights: job.ts, externalInitProblems).
          ...(isTttVideoDitTrainer(engine) ? tttVideoDitProblems(c, file) : []),
        ]
      : [...meshProblems(file, c, opts.devices ?? availableDevices()), ...batchProblems(file, c)];
  return [
    ...engineProblems,
    ...patchProblems(file, c),
    ...sequenceProblems(file, c, video),
    ...headDimProblems(file, c),
    ...(opts.checkPaths !== false ? [...datasetProblems(file, c), ...initStateProblems(file, c)] : []),
  ];
}

/** A command preset's layout must be readable by this build, and its progress parseable. */
function commandLayoutProblems(engine: Extract<EnginePreset, { kind: 'command' }>): ConfigProblem[] {
  try {
    return layoutProblems(
      engine,
      layoutSupport(engine.checkpoint_layout, { file: engine.file, field: 'checkpoint_layout' }),
    );
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

/** The engine a stage names, from `opts.engines` (the built-in one for the trainer itself). */
function stageEngine(c: StageConfig, opts: LoadOptions, where: { file: string; field: string }): EnginePreset {
  if (opts.builtinEngine || c.engine.preset === BUILTIN_ENGINE) return BUILTIN;
  return (opts.engines ?? new EngineCatalog()).preset(c.engine.preset, where);
}

/** The device mesh must use exactly the devices of one training process. */
function meshProblems(file: string, c: StageConfig, devices: number): ConfigProblem[] {
  const p = c.parallelism;
  const mesh = p.dp_replicate * p.dp_sharding * p.tp_sharding;
  if (mesh === devices) return [];
  return [
    {
      file,
      field: 'parallelism.dp_replicate*dp_sharding*tp_sharding',
      value: `${p.dp_replicate}*${p.dp_sharding}*${p.tp_sharding} = ${mesh}`,
      message: `the device mesh has ${mesh} devices but ${devices} ${devices === 1 ? 'is' : 'are'} available to a training process`,
      fix: `choose factors whose product is ${devices}, e.g. --parallelism.dp_replicate=${devices} --parallelism.dp_sharding=1 --parallelism.tp_sharding=1 (or set TTT_DEVICES)`,
    },
  ];
}

/** The latent height and width must cut into whole patches. */
function patchProblems(file: string, c: StageConfig): ConfigProblem[] {
  const m = c.model;
  const problems: ConfigProblem[] = [];
  for (const [field, dim] of [
    ['model.latent_height', m.latent_height],
    ['model.latent_width', m.latent_width],
  ] as const) {
    if (dim % m.patch_size !== 0) {
      problems.push({
        file,
        field,
        value: dim,
        message: `not a multiple of model.patch_size = ${m.patch_size}`,
        fix: `use a multiple of ${m.patch_size}`,
      });
    }
  }
  return problems;
}

/** The TTT sequence must be a whole number of mini-batches; the fix names the nearest text lengths that make it one. */
function sequenceProblems(file: string, c: StageConfig, video: VideoLengthInfo): ConfigProblem[] {
  const m = c.model;
  const tokensPerFrame = Math.floor(m.latent_height / m.patch_size) * Math.floor(m.latent_width / m.patch_size);
  const videoTokens = video.latentFrames * tokensPerFrame;
  const seqLen = sequenceLength(video.segments, m.text_length, video.latentFrames, tokensPerFrame);
  const k = m.mini_batch_size;
  if (seqLen % k === 0) return [];
  const options = nearestFittingTextLengths(m.text_length, k, (L) =>
    sequenceLength(video.segments, L, video.latentFrames, tokensPerFrame),
  );
  return [
    {
      file,
      field: 'model.text_length',
      value: m.text_length,
      message: `the TTT sequence is ${video.segments} segments x ${m.text_length} text + ${video.latentFrames} frames x ${tokensPerFrame} patches = ${seqLen} tokens, not a multiple of the TTT mini-batch size model.mini_batch_size = ${k}`,
      fix:
        options.length > 0
          ? `set model.text_length = ${options.map((L) => `${L} (${video.segments * L + videoTokens} tokens = ${(video.segments * L + videoTokens) / k} x ${k})`).join(' or ')}, or change model.mini_batch_size`
          : `change model.mini_batch_size to a divisor of the sequence length`,
    },
  ];
}

/** The text lengths nearest to `textLength`, below then above, whose sequence length is a multiple of k. */
function nearestFittingTextLengths(textLength: number, k: number, seqLenOf: (L: number) => number): number[] {
  const fits = (L: number): boolean => seqLenOf(L) % k === 0;
  // Look one period (k) each way, but never more than SEARCH candidates: a huge mini_batch_size
  // would otherwise take seconds to minutes here, and its nearest fits are no useful advice.
  const SEARCH = 4096;
  const span = Math.min(k, SEARCH);
  let up = textLength + 1;
  while (!fits(up) && up < textLength + span + 1) up++;
  let down = textLength - 1;
  while (down > 0 && !fits(down) && down > textLength - span - 1) down--;
  return [down > 0 && fits(down) ? down : undefined, fits(up) ? up : undefined].filter(
    (x): x is number => x !== undefined,
  );
}

/** 3D rotary embeddings need a head width that splits into t, h and w rotation pairs. */
function headDimProblems(file: string, c: StageConfig): ConfigProblem[] {
  const m = c.model;
  if (m.attention_head_dim % 16 === 0) return [];
  return [
    {
      file,
      field: 'model.attention_head_dim',
      value: m.attention_head_dim,
      message:
        '3D rotary embeddings split a head into t (1/4) and h, w (3/8 each) rotation pairs, which needs a multiple of 16',
      fix: 'use a multiple of 16 (CogVideoX uses 64)',
    },
  ];
}

/**
 * The built-in engine trains every step on the whole global batch on its one device, whatever the
 * mesh says: the batch must split evenly into the accumulation steps' micro-batches.
 */
function batchProblems(file: string, c: StageConfig): ConfigProblem[] {
  const t = c.training;
  if (t.global_batch_size % t.grad_accum_steps === 0) return [];
  return [
    {
      file,
      field: 'training.global_batch_size',
      value: t.global_batch_size,
      message: `not divisible by training.grad_accum_steps (${t.grad_accum_steps}): the built-in engine trains a step as ${t.grad_accum_steps} equal micro-batches`,
      fix: `use a multiple of ${t.grad_accum_steps}`,
    },
  ];
}

/** A dataset folder (unless "synthetic") must exist and list JSONL files that exist under it. */
function datasetProblems(file: string, c: StageConfig): ConfigProblem[] {
  const t = c.training;
  if (t.dataset_path === 'synthetic') return [];
  const ds = path.resolve(t.dataset_path);
  if (!fs.existsSync(ds) || !fs.statSync(ds).isDirectory()) {
    return [
      {
        file,
        field: 'training.dataset_path',
        value: t.dataset_path,
        message: `no such directory (${ds})`,
        fix: 'point it at the folder of precomputed embeddings, or use "synthetic"',
      },
    ];
  }
  const problems: ConfigProblem[] = [];
  for (const j of t.jsonl_paths) {
    if (!fs.existsSync(path.resolve(ds, j))) {
      problems.push({
        file,
        field: 'training.jsonl_paths',
        value: j,
        message: `no such file under ${ds}`,
        fix: 'list JSONL files relative to training.dataset_path',
      });
    }
  }
  if (t.jsonl_paths.length === 0) {
    problems.push({
      file,
      field: 'training.jsonl_paths',
      value: [],
      message: 'no JSONL files listed',
      fix: 'list the JSONL files that describe the samples',
    });
  }
  return problems;
}

/** An init_state_dir (unless "") must exist; a diffusers folder there must have this config's sizes. */
function initStateProblems(file: string, c: StageConfig): ConfigProblem[] {
  if (c.checkpoint.init_state_dir === '') return [];
  const d = path.resolve(c.checkpoint.init_state_dir);
  if (!fs.existsSync(d)) {
    return [
      {
        file,
        field: 'checkpoint.init_state_dir',
        value: c.checkpoint.init_state_dir,
        message: `no such directory (${d})`,
        fix: 'point it at a folder holding model*.safetensors or a CogVideoX diffusers transformer folder, or set it to "" for a fresh initialisation',
      },
    ];
  }
  return isDiffusersFolder(d) ? diffusersProblems(file, c, d) : [];
}

/** A diffusers init_state_dir (converted before stage 1) must have the sizes of the stage config. */
function diffusersProblems(file: string, c: StageConfig, dir: string): ConfigProblem[] {
  let weights: DiffusersConfig;
  try {
    weights = readDiffusersConfig(dir);
  } catch (e) {
    if (!(e instanceof ConvertError)) throw e;
    return [
      {
        file,
        field: 'checkpoint.init_state_dir',
        value: c.checkpoint.init_state_dir,
        message: e.message.replace(/\. Fix: .*$/s, ''),
        fix: e.fix ?? '',
      },
    ];
  }
  return CONFIG_FIELDS.filter((f) => weights[f] !== c.model[f]).map((f) => ({
    file,
    field: `model.${f}`,
    value: c.model[f],
    message: `the CogVideoX weights in checkpoint.init_state_dir (${path.join(dir, 'config.json')}) have ${f} = ${weights[f]}`,
    fix: `set model.${f} = ${weights[f]}, or point checkpoint.init_state_dir at weights of this model's size`,
  }));
}

/** Loads, overrides and validates one stage config. Throws ConfigError listing every problem. */
export function loadStageConfig(fileArg: string, overrides: Overrides = {}, opts: LoadOptions = {}): LoadedStage {
  const file = resolveConfigPath(fileArg);
  const overrideSource = opts.overrideSource ?? '--set';
  if (opts.allowed) confinePath(opts.allowed, file, 'read', { file, field: '(file)' });
  const raw = readToml(file);
  const overridden = new Set(Object.keys(overrides));
  for (const [k, v] of Object.entries(overrides)) {
    if (!/^[a-z_]+(\.[a-z0-9_]+)+$/.test(k)) {
      throw new ConfigError([
        {
          file: overrideSource,
          field: k,
          value: v,
          message: 'not a dotted field name',
          fix: 'write overrides as section.field, e.g. training.steps',
        },
      ]);
    }
    if (k.split('.').some((p) => PROTOTYPE_KEYS.has(p))) {
      // "__proto__.x" would write into Object.prototype (every object of the process) rather than the config.
      throw new ConfigError([
        {
          file: overrideSource,
          field: k,
          value: v,
          message: 'not a config field',
          fix: 'write overrides as section.field with the names in the configuration reference, e.g. training.steps',
        },
      ]);
    }
    setPath(raw, k, coerceOverride(v));
  }
  let parsed = stageConfigSchema.safeParse(raw);
  if (!parsed.success) {
    // A string override that TOML read as a number or boolean ("--job.exp_name=123"): keep the raw string where a string is expected.
    let changed = false;
    for (const issue of parsed.error.issues) {
      const key = issue.path.join('.');
      if (
        issue.code === 'invalid_type' &&
        issue.expected === 'string' &&
        overridden.has(key) &&
        typeof overrides[key] === 'string'
      ) {
        setPath(raw, key, overrides[key]);
        changed = true;
      }
    }
    if (changed) parsed = stageConfigSchema.safeParse(raw);
  }
  if (!parsed.success) throw new ConfigError(zodProblems(file, raw, parsed.error, overridden, overrideSource));
  const config = parsed.data;
  if (opts.allowed) {
    // Before the semantic checks, which look at the paths (exists? a diffusers folder?).
    const outside = configPathProblems(opts.allowed, config, file, overridden, overrideSource);
    if (outside.length > 0) throw new ConfigError(outside);
  }
  const video = videoLengthInfo(config.model.video_length);
  const engineWhere = { file: overridden.has('engine.preset') ? overrideSource : file, field: 'engine.preset' };
  const engine = stageEngine(config, opts, engineWhere);
  const problems = semanticProblems(file, config, video, engine, opts);
  if (problems.length > 0) throw new ConfigError(problems);
  return { file, config, video, hash: configHash(config), engine };
}

/**
 * The hash of what a stage trains: the whole config except `validation`, which never changes
 * training (so turning it on or off, or changing it under a running job, keeps the hash, the
 * checkpoints' state and the "config changed" check as they were), and `launcher`: where shards
 * run is not what they compute, so it may change under a running job, and hashes of configs from
 * before the section existed stay the same. So does [engine] while it is the built-in one (the
 * default); another engine is part of what the stage is.
 */
export function configHash(config: StageConfig): string {
  const { validation: _measuredOnly, launcher: _where, engine: _engine, ...computed } = config;
  const trained = config.engine.preset === BUILTIN_ENGINE ? computed : { ...computed, engine: config.engine };
  return crypto.createHash('sha256').update(JSON.stringify(trained)).digest('hex');
}

export interface LoadedCurriculum {
  file: string;
  name: string;
  stages: LoadedStage[];
}

/** Loads a curriculum file and every stage config it lists, in order. */
export function loadCurriculum(fileArg: string, overrides: Overrides = {}, opts: LoadOptions = {}): LoadedCurriculum {
  const file = resolveConfigPath(fileArg);
  if (opts.allowed) confinePath(opts.allowed, file, 'read', { file, field: '(file)' });
  const raw = readToml(file);
  const parsed = curriculumSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(zodProblems(file, raw, parsed.error, new Set(), file));
  const problems: ConfigProblem[] = [];
  const stages: LoadedStage[] = [];
  for (const [i, rel] of parsed.data.stages.entries()) {
    const stageFile = path.resolve(path.dirname(file), rel);
    if (opts.allowed) {
      try {
        confinePath(opts.allowed, stageFile, 'read', { file, field: `stages[${i}]` });
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        problems.push(...e.problems);
        continue;
      }
    }
    if (!fs.existsSync(stageFile) || !fs.statSync(stageFile).isFile()) {
      problems.push({
        file,
        field: `stages[${i}]`,
        value: rel,
        message: `no such file (${stageFile}${fs.existsSync(stageFile) ? ' is a directory' : ''})`,
        fix: 'list stage config files relative to the curriculum file',
      });
      continue;
    }
    try {
      stages.push(loadStageConfig(stageFile, overrides, opts));
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  for (let i = 1; i < stages.length; i++) {
    if (stages[i]!.video.latentFrames <= stages[i - 1]!.video.latentFrames) {
      problems.push({
        file,
        field: `stages[${i}]`,
        value: stages[i]!.video.videoLength,
        message: `stage ${i + 1} is not longer than stage ${i}`,
        fix: 'order stages from the shortest video to the longest',
      });
    }
  }
  // An override's problem is the same in every stage: say it once.
  const once = [...new Map(problems.map((p) => [JSON.stringify([p.file, p.field, p.value, p.message]), p])).values()];
  if (once.length > 0) throw new ConfigError(once);
  return { file, name: parsed.data.name, stages };
}

/** Validates `until` against a curriculum; returns the stage name. */
export function resolveUntil(
  until: string | undefined,
  stages: readonly { video: VideoLengthInfo }[],
  where = 'until',
): string {
  const names = stages.map((s) => s.video.stage);
  if (until === undefined || until === '') return names[names.length - 1]!;
  const norm = normaliseStageName(until);
  if (norm === undefined || !names.includes(norm)) {
    throw new UserError(`${JSON.stringify(until)} is not a stage of this curriculum`, {
      where,
      kind: 'ConfigError',
      fix: `use one of ${names.join(', ')}`,
    });
  }
  return norm;
}
