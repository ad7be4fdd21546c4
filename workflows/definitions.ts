/** Query, signals and update of `trainCurriculum`; importable by clients. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Progress } from '../src/types';

export const WORKFLOW_TYPE = 'trainCurriculum';
export const DEFAULT_TASK_QUEUE = 'ttt-curriculum';

/** Stage, step, total steps, last loss, last checkpoint and state (as of the last finished shard). */
export const progressQuery = defineQuery<Progress>('progress');
/** Pause: the running shard saves a checkpoint and stops; no new shard starts until `resume`. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Stop after the given stage ("18s"); validated against the curriculum and the stages already done. Returns the new value. */
export const setUntilUpdate = defineUpdate<string, [string]>('setUntil');
