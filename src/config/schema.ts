import { z } from 'zod';
import { NUM_TRAIN_TIMESTEPS } from '../diffusion/schedule';
import { VIDEO_LENGTHS } from '../shared/stages';

/**
 * The stage config tree. Section and field names follow TTT-Video-DiT's TOML configs
 * (job, model, training, optimizer, checkpoint, parallelism, remat), plus our own sections
 * `shard`, `runtime`, `launcher` and `validation`. Every field can be overridden as `--section.field=value` or through
 * `set` in the workflow input. The README's configuration reference is generated from the
 * `.describe()` texts below (see src/config/reference.ts).
 */

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const posNum = z.number().positive();

export { VIDEO_LENGTHS, type VideoLength } from '../shared/stages';

export const jobSchema = z
  .strictObject({
    exp_name: z
      .string()
      .min(1)
      .default('ttt')
      .describe(
        'Experiment name; `train` keeps its checkpoints under dump_folder/exp_name (the workflow uses the job name instead)',
      ),
    dump_folder: z
      .string()
      .min(1)
      .default('runs')
      .describe(
        'Root folder for checkpoints, metrics and promoted stage weights (relative paths are relative to the working directory)',
      ),
  })
  .describe('Job identity and output location');

export const modelSchema = z
  .strictObject({
    name: z.string().default('cogvideo').describe('Model family (informational)'),
    size: z.string().default('5B').describe('Model size label (informational; the dimensions below decide)'),
    ssm_layer: z
      .enum(['ttt_mlp', 'ttt_linear'])
      .default('ttt_mlp')
      .describe('TTT layer: ttt_mlp (W1,b1,W2,b2) or ttt_linear (W1,b1)'),
    ttt_base_lr: posNum
      .default(0.1)
      .describe('Base inner learning rate of the TTT layer (eta = ttt_base_lr * sigmoid(...) / head_dim / mini_batch)'),
    mini_batch_size: posInt
      .default(64)
      .describe('TTT mini-batch size K; the sequence length per 3-second segment must be a multiple of it'),
    video_length: z.enum(VIDEO_LENGTHS).describe('Video length of this stage: 3sec, 9sec, 18sec, 30sec or 63sec'),
    adapter_method: z
      .enum(['sft', 'qkvo'])
      .default('sft')
      .describe('Trainable set: sft = every parameter; qkvo = TTT parameters, gates, q/k/v/o and q/k norms'),
    num_layers: posInt.default(42).describe('Number of transformer blocks'),
    num_attention_heads: posInt.default(48).describe('Attention (and TTT) heads'),
    attention_head_dim: posInt.default(64).describe('Width of one head; model width = heads * head_dim'),
    in_channels: posInt.default(16).describe('Latent channels of the VAE'),
    out_channels: posInt.default(16).describe('Output latent channels'),
    patch_size: posInt.default(2).describe('Spatial patch size'),
    text_embed_dim: posInt.default(4096).describe('Width of the T5 text embeddings'),
    time_embed_dim: posInt.default(512).describe('Width of the timestep embedding MLP'),
    latent_height: posInt.default(60).describe('Latent height (video height / 8)'),
    latent_width: posInt.default(90).describe('Latent width (video width / 8)'),
    text_length: posInt.default(498).describe('Text tokens per 3-second segment'),
    rope_theta: posNum.default(10000).describe('Base of the 3D rotary embeddings'),
  })
  .describe('Model architecture; defaults are CogVideoX-5B with TTT-MLP');

export const trainingSchema = z
  .strictObject({
    steps: posInt.describe('Optimizer steps in this stage'),
    global_batch_size: posInt
      .default(1)
      .describe(
        'Samples per optimizer step, whatever the mesh: the built-in engine trains each step on this many samples on its one device; an external engine splits them over its data-parallel ranks',
      ),
    grad_accum_steps: posInt
      .default(1)
      .describe(
        'Micro-batches accumulated per optimizer step (the built-in engine: global_batch_size / grad_accum_steps samples each; it must divide evenly)',
      ),
    dataset_path: z
      .string()
      .min(1)
      .describe('Folder of precomputed embeddings, or "synthetic" for the built-in deterministic source'),
    jsonl_paths: z
      .array(z.string().min(1))
      .default([])
      .describe('JSONL files listing samples, relative to dataset_path'),
    seed: nonNegInt.default(0).describe('Seed of initialisation, data order and noise'),
    synthetic_samples: posInt.default(64).describe('Number of distinct samples of the synthetic source'),
    max_bad_samples: nonNegInt
      .default(10)
      .describe(
        'Unreadable or mis-shaped samples skipped (with a warning) before the stage fails with the list of them',
      ),
    max_nonfinite_losses: nonNegInt
      .default(3)
      .describe(
        'Steps with a NaN/Inf loss or gradient that roll back to the last good checkpoint and skip the batch, before the stage fails naming the steps and samples',
      ),
    vae_scale_factor: posNum
      .default(1.0)
      .describe('Latents are (mean + exp(logvar/2) * eps) * vae_scale_factor when vid_emb holds the VAE posterior'),
  })
  .describe('Training loop and data');

