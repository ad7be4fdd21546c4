import * as path from 'node:path';
import { validateJobName } from './jobname';

/** Folder layout of a job, derived from a validated job name:
 *  <dump_folder>/<job>/<stage>/checkpoints/step-NNNNNNNN, <stage>/final, <stage>/metrics.jsonl,
 *  <dump_folder>/<job>/init (stage 1's weights converted from CogVideoX, when init_state_dir is a diffusers folder) */
export function jobDir(dumpFolder: string, jobName: string): string {
  return path.resolve(dumpFolder, validateJobName(jobName));
}
export function stageDir(jobDirPath: string, stage: string): string {
  if (!/^\d+s$/.test(stage)) throw new Error(`invalid stage name ${JSON.stringify(stage)}`);
  return path.join(jobDirPath, stage);
}
export const checkpointsDir = (stageDirPath: string): string => path.join(stageDirPath, 'checkpoints');
export const finalDir = (stageDirPath: string): string => path.join(stageDirPath, 'final');
export const metricsFile = (stageDirPath: string): string => path.join(stageDirPath, 'metrics.jsonl');
export const convertedInitDir = (jobDirPath: string): string => path.join(jobDirPath, 'init');
