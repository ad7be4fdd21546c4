/**
 * Orchestration overhead: wall time of one stage run through Temporal (dev server, worker,
 * workflow, trainShard activity, training child process, promotion) divided by the same steps
 * run directly (`ttt-curriculum train`, the library's runShard).
 *
 * Like with like: both sides train in fresh processes (direct: a `train` process per rep, timed
 * from spawn to exit; Temporal: the worker's training child, timed from the job's start to its
 * result), the worker runs in its own process (not beside this one's timers), and the order of the
 * two sides alternates from rep to rep. The spread over the reps is reported, not only a mean.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connectClient, startJob } from '../src/temporal/client';
import { startDevServer } from '../src/temporal/devserver';
import { CLI, ROOT, spawnWorker } from '../test/helpers';

export interface OverheadResult {
  direct: number[];
  temporal: number[];
  /** Which side ran first in each rep. */
  first: ('direct' | 'temporal')[];
  /** Per rep: Temporal / direct. */
  ratios: number[];
  /** Median of the per-rep ratios. */
  ratio: number;
  /** 1-minute load average before and after. */
  load: [number, number];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function runDirect(set: Record<string, number>, dumpFolder: string, name: string): Promise<number> {
  const t = Date.now();
  const args = [
    CLI,
    'train',
    'configs/train/tiny/3s.toml',
    `--job.dump_folder=${dumpFolder}`,
    `--job.exp_name=${name}`,
    ...Object.entries(set).map(([k, v]) => `--${k}=${v}`),
  ];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, TTT_LOG_LEVEL: 'warn' },
    });
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.once('exit', (code) =>
      code === 0 ? resolve((Date.now() - t) / 1000) : reject(new Error(`train exited ${code}: ${err.slice(-2000)}`)),
    );
  });
}

export async function overheadBench(opts: { steps: number; reps: number }): Promise<OverheadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-overhead-'));
  // shard.max_seconds stays at the tiny config's 60 s: a long stage runs as several shards, each
  // paying the per-shard costs (child process start, activity scheduling), as in real use.
  const set = { 'training.steps': opts.steps, 'checkpoint.interval': 50, 'training.global_batch_size': 1 };
  const srv = await startDevServer({ dbFile: path.join(dir, 'temporal.sqlite'), headless: true });
  // Info level: spawnWorker knows the worker is ready from its "worker started" log line.
  const worker = spawnWorker(srv.address, 'bench', {}, ['--allow-path', dir]);
  const client = await connectClient({ address: srv.address });
  const runTemporal = async (name: string, s: Record<string, number>): Promise<number> => {
    const t = Date.now();
    const h = await startJob(
      client,
      {
        jobName: name,
        curriculum: 'configs/curriculum/tiny.toml',
        until: '3s',
        set: { ...s, 'job.dump_folder': path.join(dir, 'temporal') },
      },
      { taskQueue: 'bench' },
    );
    await h.result();
    return (Date.now() - t) / 1000;
  };
  const out: OverheadResult = {
    direct: [],
    temporal: [],
    first: [],
    ratios: [],
    ratio: 0,
    load: [os.loadavg()[0]!, 0],
  };
  try {
    await worker.ready;
    // Warm-up of both sides (not timed): disk cache, the worker's workflow bundle.
    const warm = { ...set, 'training.steps': 2 };
    await runDirect(warm, path.join(dir, 'direct'), 'warm');
    await runTemporal('bench-warm', warm);
    for (let r = 0; r < opts.reps; r++) {
      const first = r % 2 === 0 ? 'direct' : 'temporal';
      const d = async (): Promise<void> => {
        out.direct.push(await runDirect(set, path.join(dir, 'direct'), `d${r}`));
      };
      const tm = async (): Promise<void> => {
        out.temporal.push(await runTemporal(`bench-${r}`, set));
      };
      if (first === 'direct') {
        await d();
        await tm();
      } else {
        await tm();
        await d();
      }
      out.first.push(first);
      out.ratios.push(out.temporal[r]! / out.direct[r]!);
      process.stderr.write(
        `  rep ${r + 1}/${opts.reps} (${first} first): direct ${out.direct[r]!.toFixed(2)} s, through Temporal ${out.temporal[r]!.toFixed(2)} s, load ${os.loadavg()[0]!.toFixed(1)}\n`,
      );
    }
  } finally {
    await worker.kill('SIGTERM');
    await client.connection.close();
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  out.ratio = median(out.ratios);
  out.load[1] = os.loadavg()[0]!;
  return out;
}
