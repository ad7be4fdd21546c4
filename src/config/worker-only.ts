/**
 * Config fields that a workflow input may never set. A workflow input comes from anyone who can
 * start a workflow on the namespace; if it could name a program, an argv, a shell line or raw
 * scheduler options, it would run commands on every worker. Those come from the worker's own
 * configs and presets only. Planning checks `set` against this list (and the trainShard activity
 * checks it again); the config files on the worker may set these fields as they need.
 *
 * launcher.setup and launcher.sbatch_args belong to the Slurm launcher ([launcher], src/train/launch).
 * An external engine's program, argv, working directory and environment live only in engine presets
 * (src/engine/preset.ts: worker-side files, picked by name with engine.preset); a set that names
 * them is refused here with a pointer to presets, before it could be mistaken for an unknown field.
 */
import type { ConfigProblem } from '../errors';

export interface WorkerOnlyField {
  /** Dotted field name; also covers the fields below it. */
  field: string;
  /** What the field holds, for the error. */
  holds: string;
  /** Where it comes from instead. */
  fix: string;
}

export const WORKER_ONLY_FIELDS: readonly WorkerOnlyField[] = [
  {
    field: 'engine.command',
    holds: 'a program and its argv',
    fix: 'pick an engine preset by name ("engine.preset"); presets live in the worker\'s configs/engine/ or the folders it is started with',
  },
  {
    field: 'engine.cwd',
    holds: "the external trainer's working directory",
    fix: 'pick an engine preset by name ("engine.preset"); its cwd is set in the preset file on the worker',
  },
  {
    field: 'engine.env',
    holds: "the external trainer's environment",
    fix: 'pick an engine preset by name ("engine.preset"); its env is set in the preset file on the worker',
  },
  {
    field: 'launcher.setup',
    holds: 'shell lines run before the trainer',
    fix: "put setup lines in the stage config files on the worker's side (or a worker-side preset), not in the workflow input",
  },
  {
    field: 'launcher.sbatch_args',
    holds: 'raw sbatch options',
    fix: "put sbatch options in the stage config files on the worker's side (or a worker-side preset); a job may set the named launcher fields (partition, nodes, ...)",
  },
];

/** Whether override key `key` reaches `field`: the field itself, a field below it, or a table above it. */
function reaches(key: string, field: string): boolean {
  return key === field || key.startsWith(`${field}.`) || field.startsWith(`${key}.`);
}

/** A problem for every key of `set` that names a worker-only field. */
export function workerOnlyProblems(
  set: Readonly<Record<string, unknown>>,
  source = 'input.set',
  fields: readonly WorkerOnlyField[] = WORKER_ONLY_FIELDS,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const [key, value] of Object.entries(set)) {
    const f = fields.find((w) => reaches(key, w.field));
    if (!f) continue;
    problems.push({
      file: source,
      field: key,
      value,
      message: `${f.field} holds ${f.holds}, which a workflow input may never set (anyone who can start a workflow could run commands on the workers)`,
      fix: f.fix,
    });
  }
  return problems;
}
