/**
 * Our stage config written out as a TTT-Video-DiT config file (`train.py --job.config_file`).
 *
 * TTT-Video-DiT (github.com/test-time-training/ttt-video-dit, read at 6c316a7) reads one TOML file
 * into the dataclasses of ttt/infra/config_manager.py: sections job, model, training, optimizer,
 * checkpoint, parallelism, remat, comm and wandb. A field it does not know is an error
 * (`JobConfig.parse_args`: "Invalid field(s) found in ... configuration"), so only its own fields
 * are written; ours-only ones (model sizes beyond its presets, data-quality limits, shard,
 * runtime, launcher, checkpoint.keep, ...) are left out. A few live in another section there, and
 * two of its readers differ from ours:
 * - training.seed is its job.seed, model.adapter_method its training.adapter_method,
 *   optimizer.warmup_steps its training.warmup_steps, training.vae_scale_factor its
 *   model.scale_factor (both multiply a sample of the VAE posterior: its
 *   ttt/datasets/preembedding_dataset.py);
 * - it opens training.jsonl_paths as given (not relative to dataset_path, as ours are), and it
 *   requires an absolute job.dump_folder (`_validate_config`), so paths are written absolute.
 * Settings it cannot honour (a synthetic dataset, a constant schedule, AdamW constants other than
 * its fixed ones, model sizes other than its presets') are a ConfigError rather than silently
 * training something else; for a trainer that reads only this config format (trainPy = false)
 * they are written as they are ("synthetic" too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'smol-toml';
import type { StageConfig } from '../../config/schema';
import { ConfigError, type ConfigProblem } from '../../errors';
import type { CompleteCheckpoint } from '../types';
import { checkDcpFolder } from './layout';

type Section = 'job' | 'model' | 'training' | 'optimizer' | 'checkpoint' | 'parallelism' | 'remat' | 'wandb';
type Value = string | number | boolean | string[];

/** One field of TTT-Video-DiT's config: where it is there, where its value comes from here. */
interface FieldMap {
  to: `${Section}.${string}`;
  from: (c: StageConfig, resolve: (p: string) => string) => Value | undefined;
  /** A float field there: written as a TOML float even when its value is whole (1 -> 1.0). */
  float?: true;
}

const same = (section: keyof StageConfig, field: string): FieldMap['from'] => {
  return (c) => (c[section] as Record<string, Value>)[field];
};
const copied = (section: Section, fields: string[]): FieldMap[] =>
  fields.map((f) => ({ to: `${section}.${f}`, from: same(section, f) }));

const synthetic = (c: StageConfig): boolean => c.training.dataset_path === 'synthetic';

/** TTT-Video-DiT's fields (ttt/infra/config_manager.py) that a stage config sets, in its section order. */
const TTT_FIELDS: FieldMap[] = [
  ...copied('job', ['exp_name']),
  { to: 'job.dump_folder', from: (c, resolve) => resolve(c.job.dump_folder) },
  { to: 'job.seed', from: (c) => c.training.seed },
  ...copied('model', ['name', 'size', 'video_length', 'ssm_layer']),
  { to: 'model.ttt_base_lr', from: same('model', 'ttt_base_lr'), float: true },
  ...copied('model', ['mini_batch_size']),
  { to: 'model.scale_factor', from: (c) => c.training.vae_scale_factor, float: true },
  { to: 'training.adapter_method', from: (c) => c.model.adapter_method },
  // The synthetic source (only for a trainer other than train.py) is written as it is.
  {
    to: 'training.dataset_path',
    from: (c, resolve) => (synthetic(c) ? c.training.dataset_path : resolve(c.training.dataset_path)),
  },
  {
    to: 'training.jsonl_paths',
    from: (c, resolve) =>
      synthetic(c)
        ? c.training.jsonl_paths
        : c.training.jsonl_paths.map((j) => path.resolve(resolve(c.training.dataset_path), j)),
  },
  ...copied('training', ['global_batch_size', 'grad_accum_steps']),
  { to: 'training.warmup_steps', from: (c) => c.optimizer.warmup_steps },
  ...copied('training', ['steps']),
  ...copied('optimizer', ['name']),
  ...['lr', 'lr_end', 'lr_ssm'].map(
    (f): FieldMap => ({ to: `optimizer.${f}`, from: same('optimizer', f), float: true }),
  ),
  ...copied('optimizer', ['lr_schedule', 'lr_ssm_schedule']),
  { to: 'optimizer.gradient_clipping_norm', from: same('optimizer', 'gradient_clipping_norm'), float: true },
  {
    to: 'checkpoint.init_state_dir',
    from: (c, resolve) => (c.checkpoint.init_state_dir === '' ? undefined : resolve(c.checkpoint.init_state_dir)),
  },
  ...copied('checkpoint', ['interval']),
  ...copied('parallelism', ['fsdp_unsharded_dtype', 'tp_sharding', 'dp_sharding', 'dp_replicate']),
  ...copied('remat', [
    'transformer_checkpoint_layer_group_size',
    'scan_checkpoint_group_size',
    'forward_ssm',
    'reverse_ssm',
    'attention',
    'mlp',
    'seq_modeling_block',
    'shard_transformer_inputs',
  ]),
  // Empty here means "not set": its own defaults apply.
  { to: 'wandb.project', from: (c) => c.wandb.project || undefined },
  { to: 'wandb.entity', from: (c) => c.wandb.entity || undefined },
  ...copied('wandb', ['log_interval', 'disable']),
];

