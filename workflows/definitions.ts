/** Query, signals, update and search attributes of `trainCurriculum`; importable by clients. */
import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  ConvertInitInput,
  ConvertInitResult,
  CurriculumInput,
  Plan,
  Progress,
  ShardProgress,
  ShardSummary,
  StageFinal,
  StageStatus,
  TrainShardInput,
} from '../src/shared/types';

export const WORKFLOW_TYPE = 'trainCurriculum';

/** Stage, step, total steps, last loss, last checkpoint and state (step and loss as of the running shard's last report). */
export const progressQuery = defineQuery<Progress>('progress');
/** Pause: the running shard saves a checkpoint and stops; no new shard starts until `resume`. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Stop after the given stage ("18s"); validated against the curriculum and the stages already done. Returns the new value. */
export const setUntilUpdate = defineUpdate<string, [string]>('setUntil');
/**
 * Sent by the running trainShard activity every `shard.progress_seconds`, so that the
 * workflow's progress, search attributes and current details follow the shard between shard
 * ends. Reports that are older than what the workflow knows are ignored.
 */
export const shardProgressSignal = defineSignal<[ShardProgress]>('shardProgress');

/**
 * Custom search attributes the workflow keeps up to date. They must exist on the server:
 * `ttt-curriculum server`, `demo` and the tests' dev servers register them; on another server
 * run `temporal operator search-attribute create` (see README, "Search attributes").
 */
export const TRAINING_JOB = defineSearchAttributeKey('TrainingJob', 'KEYWORD');
export const TRAINING_STAGE = defineSearchAttributeKey('TrainingStage', 'KEYWORD');
export const TRAINING_STEP = defineSearchAttributeKey('TrainingStep', 'INT');
export const SEARCH_ATTRIBUTES = [TRAINING_JOB, TRAINING_STAGE, TRAINING_STEP] as const;

/** A stage of a planned job, as the bookkeeping activities take it. */
export interface StageRef {
  jobDir: string;
  stage: string;
  steps: number;
}

/** The activities the workflow calls: the contract between workflows/ and activities/. */
export interface Activities {
  /** Validates the curriculum and every stage config; a ConfigError names each problem. */
  planCurriculum(input: CurriculumInput): Promise<Plan>;
  /** Whether the stage is already finished (promoted final) and its latest checkpoint's step. */
  inspectStage(req: StageRef): Promise<StageStatus>;
  /** Promotes the stage's last checkpoint to its final folder. */
  promoteStage(req: StageRef): Promise<StageFinal>;
  /** Converts stage 1's CogVideoX weights into the job's init folder. */
  convertInit(input: ConvertInitInput): Promise<ConvertInitResult>;
  /** Trains one shard; resumes from the stage's latest complete checkpoint. */
  trainShard(input: TrainShardInput): Promise<ShardSummary>;
}
