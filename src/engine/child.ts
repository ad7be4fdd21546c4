/**
 * Entry point of the engine runner (runner.ts): the process that starts, follows and stops an
 * external trainer, as child.ts is the built-in engine's training process.
 *
 *   node child.js '<RunnerSpec JSON>'
 *       Local: a child of the trainShard activity, speaking the line protocol (protocol.ts):
 *       progress, the trainer's pid ("started"), the result or the error on stdout; "stop" on stdin
 *       stops the trainer the preset's way. When stdin closes or the parent pid changes (the worker
 *       died), it kills the trainer's process group and exits: no unsupervised trainer is left.
 *   node child.js --detached <spec.json> <result.json> <checkpoints.jsonl>
 *       Slurm: the batch job's program. SIGUSR1 (Slurm's time-limit warning, or scancel
 *       --signal=USR1 on pause and cancel) stops the trainer the preset's way; the outcome goes to
 *       <result.json>, written aside and renamed; progress is in metrics.jsonl.
 *
 * Either way SIGTERM kills the trainer's group and ends this process.
 */
import * as fs from 'node:fs';
import { isUserError } from '../errors';
import { logger } from '../log';
import { writeAtomically } from '../train/launch/slurm-files';
import { type ChildMessage, encode } from '../train/protocol';
import { CommandRunner, type RunnerSpec } from './runner';

const detached = process.argv[2] === '--detached';
let runner: CommandRunner | undefined;
let stopEarly = false;

process.on('SIGUSR1', () => {
  if (runner) runner.requestStop();
  else stopEarly = true;
});
process.on('SIGTERM', () => {
  runner?.abandon();
  process.exit(143);
});

function send(m: ChildMessage): void {
  process.stdout.write(encode(m));
}

function errorMessage(e: unknown): ChildMessage {
  const err = e as Error & { kind?: string };
  return {
    ttt: 'error',
    message: err.message ?? String(e),
    userError: isUserError(e),
    kind: isUserError(e) ? (err.kind ?? 'UserError') : (err.name ?? 'Error'),
  };
}

/** Local mode: "stop" on stdin stops the trainer; the parent gone kills it. */
function superviseByParent(): void {
  const parentPid = process.ppid;
  const orphaned = (): never => {
    runner?.abandon();
    process.exit(70);
  };
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line === 'stop') {
        if (runner) runner.requestStop();
        else stopEarly = true;
      }
    }
  });
  process.stdin.on('end', orphaned);
  process.stdin.on('error', orphaned);
  setInterval(() => {
    if (process.ppid !== parentPid) orphaned();
  }, 500).unref();
}

async function main(): Promise<void> {
  if (detached) {
    const [specFile, outcomeFile] = process.argv.slice(3);
    if (!specFile || !outcomeFile)
      throw new Error('usage: child.js --detached <spec.json> <result.json> <checkpoints.jsonl>');
    let outcome: ChildMessage;
    try {
      const spec = JSON.parse(fs.readFileSync(specFile, 'utf8')) as RunnerSpec;
      const slurmJob = process.env.SLURM_JOB_ID;
      if (slurmJob) spec.who = `${spec.who}, slurm job ${slurmJob}`;
      const log = logger.child({ stage: spec.stage, engine: spec.command.preset, ...(slurmJob ? { slurmJob } : {}) });
      runner = new CommandRunner(spec, log);
      if (stopEarly) runner.requestStop();
      outcome = { ttt: 'result', result: await runner.run() };
    } catch (e) {
      outcome = errorMessage(e);
    }
    writeAtomically(outcomeFile, outcome);
    if (outcome.ttt === 'error') throw new Error(outcome.message);
    return;
  }
  superviseByParent();
  try {
    const arg = process.argv[2];
    if (!arg) throw new Error('usage: child.js <RunnerSpec JSON>');
    const spec = JSON.parse(arg) as RunnerSpec;
    const log = logger.child({ stage: spec.stage, engine: spec.command.preset });
    runner = new CommandRunner(
      spec,
      log,
      (p) => send({ ttt: 'progress', ...p }),
      (pid) => send({ ttt: 'started', pid }),
    );
    if (stopEarly) runner.requestStop();
    send({ ttt: 'result', result: await runner.run() });
  } catch (e) {
    send(errorMessage(e));
    throw e;
  }
}

main().then(
  () => process.stdout.write('', () => process.exit(0)),
  (e: unknown) => {
    if (detached) process.stderr.write(`engine runner failed: ${(e as Error).message ?? String(e)}\n`);
    process.stdout.write('', () => process.exit(1));
  },
);
