/**
 * The Temporal plugin: registers the `trainCurriculum` workflow and the activities on a Worker.
 *
 *   const worker = await Worker.create({ connection, taskQueue: 'ttt-curriculum', plugins: [new TttCurriculumPlugin()] });
 */
import * as path from 'node:path';
import { SimplePlugin } from '@temporalio/plugin';
import { createActivities } from '../../activities';

/** Path of the compiled workflow module (bundled by the Worker). */
export const WORKFLOWS_PATH = path.resolve(__dirname, '..', '..', 'workflows', 'index.js');

export class TttCurriculumPlugin extends SimplePlugin {
  constructor() {
    super({ name: 'ttt-curriculum', activities: createActivities(), workflowsPath: WORKFLOWS_PATH });
  }
}
