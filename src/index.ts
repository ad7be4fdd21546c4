/** ttt-curriculum: the library. */
export { tf, initBackend, describeBackend, type BackendChoice, type BackendInfo } from './backend';
export { tttMlp, tttLinear, type TttMlpInputs, type TttLinearInputs } from './model/ttt';
export { ditForward, tttLayer } from './model/dit';
export { modelDims } from './config/dims';
export type { ModelDims } from './model/dims';
export { paramSpecs, isTrainable, isTttParam, hasWeightDecay } from './model/params';
export { TttCurriculumPlugin, WORKFLOWS_PATH } from './temporal/plugin';
export { createActivities, type Activities } from '../activities';
export {
  loadStageConfig,
  loadCurriculum,
  parseCliOverrides,
  resolveUntil,
  availableDevices,
  type LoadedStage,
  type LoadedCurriculum,
  type Overrides,
} from './config/load';
export { stageConfigSchema, curriculumSchema, type StageConfig } from './config/schema';
export { videoLengthInfo, normaliseStageName } from './shared/stages';
export {
  connectClient,
  startJob,
  runJob,
  jobHandle,
  progressQuery,
  pauseSignal,
  resumeSignal,
  setUntilUpdate,
  WORKFLOW_TYPE,
} from './temporal/client';
export {
  DEFAULT_TASK_QUEUE,
  connectionSettings,
  describeConnection,
  type ConnectionSettings,
  type ConnectionSummary,
} from './temporal/connection';
export { connectionOf } from './temporal/client';
export {
  allowedRoots,
  confinePath,
  describeRoots,
  ALLOW_PATHS_ENV,
  type AllowedRoots,
  type AllowedRoot,
} from './allowed-paths';
export { WORKER_ONLY_FIELDS, type WorkerOnlyField } from './config/worker-only';
export { EngineCatalog, type EnginePreset, type CommandPreset } from './engine/preset';
export { CONFIG_WRITERS, type ConfigWriter, LAYOUTS, logProgress, type LayoutSupport } from './engine/registry';
export type { CheckpointLayout, CompleteCheckpoint, ConfigFormat, LogProgress } from './engine/types';
export {
  SEARCH_ATTRIBUTES,
  TRAINING_JOB,
  TRAINING_STAGE,
  TRAINING_STEP,
} from '../workflows/definitions';
export { currentDetails, stepText } from './shared/progress';
export { createWorker, runWorker } from './temporal/worker';
export { runShard, type ShardRequest, type ShardResult } from './train/shard';
export { jobStatus, statusLine, type JobStatus, type StageStatusLine } from './temporal/status';
export {
  readSafetensors,
  encodeSafetensors,
  decodeSafetensors,
  readHeader,
  SafetensorsError,
} from './io/safetensors';
export {
  convertDiffusers,
  verifyConversion,
  type ConvertOptions,
  type ConvertResult,
  type ConvertProgress,
} from './convert/convert';
export { ConvertError, isDiffusersFolder } from './convert/config';
export { watchJob, type WatchOptions } from './temporal/watch';
export {
  plotJob,
  plotSpec,
  readJobMetrics,
  readJobValidation,
  type MetricRow,
  type ValidationRow,
} from './plot/plot';
export { trainingMetrics } from './temporal/metrics';
export {
  createSearchAttributeCommands,
  ensureSearchAttributes,
  searchAttributesExist,
} from './temporal/search-attributes';
export { startDevServer, type DevServer } from './temporal/devserver';
export { configReference } from './config/reference';
export {
  saveCheckpoint,
  loadCheckpoint,
  latestCompleteCheckpoint,
  verifyCheckpoint,
  loadModelWeights,
  weightsHash,
} from './checkpoint/store';
export { UserError, ConfigError } from './errors';
export { validateJobName } from './jobname';
export type * from './shared/types';
