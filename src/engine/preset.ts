/**
 * Engine presets: what trains a shard, defined on the worker's side. A stage picks one by name
 * (`engine.preset`); "tfjs" is the built-in trainer. Any other name is a TOML file
 * `<name>.toml` found first in the folders the worker was started with (`worker --engine-dir DIR`,
 * repeatable, in that order), then in the package's configs/engine/. A preset of kind "command"
 * is an external trainer: an argv template, the layout of its checkpoints, how it reports progress
 * and how it is stopped (see README, "Engines").
 *
 * A workflow input names a preset, never a program: the folders are the worker's, read only, and a
 * name is a plain file name (schema.ts: ENGINE_PRESET_NAME).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { BUILTIN_ENGINE, ENGINE_PRESET_NAME } from '../config/schema';
import { ConfigError, type ConfigProblem, UserError } from '../errors';
import { PACKAGE_ROOT } from '../package-root';
import { PROGRESS_PATTERNS, progressPatternSource } from './log-progress';
import { type CheckpointLayout, CONFIG_FORMATS, type ConfigFormat } from './types';

/**
 * The placeholders of a command template (and of `cwd`), besides {env.NAME}. All but {head_node}
 * are filled by the worker; {head_node} (the host the trainer starts on: in a Slurm job, its first
 * node, e.g. for torchrun's rendezvous) by the engine runner where the trainer starts.
 */
export const PLACEHOLDERS = [
  'config',
  'exp_name',
  'dump_folder',
  'init',
  'nodes',
  'gpus_per_node',
  'head_node',
] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

const SIGNAL_NAMES = Object.keys(os.constants.signals);

export const presetSchema = z.strictObject({
  kind: z
    .enum(['command', 'tfjs'])
    .describe('"command": an external trainer run from `command`; "tfjs": the built-in trainer (the rest is unused)'),
  description: z.string().default('').describe('Free text (informational)'),
  command: z
    .array(z.string())
    .min(1)
    .optional()
    .describe(
      'kind = "command": the trainer\'s argv, one element per argument, run without a shell. Placeholders: {config} (the stage config written out for the trainer), {exp_name}, {dump_folder}, {init} (init weights folder, "" for a fresh start), {nodes}, {gpus_per_node}, {head_node} (the host the trainer starts on), {env.NAME} (the worker\'s environment); {{ and }} are literal braces. A first element "ttt-curriculum" runs this package\'s CLI with the worker\'s node',
    ),
  checkpoint_layout: z
    .enum(['ours', 'ttt-video-dit'])
    .optional()
    .describe(
      'kind = "command": how its checkpoints are laid out and read: "ours" (this project\'s step folders and metrics.jsonl) or "ttt-video-dit" (DCP step-N folders under {dump_folder}/{exp_name}/checkpoint, progress from its log lines)',
    ),
  config_format: z
    .enum(CONFIG_FORMATS)
    .optional()
    .describe(
      'kind = "command": the format of the stage config file that {config} names: "ours" (this project\'s TOML, every field) or "ttt-video-dit" (TTT-Video-DiT\'s TOML: its sections and names). Default: the checkpoint_layout\'s. With checkpoint_layout = "ttt-video-dit" the trainer is TTT-Video-DiT\'s train.py, which reads only its own format, and the job is refused where train.py cannot train it as configured (its 5B or debug model presets, precomputed data, its fixed AdamW constants, DCP init weights); "ttt-video-dit" with checkpoint_layout = "ours" is a trainer that shares only its config file (e.g. test/fixtures/ddp_train.py), and none of those checks apply',
    ),
  cwd: z
    .string()
    .default('')
    .describe('Working directory of the trainer (placeholders as in command); "" = the worker\'s working directory'),
  env: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string())
    .default({})
    .describe(
      'Environment variables set for the trainer (on top of the worker\'s, which never include TEMPORAL_* settings), e.g. {OMP_NUM_THREADS = "1"}',
    ),
  gpus_per_node: z
    .number()
    .int()
    .positive()
    .default(1)
    .describe(
      'Devices per node ({gpus_per_node}, and the mesh check) when launcher.gpus_per_node is 0: e.g. the CPU processes of a test run',
    ),
  progress_pattern: z
    .string()
    .default('')
    .describe(
      'The trainer\'s progress lines: a regular expression with named groups step, loss and grad_norm, or the name of a known pattern: "ttt-video-dit" = TTT-Video-DiT\'s "Steps N/T | ... | Metrics: loss: ..., grad_norm: ..." lines; "" = the default pattern for the layout ("ttt-video-dit": its own; "ours": none, the trainer writes metrics.jsonl itself). Set with layout "ours", it reads progress from the output lines instead of metrics.jsonl (e.g. "ttt-video-dit" for a trainer that logs as TTT-Video-DiT does)',
    ),
  stop: z
    .enum(['signal', 'checkpoint', 'kill'])
    .default('kill')
    .describe(
      'How pause and cancel stop it: "signal" = send stop_signal, it saves a checkpoint and exits; "checkpoint" = wait for its next complete checkpoint, then terminate it; "kill" = terminate it at once and resume from its last complete checkpoint',
    ),
  stop_signal: z
    .string()
    .refine((s) => SIGNAL_NAMES.includes(s), 'a signal name such as "SIGUSR1"')
    .default('SIGUSR1')
    .describe('stop = "signal": the signal on which the trainer saves a checkpoint and exits'),
  stop_grace_seconds: z
    .number()
    .positive()
    .default(120)
    .describe(
      'Seconds a stopping trainer gets (to save and exit on stop_signal, or to reach its next checkpoint) before it is terminated',
    ),
});

