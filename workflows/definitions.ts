/** Query, signals, update and search attributes of `trainCurriculum`; importable by clients. */
import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Progress, ShardProgressReport } from '../src/types';

export const WORKFLOW_TYPE = 'trainCurriculum';
export const DEFAULT_TASK_QUEUE = 'ttt-curriculum';

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
export const shardProgressSignal = defineSignal<[ShardProgressReport]>('shardProgress');

/**
 * Custom search attributes the workflow keeps up to date. They must exist on the server:
 * `ttt-curriculum server`, `demo` and the tests' dev servers register them; on another server
 * run `temporal operator search-attribute create` (see README, "Search attributes").
 */
export const TRAINING_JOB = defineSearchAttributeKey('TrainingJob', 'KEYWORD');
export const TRAINING_STAGE = defineSearchAttributeKey('TrainingStage', 'KEYWORD');
export const TRAINING_STEP = defineSearchAttributeKey('TrainingStep', 'INT');
export const SEARCH_ATTRIBUTES = [TRAINING_JOB, TRAINING_STAGE, TRAINING_STEP] as const;
