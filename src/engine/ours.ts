/**
 * The "ours" checkpoint layout: this project's own trainer (`ttt-curriculum train`) run as an
 * external engine. Its checkpoints are ours (src/checkpoint/store.ts: step folders with state.json
 * and sha256 sums, written aside and renamed) under <dump_folder>/<exp_name>/<stage>/checkpoints,
 * and it writes the stage's metrics.jsonl itself; so with {dump_folder} = job.dump_folder and
 * {exp_name} = the job name, they are where the built-in engine keeps them.
 */
import * as path from 'node:path';
import { stringify } from 'smol-toml';
import { latestCompleteCheckpoint } from '../checkpoint/store';
import { BUILTIN_ENGINE, type StageConfig } from '../config/schema';
import { checkpointsDir } from '../paths';
import type { CheckpointLayout } from './types';

/** `runDir` is the stage's folder, <dump_folder>/<exp_name>/<stage>: "ours" keeps one folder per stage. */
export const oursLayout: CheckpointLayout = {
  name: 'ours',
  latestComplete(runDir) {
    const ck = latestCompleteCheckpoint(checkpointsDir(runDir));
    return ck ? { step: ck.state.step, dir: ck.dir } : null;
  },
};

/**
 * The stage config for `ttt-curriculum train`: every validated field, paths made absolute (the
 * trainer may run in another working directory), and engine.preset = "tfjs": the trainer is the
 * built-in engine. The command line sets job.exp_name, job.dump_folder and
 * checkpoint.init_state_dir.
 */
export function oursStageToml(config: StageConfig): string {
  const t = config.training;
  const c: StageConfig = {
    ...config,
    job: { ...config.job, dump_folder: path.resolve(config.job.dump_folder) },
    training: { ...t, dataset_path: t.dataset_path === 'synthetic' ? t.dataset_path : path.resolve(t.dataset_path) },
    checkpoint: {
      ...config.checkpoint,
      init_state_dir: config.checkpoint.init_state_dir ? path.resolve(config.checkpoint.init_state_dir) : '',
    },
    engine: { preset: BUILTIN_ENGINE },
  };
  return `# The stage config of one shard, written by the ttt-curriculum worker for its engine (do not edit).\n${stringify(c)}`;
}
