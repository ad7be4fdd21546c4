/**
 * The JSON shapes that cross Temporal: workflow input and result, activity inputs and outputs,
 * the progress query. Small by design (paths, steps, losses, hashes): workflow history never
 * carries tensors or expanded configs.
 */

/** Workflow input, e.g. {"jobName": "demo", "curriculum": "configs/curriculum/tiny.toml", "set": {"job.dump_folder": "runs"}, "until": "63s"}. */
export interface CurriculumInput {
  jobName: string;
  curriculum: string;
  /** Overrides applied to every stage: {"section.field": value}. */
  set?: Record<string, unknown>;
  /** Last stage to run ("18s" or "18sec"); default: the curriculum's last stage. */
  until?: string;
}

export interface PlannedStage {
  /** "3s", "9s", ... */
  name: string;
  configFile: string;
  configHash: string;
  steps: number;
  /** Stage-1 init weights folder (absolute), or null for a fresh initialisation. */
  initStateDir: string | null;
  /**
   * Stage 1 only: the CogVideoX diffusers folder that checkpoint.init_state_dir names, which the
   * workflow converts into initStateDir (<job>/init) before the stage's first step; else null.
   */
  convertFrom: string | null;
  /** Options of that conversion: the stage's TTT layer and seed. */
  ssmLayer: 'ttt_mlp' | 'ttt_linear';
  seed: number;
  shardMaxSeconds: number;
  shardMaxSteps: number;
  heartbeatTimeoutSeconds: number;
  /** Seconds between the running shard's progress reports to the workflow (shard.progress_seconds). */
  progressSeconds: number;
  /** Where the stage's shards run (the [launcher] section); absent in plans made before launchers existed = local. */
  launcher?: LauncherSettings;
}

/** The [launcher] section as planned: where a shard runs. Small JSON (history carries it). */
export interface LauncherSettings {
  kind: 'local' | 'slurm';
  partition: string;
  account: string;
  nodes: number;
  gpusPerNode: number;
  cpusPerTask: number;
  mem: string;
  timeLimit: string;
  signalSeconds: number;
  sbatchArgs: string[];
  setup: string[];
  pollSeconds: number;
  maxFailedStarts: number;
}

export interface Plan {
  jobName: string;
  jobDir: string;
  curriculum: string;
  stages: PlannedStage[];
  until: string;
  /**
   * Whether the namespace has the job search attributes (TrainingJob, TrainingStage, TrainingStep);
   * the workflow upserts them only then. Absent in plans of older workers: upserted as before.
   */
  searchAttributes?: boolean;
}

export interface TrainShardInput {
  jobDir: string;
  stage: PlannedStage;
  set: Record<string, unknown>;
  /** Weights for the stage's step 0 (absolute folder) or null for a fresh initialisation. */
  initFrom: string | null;
}

export interface ShardSummary {
  stage: string;
  /** Steps completed in the stage after this shard. */
  step: number;
  totalSteps: number;
  done: boolean;
  /** Step this shard resumed from. */
  startStep: number;
  stepsRun: number;
  firstLoss: number | null;
  lastLoss: number | null;
  /**
   * The last validation loss this shard measured (validation.*) and the step it was measured
   * after; null when it measured none. Absent in results of older workers.
   */
  valLoss?: number | null;
  valStep?: number | null;
  /** The checkpoint holding `step`. */
  checkpoint: string;
  seconds: number;
  backend: string;
  /** The backend's device: "cpu: <processor>, N threads" or "gpu: <GPU model>". */
  device: string;
  /** Why the shard ended: "done", "steps", "time" or "stop". */
  reason: 'done' | 'steps' | 'time' | 'stop';
}

/** The convertInit activity: diffusers folder -> TTT-Video-DiT weights folder. */
export interface ConvertInitInput {
  from: string;
  out: string;
  ssmLayer: 'ttt_mlp' | 'ttt_linear';
  seed: number;
}

export interface ConvertInitResult {
  out: string;
  reused: boolean;
  inputHash: string;
  seconds: number;
}

export interface StageFinal {
  stage: string;
  steps: number;
  finalCheckpoint: string;
  /** sha256 of the final model.safetensors. */
  modelSha256: string;
  firstLoss: number | null;
  lastLoss: number | null;
  /**
   * Validation loss (fixed samples, timesteps and noise; validation.*) of the stage's start
   * weights and of its final weights, from its metrics.jsonl; null when not measured. Absent in
   * results of older workers.
   */
  valLossStart?: number | null;
  valLossEnd?: number | null;
}

export interface StageStatus {
  stage: string;
  /** Present when the stage already has a promoted final checkpoint with all its steps. */
  final: StageFinal | null;
  /** Latest complete checkpoint's step (0 if none). */
  step: number;
}

export interface StageResult extends StageFinal {
  wallSeconds: number;
}

export interface CurriculumResult {
  jobName: string;
  curriculum: string;
  until: string;
  stages: StageResult[];
}

export type JobState = 'planning' | 'running' | 'pausing' | 'paused' | 'completed';

export interface Progress {
  jobName: string;
  /** Absolute job folder on the workers (dump_folder/job name); null until planned. */
  jobDir: string | null;
  state: JobState;
  stage: string | null;
  stageIndex: number;
  stages: string[];
  /** Steps of every stage, in order. */
  stageSteps: number[];
  until: string | null;
  /** Steps done in the current stage as of the running shard's last report (or the last finished shard). */
  step: number;
  totalSteps: number;
  lastLoss: number | null;
  /** The current stage's last validation loss known to the workflow and the step it was measured after; null when none. */
  valLoss?: number | null;
  valStep?: number | null;
  lastCheckpoint: string | null;
  completed: StageResult[];
}

/**
 * Where a running shard stands. The one progress shape on the whole path: the training child's
 * progress line, the trainShard activity's heartbeat details, its `shardProgress` signal to the
 * workflow, and the live step of `status` and `watch`. Loss, gradient norm and step time are
 * null until the shard's first step.
 */
export interface ShardProgress {
  stage: string;
  step: number;
  totalSteps: number;
  loss: number | null;
  gradNorm: number | null;
  stepSeconds: number | null;
  /** The last validation loss the shard measured and the step it was measured after; absent until it measured one. */
  valLoss?: number;
  valStep?: number;
  /** The shard's backend ("tensorflow", "wasm", "cpu") and device ("cpu: <processor>, N threads", "gpu: <model>"); absent before its first step. */
  backend?: string;
  device?: string;
  /** Where the shard runs: a Slurm shard's job id and state (absent for reports of older workers). */
  launcher?: LauncherState;
}

/** A running shard's launcher: "local", or "slurm" with the Slurm job id and state (PENDING, RUNNING, ...). */
export interface LauncherState {
  kind: 'local' | 'slurm';
  jobId: string | null;
  state: string | null;
}

/** State carried across continue-as-new. */
export interface Carried {
  results: StageResult[];
  until: string;
  paused: boolean;
  stageStartedAt: number | null;
}
