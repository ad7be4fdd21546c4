/**
 * The Temporal plugin: registers the `trainCurriculum` workflow and the activities on a Worker.
 *
 *   const worker = await Worker.create({ connection, taskQueue: 'ttt-curriculum', plugins: [new TttCurriculumPlugin()] });
 */
import * as path from 'node:path';
import { SimplePlugin } from '@temporalio/plugin';
import { type ActivitiesOptions, createActivities } from '../../activities';

/** Path of the compiled workflow module (bundled by the Worker). */
export const WORKFLOWS_PATH = path.resolve(__dirname, '..', '..', 'workflows', 'index.js');

/** `allowed`: the folders that job inputs may reach (see src/allowed-paths.ts); default the working directory, plus configs/ read-only. */
export class TttCurriculumPlugin extends SimplePlugin {
  constructor(opts: ActivitiesOptions = {}) {
    super({ name: 'ttt-curriculum', activities: createActivities(opts), workflowsPath: WORKFLOWS_PATH });
  }
}