export const optimizerSchema = z
  .strictObject({
    name: z.literal('AdamW').default('AdamW').describe('Optimizer (AdamW only)'),
    lr: posNum.describe('Peak learning rate of non-TTT parameters'),
    lr_ssm: posNum.describe('Peak learning rate of TTT parameters (names containing "ttt" or "ssm")'),
    lr_end: z.number().nonnegative().default(1e-5).describe('Learning rate at the end of the decay'),
    lr_schedule: z.enum(['linear', 'cosine', 'constant']).default('linear').describe('Decay after warmup for lr'),
    lr_ssm_schedule: z
      .enum(['linear', 'cosine', 'constant'])
      .default('cosine')
      .describe('Decay after warmup for lr_ssm'),
    warmup_steps: nonNegInt.default(0).describe('Linear warmup steps'),
    gradient_clipping_norm: posNum.default(0.1).describe('Global gradient-norm clipping threshold'),
    weight_decay: z
      .number()
      .nonnegative()
      .default(1e-4)
      .describe('Decoupled weight decay (not applied to biases, norms, b1, b2)'),
    beta1: z.number().min(0).max(1).default(0.9).describe('AdamW beta1'),
    beta2: z.number().min(0).max(1).default(0.95).describe('AdamW beta2'),
    eps: posNum.default(1e-8).describe('AdamW epsilon'),
  })
  .describe('AdamW with two parameter groups');

export const checkpointSchema = z
  .strictObject({
    interval: posInt.describe('Save a checkpoint every this many steps (and at the end of every shard)'),
    init_state_dir: z
      .string()
      .default('')
      .describe(
        'Stage-1 initial weights: a folder holding model*.safetensors with TTT-Video-DiT names (a checkpoint, converted weights, a PyTorch state dict), or a CogVideoX transformer in diffusers format, which the job converts first; empty = fresh initialisation',
      ),
    keep: posInt.default(3).describe('Complete checkpoints kept per stage (older ones are deleted)'),
  })
  .describe('Checkpointing');

export const parallelismSchema = z
  .strictObject({
    dp_replicate: posInt.default(1).describe('Data-parallel replicas'),
    dp_sharding: posInt.default(1).describe('FSDP shards'),
    tp_sharding: posInt.default(1).describe('Tensor-parallel shards'),
    fsdp_unsharded_dtype: z
      .enum(['float32', 'bfloat16'])
      .default('bfloat16')
      .describe('Compute dtype (TensorFlow.js computes in float32; see README)'),
  })
  .describe(
    'Device mesh; dp_replicate * dp_sharding * tp_sharding must equal the devices: the built-in engine has one (TTT_DEVICES says otherwise) and the mesh never changes what a step computes; an external engine gets launcher.nodes x the GPUs per node (see "Engines")',
  );

export const rematSchema = z
  .strictObject({
    transformer_checkpoint_layer_group_size: nonNegInt
      .default(0)
      .describe('Recompute transformer blocks in groups of this many layers (0 = off)'),
    scan_checkpoint_group_size: nonNegInt
      .default(0)
      .describe('Recompute the TTT scan in groups of this many mini-batches (0 = off)'),
    forward_ssm: z.boolean().default(false).describe('Recompute the forward TTT pass'),
    reverse_ssm: z.boolean().default(false).describe('Recompute the reverse TTT pass'),
    attention: z.boolean().default(false).describe('Recompute local attention'),
    mlp: z.boolean().default(false).describe('Recompute the MLP'),
    seq_modeling_block: z.boolean().default(false).describe('Recompute the whole sequence-modeling block'),
    shard_transformer_inputs: z
      .boolean()
      .default(false)
      .describe('Shard transformer inputs across tensor-parallel ranks (no effect on one device)'),
  })
  .describe('Activation recomputation');