type PresetFile = z.infer<typeof presetSchema>;

/** A preset of kind "command" as it is used: every field set. */
export interface CommandPreset extends Omit<PresetFile, 'kind' | 'command' | 'checkpoint_layout' | 'config_format'> {
  kind: 'command';
  name: string;
  file: string;
  command: string[];
  checkpoint_layout: CheckpointLayout['name'];
  /** The preset's config_format, or its checkpoint_layout's where it has none. */
  config_format: ConfigFormat;
}

export type EnginePreset = { kind: 'tfjs'; name: string; file: string | null } | CommandPreset;

/** The built-in trainer. */
export const BUILTIN: EnginePreset = { kind: 'tfjs', name: BUILTIN_ENGINE, file: null };

/** The package's own presets. */
export const SHIPPED_ENGINE_DIR = path.join(PACKAGE_ROOT, 'configs', 'engine');

/** The preset folders of a worker: `worker --engine-dir` (in order), then configs/engine/. */
export class EngineCatalog {
  readonly dirs: readonly string[];

  constructor(workerDirs: readonly string[] = []) {
    this.dirs = [...workerDirs.map((d) => path.resolve(d)), SHIPPED_ENGINE_DIR];
  }

  /** The folders of `worker --engine-dir`, each checked to be an existing folder. */
  static forWorker(engineDirs: readonly string[] = []): EngineCatalog {
    for (const d of engineDirs) {
      if (!fs.existsSync(d) || !fs.statSync(d).isDirectory())
        throw new UserError(`${JSON.stringify(d)} is not an existing folder`, {
          where: '--engine-dir',
          kind: 'InvalidInput',
          fix: 'name a folder that holds engine presets (<name>.toml), e.g. --engine-dir /etc/ttt/engines',
        });
    }
    return new EngineCatalog(engineDirs);
  }

  /** Every preset name available: "tfjs" and the files, first folder first, each name once. */
  names(): string[] {
    const names = new Set<string>([BUILTIN_ENGINE]);
    for (const d of this.dirs) {
      let entries: string[] = [];
      try {
        entries = fs.readdirSync(d);
      } catch {
        continue;
      }
      for (const e of entries.sort()) {
        const n = e.replace(/\.toml$/, '');
        if (e.endsWith('.toml') && ENGINE_PRESET_NAME.test(n)) names.add(n);
      }
    }
    return [...names];
  }