/** The sections TTT-Video-DiT reads from its config file (ttt/infra/config_manager.py `JobConfig._config_types`). */
export const TTT_SECTIONS: readonly string[] = [
  'job',
  'model',
  'training',
  'optimizer',
  'checkpoint',
  'parallelism',
  'remat',
  'comm',
  'wandb',
];

export interface TttTomlOptions {
  /** Relative paths of the config are resolved against this folder (default: the working directory). */
  baseDir?: string;
  /**
   * Where the trainer resumes: the latest complete checkpoint (tttVideoDitLayout.latestComplete),
   * or null when there is none. Written as checkpoint.resume / resume_step, so that TTT-Video-DiT
   * loads exactly that step folder instead of choosing the newest `step-N` itself, which may be
   * torn (see layout.ts); null starts from init_state_dir even when torn folders exist.
   * Undefined: nothing is written about resuming.
   */
  resumeFrom?: CompleteCheckpoint | null;
  /** The config file's name in problems (default "stage config"). */
  file?: string;
  /**
   * Whether the reader is TTT-Video-DiT's train.py itself (default true): then what it cannot train
   * as configured (tttVideoDitProblems), and an existing init_state_dir that is not a complete DCP
   * checkpoint, are a ConfigError. False for a trainer that reads only this config format, with a
   * model and weights of its own: a preset with checkpoint_layout = "ours" and config_format =
   * "ttt-video-dit" (test/fixtures/ddp_train.py; preset.ts: isTttVideoDitTrainer).
   */
  trainPy?: boolean;
}

/** Model sizes of TTT-Video-DiT's presets (ttt/models/configs.py `PREDEFINED_CONFIGS` and the dataclass defaults). */
const TTT_MODEL_PRESETS: Record<string, Partial<Record<keyof StageConfig['model'], number>>> = {
  '5B': { num_layers: 42, num_attention_heads: 48, attention_head_dim: 64, text_embed_dim: 4096 },
  debug: { num_layers: 6, num_attention_heads: 8, attention_head_dim: 64, text_embed_dim: 512 },
};
const TTT_MODEL_DEFAULTS: Partial<Record<keyof StageConfig['model'], number>> = {
  in_channels: 16,
  out_channels: 16,
  patch_size: 2,
  time_embed_dim: 512,
  rope_theta: 10000,
};
/** AdamW constants that TTT-Video-DiT fixes (ttt/infra/optimizers.py: betas, eps, WEIGHT_DECAY_VALUE). */
const TTT_ADAMW: Partial<Record<keyof StageConfig['optimizer'], number>> = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weight_decay: 1e-4,
};

/**
 * What in a stage config TTT-Video-DiT cannot do as configured; empty when it can. Checked where a
 * stage of a train.py preset is loaded (config/load.ts), so that a job is refused when it is planned,
 * and again by the writer below.
 */