export const wandbSchema = z
  .strictObject({
    project: z.string().default('').describe('Accepted for compatibility with TTT-Video-DiT configs; not used'),
    entity: z.string().default('').describe('Accepted for compatibility; not used'),
    log_interval: posInt.default(1).describe('Accepted for compatibility; not used'),
    disable: z.boolean().default(false).describe('Accepted for compatibility (`--wandb.disable`); not used'),
  })
  .describe('Accepted for compatibility with TTT-Video-DiT configs; metrics go to metrics.jsonl');

export const shardSchema = z
  .strictObject({
    max_steps: nonNegInt
      .default(0)
      .describe('Most steps one trainShard activity runs (0 = no step bound, only max_seconds)'),
    max_seconds: posNum
      .default(180)
      .describe('Wall-time bound of one trainShard activity; it checkpoints and returns after this'),
    heartbeat_timeout_seconds: posNum
      .default(30)
      .describe('Heartbeat timeout of trainShard; a silent worker is presumed dead after this'),
    progress_seconds: posNum
      .default(10)
      .describe(
        "Seconds between the running shard's progress reports to the workflow (search attribute TrainingStep, current details); each report adds a few history events",
      ),
  })
  .describe('Ours: how training is cut into Temporal activities');

export const runtimeSchema = z
  .strictObject({
    backend: z
      .enum(['auto', 'tensorflow', 'wasm', 'cpu'])
      .default('auto')
      .describe('TensorFlow.js backend; auto tries tfjs-node-gpu, tfjs-node, wasm, cpu'),
  })
  .describe('Ours: compute backend');

/** Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]. */
const SLURM_TIME = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}(:\d{1,2})?)?)$/;

export const launcherSchema = z
  .strictObject({
    kind: z
      .enum(['local', 'slurm'])
      .default('local')
      .describe(
        'Where a shard runs: local = a child process of the worker; slurm = a batch job that the worker submits with sbatch and supervises (see "Running on a Slurm cluster")',
      ),
    partition: z
      .string()
      .regex(/^[A-Za-z0-9_.,-]*$/, 'a Slurm partition name (or a comma-separated list)')
      .default('')
      .describe("Slurm: partition (sbatch --partition); empty = the cluster's default partition"),
    account: z
      .string()
      .regex(/^[A-Za-z0-9_.-]*$/, 'a Slurm account name')
      .default('')
      .describe("Slurm: account charged (sbatch --account); empty = the user's default account"),
    nodes: posInt
      .default(1)
      .describe(
        'Slurm: nodes of the batch job (sbatch --nodes); an external engine gets it as {nodes}. The local launcher runs on one node',
      ),
    gpus_per_node: nonNegInt
      .default(0)
      .describe(
        "Slurm: GPUs per node (sbatch --gpus-per-node); 0 = none requested. An external engine gets it as {gpus_per_node} (local or Slurm); 0 = the engine preset's gpus_per_node",
      ),
    cpus_per_task: nonNegInt
      .default(0)
      .describe("Slurm: CPUs of the trainer's task (sbatch --cpus-per-task); 0 = the partition's default"),
    mem: z
      .string()
      .regex(/^(\d+[KMGT]?)?$/, 'a size such as 64G')
      .default('')
      .describe('Slurm: memory per node (sbatch --mem, e.g. "64G"); empty = the partition\'s default'),
    time_limit: z
      .string()
      .refine((t) => t === '' || SLURM_TIME.test(t), 'a Slurm time such as 30, 4:00:00 or 1-00:00:00')
      .default('')
      .describe(
        "Slurm: time limit of one batch job (sbatch --time: minutes, h:mm:ss or d-hh:mm:ss); empty = the partition's default. A job that reaches it saves a checkpoint (see signal_seconds) and the stage continues in a new job",
      ),
    signal_seconds: posInt
      .max(65535)
      .default(120)
      .describe(
        'Slurm: seconds before the time limit at which Slurm sends the trainer SIGUSR1 (sbatch --signal=B:USR1@N), so that it saves a checkpoint and ends before it is killed. Slurm checks time limits periodically: it may come about 30 s early or late',
      ),
    sbatch_args: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Slurm: extra sbatch options, one per element (e.g. ["--qos=high", "--constraint=a100"]). Worker-side configs only: a workflow input\'s set cannot name it',
      ),
    setup: z
      .array(z.string())
      .default([])
      .describe(
        'Slurm: shell lines the batch script runs before it starts the trainer (e.g. "module load cuda/12.1"); a failing line fails the job. Worker-side configs only: a workflow input\'s set cannot name it',
      ),
    poll_seconds: posNum
      .default(5)
      .describe(
        "Slurm: seconds between the worker's reads of the job's state (scontrol); progress is read from metrics.jsonl every second",
      ),
    max_failed_starts: posInt
      .default(3)
      .describe(
        "Consecutive starts of a stage's trainer that end without training a step and without a result (Slurm batch jobs; an external engine's runs under the local launcher too) before the stage fails for good, with the end of the last one's output",
      ),
  })
  .describe(
    'Ours: where shards run. The stage config hash leaves this section out: changing it under a running job is allowed',
  );