  /** The preset named `name`; a ConfigError at `where` when there is none or it is invalid. */
  preset(
    name: string,
    where: { file: string; field: string } = { file: 'engine', field: 'engine.preset' },
  ): EnginePreset {
    if (name === BUILTIN_ENGINE) return BUILTIN;
    const file = ENGINE_PRESET_NAME.test(name)
      ? this.dirs.map((d) => path.join(d, `${name}.toml`)).find((f) => fs.existsSync(f))
      : undefined;
    if (!file)
      throw new ConfigError([
        {
          ...where,
          value: name,
          message: `no engine preset of that name (looked for ${name}.toml in ${this.dirs.join(', ')})`,
          fix: `use one of ${this.names()
            .map((n) => JSON.stringify(n))
            .join(
              ', ',
            )}, or add ${name}.toml to a folder the worker is started with (worker --engine-dir DIR; see README, "Engines")`,
        },
      ]);
    return readPreset(name, file);
  }
}

/** Reads and checks one preset file. */
export function readPreset(name: string, file: string): EnginePreset {
  let raw: unknown;
  try {
    raw = parseToml(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const msg = e instanceof TomlError ? `line ${e.line}, column ${e.column}: ${e.message.split('\n')[0]}` : String(e);
    throw new ConfigError([{ file, field: '(file)', message: `not a readable TOML file: ${msg}`, fix: 'correct it' }]);
  }
  const parsed = presetSchema.safeParse(raw);
  if (!parsed.success)
    throw new ConfigError(
      parsed.error.issues.map(
        (i): ConfigProblem => ({
          file,
          field: i.code === 'unrecognized_keys' ? i.keys.join(', ') : i.path.join('.') || '(file)',
          message: i.code === 'unrecognized_keys' ? 'unknown preset field' : i.message,
          fix: 'see the engine preset fields in README.md ("Engines")',
        }),
      ),
    );
  // A named pattern ("ttt-video-dit") stands for its regular expression from here on.
  const p = { ...parsed.data, progress_pattern: progressPatternSource(parsed.data.progress_pattern) };
  if (p.kind === 'tfjs') return { kind: 'tfjs', name, file };
  const problems: ConfigProblem[] = [];
  if (!p.command)
    problems.push({ file, field: 'command', message: 'a command preset needs its argv', fix: 'add command = [...]' });
  if (!p.checkpoint_layout)
    problems.push({
      file,
      field: 'checkpoint_layout',
      message: 'a command preset needs the layout of its checkpoints',
      fix: 'add checkpoint_layout = "ours" or "ttt-video-dit"',
    });
  for (const [field, values] of [
    ['command', p.command ?? []],
    ['cwd', [p.cwd]],
  ] as const)
    for (const v of values) {
      const bad = templateProblem(v);
      if (bad) problems.push({ file, field, value: v, message: bad, fix: `use ${placeholderList()}` });
    }
  if (p.progress_pattern) {
    let re: RegExp | undefined;
    try {
      re = new RegExp(p.progress_pattern);
    } catch (e) {
      problems.push({
        file,
        field: 'progress_pattern',
        value: p.progress_pattern,
        message: `not a regular expression: ${(e as Error).message}`,
        fix: 'write a JavaScript regular expression with the named groups step, loss and grad_norm',
      });
    }
    if (re && !/\(\?<step>/.test(p.progress_pattern))
      problems.push({
        file,
        field: 'progress_pattern',
        value: p.progress_pattern,
        message: `has no named group "step", and it is not the name of a known pattern (${progressPatternNames()})`,
        fix: 'capture the step number as (?<step>\\d+) (loss and grad_norm as (?<loss>...) and (?<grad_norm>...)), or name a known pattern',
      });
  }
  const configFormat = p.config_format ?? p.checkpoint_layout;
  if (configFormat && p.checkpoint_layout && p.command)
    problems.push(...configFormatProblems(file, configFormat, p.checkpoint_layout, p.command[0]!));
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    ...p,
    kind: 'command',
    name,
    file,
    command: p.command!,
    checkpoint_layout: p.checkpoint_layout!,
    config_format: configFormat!,
  };
}

/**
 * Whether the trainer of a preset is TTT-Video-DiT's train.py itself, so that what train.py cannot
 * train as configured is refused (ttt-video-dit/config.ts: tttVideoDitProblems, DCP init weights).
 * The checkpoint layout decides, not a flag of its own: only train.py writes the DCP step folders
 * of the "ttt-video-dit" layout, and a trainer that writes ours (model.safetensors with state.json)
 * has a model and a weight loader of its own, whatever config format it reads; a separate flag
 * could only contradict the layout. Stage 1's init check follows the same rule (init.ts).
 */
export const isTttVideoDitTrainer = (preset: Pick<CommandPreset, 'checkpoint_layout'>): boolean =>
  preset.checkpoint_layout === 'ttt-video-dit';

/** A command's first element that means this package's CLI (run with the worker's node: command.ts). */
export const THIS_CLI = 'ttt-curriculum';

/**
 * Whether the trainer of a preset fences itself: it takes the stage's lease and checks it before
 * every write, so that the engine runner must not take one (the trainer's newer lease would fence
 * the runner, which would kill it). Only this package's CLI does (`ttt-curriculum train` runs the
 * built-in trainer). Every other trainer, whatever its checkpoint layout, knows nothing of leases:
 * the runner holds the lease for it and kills it once a newer writer takes the stage (runner.ts).
 */
export const trainerTakesLease = (preset: Pick<CommandPreset, 'command'>): boolean => preset.command[0] === THIS_CLI;

/** A config format its trainer cannot read: train.py reads only its own, `ttt-curriculum train` only ours. */
function configFormatProblems(
  file: string,
  format: ConfigFormat,
  layout: CheckpointLayout['name'],
  program: string,
): ConfigProblem[] {
  const problem = (message: string, fix: string): ConfigProblem[] => [
    { file, field: 'config_format', value: format, message, fix },
  ];
  if (isTttVideoDitTrainer({ checkpoint_layout: layout }) && format !== 'ttt-video-dit')
    return problem(
      `checkpoint_layout = "${layout}" is TTT-Video-DiT's train.py, which reads only its own config format (a section it does not know is an error there)`,
      'remove config_format (it follows checkpoint_layout) or set config_format = "ttt-video-dit"',
    );
  if (program === THIS_CLI && format !== 'ours')
    return problem(
      "the command runs ttt-curriculum, whose train command reads this project's config format",
      'remove config_format (it follows checkpoint_layout) or set config_format = "ours"',
    );
  return [];
}

const progressPatternNames = (): string =>
  Object.keys(PROGRESS_PATTERNS)
    .map((n) => JSON.stringify(n))
    .join(', ');

const placeholderList = (): string =>
  `the placeholders ${PLACEHOLDERS.map((x) => `{${x}}`).join(', ')}, {env.NAME}, and {{ }} for literal braces`;

/** What is wrong with a template string, or undefined. */
function templateProblem(t: string): string | undefined {
  for (const m of t.replace(/\{\{|\}\}/g, '').matchAll(/\{([^{}]*)\}|[{}]/g)) {
    if (m[1] === undefined) return 'an unmatched brace';
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1]) && !/^env\.[A-Za-z_][A-Za-z0-9_]*$/.test(m[1]))
      return `unknown placeholder {${m[1]}}`;
  }
  return undefined;
}

/**
 * Fills a template: {name} from `values`, {env.NAME} from `env`, {{ and }} as braces. A missing
 * environment variable is a ConfigError that names it.
 */
export function fillTemplate(
  t: string,
  values: Record<Placeholder, string>,
  env: NodeJS.ProcessEnv,
  where: { file: string; field: string },
): string {
  return t.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (all, name: string | undefined) => {
    if (all === '{{') return '{';
    if (all === '}}') return '}';
    if (name?.startsWith('env.')) {
      const v = env[name.slice(4)];
      if (v === undefined)
        throw new ConfigError([
          {
            ...where,
            value: t,
            message: `the worker's environment has no ${name.slice(4)}`,
            fix: `set ${name.slice(4)} in the environment of every worker that may run this engine (see README, "Engines")`,
          },
        ]);
      return v;
    }
    return values[name as Placeholder];
  });
}

/** Stands for {head_node} in a filled template until the runner knows the host (it never occurs in a real argument). */
export const HEAD_NODE_MARK = '\u0000head_node\u0000';
