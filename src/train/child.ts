/**
 * Entry point of the training child process: `node child.js '<ShardRequest JSON>'`.
 * Runs one shard and reports through the line protocol (protocol.ts). It dies with its parent:
 * when stdin closes or the parent pid changes, it exits without writing anything more, so that
 * it never becomes a second, unsupervised writer of the job's checkpoints.
 */
import { isUserError } from '../errors';
import { encode } from './protocol';
import { runShard, type ShardRequest } from './shard';

const parentPid = process.ppid;
let stopRequested = false;

function orphaned(): boolean {
  return process.ppid !== parentPid;
}

function exitOrphaned(): never {
  process.exit(70);
}

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
const watchdog = setInterval(() => {
  if (orphaned()) exitOrphaned();
}, 500);
watchdog.unref();

function send(s: string): void {
  process.stdout.write(s);
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (!arg) throw new Error('usage: child.js <ShardRequest JSON>');
  const req = JSON.parse(arg) as ShardRequest;
  const result = await runShard(req, {
    onProgress: (p) => send(encode({ ttt: 'progress', ...p })),
    onCheckpoint: (c) => send(encode({ ttt: 'checkpoint', ...c })),
    shouldStop: () => {
      if (orphaned()) exitOrphaned();
      return stopRequested;
    },
    // The step just computed is not written when the parent died during it.
    beforeWrite: () => {
      if (orphaned()) exitOrphaned();
    },
    saveHooks: {
      beforeRename: () => {
        if (orphaned()) exitOrphaned();
      },
    },
  });
  send(encode({ ttt: 'result', result }));
}

main().then(
  () => process.stdout.write('', () => process.exit(0)),
  (e: unknown) => {
    const err = e as Error & { kind?: string };
    send(
      encode({
        ttt: 'error',
        message: err.message ?? String(e),
        userError: isUserError(e),
        kind: isUserError(e) ? (err.kind ?? 'UserError') : (err.name ?? 'Error'),
      }),
    );
    process.stdout.write('', () => process.exit(1));
  },
);
