/**
 * The paths of a stage config, and how a job uses each one: the one list that planning and the
 * activities check against the roots a worker allows (src/allowed-paths.ts).
 */
import * as path from 'node:path';
import { type AllowedRoots, confinePath } from '../allowed-paths';
import { ConfigError, type ConfigProblem } from '../errors';
import type { StageConfig } from './schema';

/**
 * Checks every path field of a validated stage config: `job.dump_folder` is written,
 * `training.dataset_path` (unless "synthetic"), each of `training.jsonl_paths` (relative to it)
 * and `checkpoint.init_state_dir` (unless empty) are read. `overridden` holds the fields that
 * came from `overrideSource` rather than `file`. Returns every problem found.
 */
export function configPathProblems(
  allowed: AllowedRoots,
  c: StageConfig,
  file: string,
  overridden: ReadonlySet<string>,
  overrideSource: string,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const source = (field: string): { file: string; field: string } => ({
    file: overridden.has(field) ? overrideSource : file,
    field,
  });
  const check = (value: string, access: 'read' | 'write', field: string, base?: string): void => {
    try {
      confinePath(allowed, value, access, source(field), base);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(...e.problems);
    }
  };
  check(c.job.dump_folder, 'write', 'job.dump_folder');
  const t = c.training;
  if (t.dataset_path !== 'synthetic') {
    check(t.dataset_path, 'read', 'training.dataset_path');
    const ds = path.resolve(t.dataset_path);
    for (const j of t.jsonl_paths) check(j, 'read', 'training.jsonl_paths', ds);
  }
  if (c.checkpoint.init_state_dir !== '') check(c.checkpoint.init_state_dir, 'read', 'checkpoint.init_state_dir');
  return problems;
}
