/**
 * Orchestration overhead: wall time of one stage run through Temporal (dev server, worker,
 * workflow, trainShard activity, training child process, promotion) divided by the same steps
 * run directly with the library's runShard, measured in the same invocation, alternating.
 */
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { connectClient, startJob } from '../src/temporal/client';
import { startDevServer } from '../src/temporal/devserver';
import { runShard } from '../src/train/shard';
import { createWorker } from '../src/temporal/worker';

export async function overheadBench(opts: {
  steps: number;
  reps: number;
}): Promise<{ direct: number[]; temporal: number[]; ratio: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-overhead-'));
  // shard.max_seconds stays at the tiny config's 60 s: a long stage runs as several shards, each
  // paying the per-shard costs (child process start, activity scheduling), as in real use.
  const set = { 'training.steps': opts.steps, 'checkpoint.interval': 50, 'training.global_batch_size': 1 };
  const cfg = path.resolve(__dirname, '..', '..', 'configs/train/tiny/3s.toml');
  const srv = await startDevServer({ dbFile: path.join(dir, 'temporal.sqlite'), headless: true });
  const { worker, connection } = await createWorker({ address: srv.address, taskQueue: 'bench', allowPaths: [dir] });
  const running = worker.run();
  const client = await connectClient({ address: srv.address });
  const direct: number[] = [];
  const temporal: number[] = [];
  try {
    // Warm-up (not timed): backend initialisation in this process, workflow bundle already built.
    await runShard({
      configFile: cfg,
      overrides: { ...set, 'training.steps': 2 },
      jobDir: path.join(dir, 'warm'),
      initFrom: null,
    });
    for (let r = 0; r < opts.reps; r++) {
      let t = Date.now();
      await runShard({
        configFile: cfg,
        overrides: { ...set, 'job.dump_folder': path.join(dir, 'direct') },
        jobDir: path.join(dir, 'direct', `d${r}`),
        initFrom: null,
        maxSeconds: Number.POSITIVE_INFINITY,
      });
      direct.push((Date.now() - t) / 1000);
      t = Date.now();
      const h = await startJob(
        client,
        {
          jobName: `bench-${r}`,
          curriculum: 'configs/curriculum/tiny.toml',
          until: '3s',
          set: { ...set, 'job.dump_folder': path.join(dir, 'temporal') },
        },
        { taskQueue: 'bench' },
      );
      await h.result();
      temporal.push((Date.now() - t) / 1000);
      process.stderr.write(
        `  rep ${r + 1}/${opts.reps}: direct ${direct[r]!.toFixed(2)} s, through Temporal ${temporal[r]!.toFixed(2)} s\n`,
      );
    }
  } finally {
    worker.shutdown();
    await running;
    await connection.close();
    await client.connection.close();
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  return { direct, temporal, ratio: sum(temporal) / sum(direct) };
}