export function tttVideoDitProblems(c: StageConfig, file = 'stage config'): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const problem = (field: string, value: unknown, message: string, fix: string) =>
    out.push({ file, field, value, message, fix });
  if (synthetic(c))
    problem(
      'training.dataset_path',
      'synthetic',
      'TTT-Video-DiT trains only on precomputed embeddings',
      'point training.dataset_path at a precomputed dataset (see "Datasets" in the README)',
    );
  for (const f of ['lr_schedule', 'lr_ssm_schedule'] as const)
    if (c.optimizer[f] === 'constant')
      problem(
        `optimizer.${f}`,
        'constant',
        'TTT-Video-DiT has only the linear and cosine schedules',
        'use "linear" or "cosine"',
      );
  for (const [f, v] of Object.entries(TTT_ADAMW) as [keyof StageConfig['optimizer'], number][])
    if (c.optimizer[f] !== v)
      problem(
        `optimizer.${f}`,
        c.optimizer[f],
        `TTT-Video-DiT fixes it at ${v}`,
        `remove it from the config (or set ${v}) to train with TTT-Video-DiT`,
      );
  const preset = TTT_MODEL_PRESETS[c.model.size];
  if (preset === undefined) {
    problem(
      'model.size',
      c.model.size,
      `TTT-Video-DiT builds only its presets (${Object.keys(TTT_MODEL_PRESETS).join(', ')})`,
      'set model.size = "5B" and the CogVideoX-5B sizes',
    );
  } else {
    for (const [f, v] of Object.entries({ ...preset, ...TTT_MODEL_DEFAULTS }) as [keyof StageConfig['model'], number][])
      if (c.model[f] !== v)
        problem(
          `model.${f}`,
          c.model[f],
          `TTT-Video-DiT's ${c.model.size} preset has ${v}`,
          `set ${v} or leave it out (the default is CogVideoX-5B's)`,
        );
  }
  return out;
}

/**
 * A stage config as a TTT-Video-DiT config file. For train.py itself (opts.trainPy, the default),
 * throws a ConfigError when it cannot train it as configured (tttVideoDitProblems), or when
 * init_state_dir exists and is not a complete DCP checkpoint (ours are safetensors: train.py
 * cannot load them).
 */
export function tttVideoDitToml(c: StageConfig, opts: TttTomlOptions = {}): string {
  const resolve = (p: string) => path.resolve(opts.baseDir ?? process.cwd(), p);
  const trainPy = opts.trainPy !== false;
  const problems = trainPy ? tttVideoDitProblems(c, opts.file) : [];
  const init = c.checkpoint.init_state_dir === '' ? undefined : resolve(c.checkpoint.init_state_dir);
  // It loads init weights with DCP (ttt/infra/checkpoint.py `load_pretrained`): stage 1's are its
  // converter's output (scripts/convert_weights_from_hf.sh), later stages' a step folder.
  if (init !== undefined && trainPy && fs.existsSync(init)) {
    const check = checkDcpFolder(init);
    if (!check.complete)
      problems.push({
        file: opts.file ?? 'stage config',
        field: 'checkpoint.init_state_dir',
        value: c.checkpoint.init_state_dir,
        message: `TTT-Video-DiT loads init weights as a DCP checkpoint, and this folder is not a complete one (${check.reason})`,
        fix: "point it at TTT-Video-DiT's converted weights (its scripts/convert_weights_from_hf.sh writes DCP) or at a complete step-N folder of the previous stage",
      });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const sections = new Map<string, { plain: Record<string, Value>; floats: Record<string, number> }>();
  const put = (to: string, v: Value, float = false) => {
    const [section, field] = to.split('.') as [string, string];
    const s = sections.get(section) ?? { plain: {}, floats: {} };
    sections.set(section, s);
    if (float) s.floats[field] = v as number;
    else s.plain[field] = v;
  };
  for (const f of TTT_FIELDS) {
    const v = f.from(c, resolve);
    if (v !== undefined) put(f.to, v, f.float === true);
  }
  if (opts.resumeFrom !== undefined) {
    put('checkpoint.resume', opts.resumeFrom !== null);
    if (opts.resumeFrom !== null) put('checkpoint.resume_step', opts.resumeFrom.step);
  }
  const header = [
    `# Written by ttt-curriculum in TTT-Video-DiT's config format (train.py --job.config_file): stage ${c.model.video_length} of ${c.job.exp_name}.`,
    "# Fields that exist only in ttt-curriculum's configs are left out.",
  ];
  // smol-toml writes a whole number as an integer; numbersAsFloat writes every number as a float.
  // TTT-Video-DiT's int fields must stay ints (range(start, steps)), so each section is two runs.
  const body = [...sections].map(([name, s]) =>
    [`[${name}]`, stringify(s.plain).trimEnd(), stringify(s.floats, { numbersAsFloat: true }).trimEnd()]
      .filter((part) => part !== '')
      .join('\n'),
  );
  return `${[...header, '', body.join('\n\n')].join('\n')}\n`;
}