export const validationSchema = z
  .strictObject({
    samples: nonNegInt
      .default(4)
      .describe(
        'Samples of the validation set: this many sample ids spread evenly over the training data source (there is no separate validation split, so this measures fit, not generalisation); 0 = no validation loss',
      ),
    timesteps: z
      .array(
        z
          .number()
          .int()
          .min(0)
          .max(NUM_TRAIN_TIMESTEPS - 1),
      )
      .min(1)
      .default([100, 300, 500, 700, 900])
      .describe(
        'Fixed diffusion timesteps at which every validation sample is noised, with fixed noise per sample and timestep; the validation loss is the mean v-prediction loss over samples x timesteps',
      ),
    interval: nonNegInt
      .default(0)
      .describe(
        'Also measure the validation loss every this many steps (0 = only at the start and the end of the stage)',
      ),
    batch_size: posInt
      .default(1)
      .describe(
        'Validation (sample, timestep) pairs per forward pass; more is faster where memory allows (the value is the same for every batch size)',
      ),
  })
  .describe(
    "Ours: a validation loss that can be compared across steps, a deterministic function of the weights (fixed samples, timesteps and noise; forward only); measured at the stage's start and end and every `interval` steps, written to metrics.jsonl. It never changes training",
  );

/** The built-in engine's name: `engine.preset = "tfjs"` (the default) is never looked up as a preset file. */
export const BUILTIN_ENGINE = 'tfjs';

/** An engine preset's name: a plain file name without its .toml (no folder, no "..", nothing a shell reads). */
export const ENGINE_PRESET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const engineSchema = z
  .strictObject({
    preset: z
      .string()
      .regex(ENGINE_PRESET_NAME, 'a preset name: letters, digits, ".", "_", "-" (no folder)')
      .refine((n) => !n.includes('..'), 'a preset name without ".."')
      .default(BUILTIN_ENGINE)
      .describe(
        'What trains a shard: "tfjs" = the built-in TensorFlow.js trainer; any other name = the engine preset <name>.toml from a worker --engine-dir folder or configs/engine/ (an external trainer such as TTT-Video-DiT\'s train.py under torchrun; see "Engines"). Programs and argv come only from presets: a workflow input\'s set cannot name engine.command',
      ),
  })
  .describe(
    'Ours: the engine that trains a shard. The stage config hash leaves this section out while it is the built-in "tfjs"',
  );

export const stageConfigSchema = z.strictObject({
  job: jobSchema.prefault({}),
  model: modelSchema,
  training: trainingSchema,
  optimizer: optimizerSchema,
  checkpoint: checkpointSchema,
  parallelism: parallelismSchema.prefault({}),
  remat: rematSchema.prefault({}),
  wandb: wandbSchema.prefault({}),
  shard: shardSchema.prefault({}),
  runtime: runtimeSchema.prefault({}),
  launcher: launcherSchema.prefault({}),
  validation: validationSchema.prefault({}),
  engine: engineSchema.prefault({}),
});

export type StageConfig = z.infer<typeof stageConfigSchema>;

export const curriculumSchema = z.strictObject({
  name: z.string().min(1).describe('Curriculum name'),
  description: z.string().default('').describe('Free text (informational)'),
  stages: z.array(z.string().min(1)).min(1).describe('Stage config files in order, relative to the curriculum file'),
});
export type CurriculumFile = z.infer<typeof curriculumSchema>;

/** Fields that TTT-Video-DiT keeps in another section; a clear pointer beats "unknown field". */
export const MOVED_FIELDS: Record<string, string> = {
  'training.warmup_steps': 'optimizer.warmup_steps',
  'training.adapter_method': 'model.adapter_method',
};

/** Fields that live in an engine preset, not in a stage config: a clear pointer beats "unknown field". */
export const PRESET_FIELDS = [
  'command',
  'checkpoint_layout',
  'config_format',
  'kind',
  'cwd',
  'env',
  'stop',
  'stop_signal',
] as const;
