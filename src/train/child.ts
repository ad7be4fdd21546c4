/**
 * Entry point of the training process. Runs one shard and reports its outcome.
 *
 *   node child.js '<ShardRequest JSON>'
 *       Local: a child of the trainShard activity, reporting through the line protocol
 *       (protocol.ts). It dies with its parent: when stdin closes or the parent pid changes, it
 *       exits without writing anything more, so that it never becomes a second, unsupervised writer.
 *   node child.js --detached <request.json> <result.json> <checkpoints.jsonl>
 *       Slurm: the batch job's trainer. It has no parent to watch; the stage's lease fences it
 *       (a newer writer makes its next write fail). Its outcome (the protocol's result or error
 *       message) goes to <result.json>, written aside and renamed; its checkpoint messages are
 *       appended to <checkpoints.jsonl>; progress is in metrics.jsonl.
 *
 * Either way SIGUSR1 (Slurm's time-limit warning, or scancel --signal=USR1 on pause and cancel)
 * and "stop" on stdin make it save a checkpoint and return.
 */
import * as fs from 'node:fs';
import { isUserError } from '../errors';
import { writeAtomically } from './launch/slurm-files';
import { type ChildMessage, encode } from './protocol';
import type { ShardControl, ShardRequest, ShardResult } from './shard-types';

let stopRequested = false;
// Installed before the trainer's modules load (they load in main), so that an early signal is not lost.
process.on('SIGUSR1', () => {
  stopRequested = true;
});

const detached = process.argv[2] === '--detached';

function send(m: ChildMessage): void {
  process.stdout.write(encode(m));
}

/** Local mode: stop on "stop", exit when the parent is gone. Returns the orphan check. */
function superviseByParent(): () => void {
  const parentPid = process.ppid;
  const exitOrphaned = (): never => process.exit(70);
  const check = (): void => {
    if (process.ppid !== parentPid) exitOrphaned();
  };
  process.stdin.setEncoding('utf8');
  let buf = '';
  process.stdin.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line === 'stop') stopRequested = true;
    }
  });
  process.stdin.on('end', exitOrphaned);
  process.stdin.on('error', exitOrphaned);
  setInterval(check, 500).unref();
  return check;
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

async function run(
  req: ShardRequest,
  orphanCheck: (() => void) | undefined,
  checkpointsFile?: string,
): Promise<ShardResult> {
  const { runShard } = await import('./shard');
  const ctl: ShardControl = {
    shouldStop: () => {
      orphanCheck?.();
      return stopRequested;
    },
    // The step just computed is not written when the parent died during it.
    beforeWrite: orphanCheck,
    saveHooks: { beforeRename: orphanCheck },
  };
  if (checkpointsFile)
    ctl.onCheckpoint = (c) => fs.appendFileSync(checkpointsFile, encode({ ttt: 'checkpoint', ...c }));
  else {
    ctl.onProgress = (p) => send({ ttt: 'progress', ...p });
    ctl.onCheckpoint = (c) => send({ ttt: 'checkpoint', ...c });
  }
  return runShard(req, ctl);
}

async function main(): Promise<void> {
  if (detached) {
    const [requestFile, outcomeFile, checkpointsFile] = process.argv.slice(3);
    if (!requestFile || !outcomeFile || !checkpointsFile)
      throw new Error('usage: child.js --detached <request.json> <result.json> <checkpoints.jsonl>');
    let outcome: ChildMessage;
    try {
      const req = JSON.parse(fs.readFileSync(requestFile, 'utf8')) as ShardRequest;
      const slurmJob = process.env.SLURM_JOB_ID;
      if (slurmJob) {
        req.who = `${req.who ?? 'trainer'}, slurm job ${slurmJob}`;
        req.logContext = { ...req.logContext, slurmJob };
      }
      outcome = { ttt: 'result', result: await run(req, undefined, checkpointsFile) };
    } catch (e) {
      outcome = errorMessage(e);
    }
    // Aside, then renamed: the worker reads all of it or nothing.
    writeAtomically(outcomeFile, outcome);
    if (outcome.ttt === 'error') throw new Error(outcome.message);
    return;
  }
  const orphanCheck = superviseByParent();
  try {
    const arg = process.argv[2];
    if (!arg) throw new Error('usage: child.js <ShardRequest JSON>');
    send({ ttt: 'result', result: await run(JSON.parse(arg) as ShardRequest, orphanCheck) });
  } catch (e) {
    send(errorMessage(e));
    throw e;
  }
}

main().then(
  () => process.stdout.write('', () => process.exit(0)),
  (e: unknown) => {
    if (detached) process.stderr.write(`training failed: ${(e as Error).message ?? String(e)}\n`);
    process.stdout.write('', () => process.exit(1));
  },
);
