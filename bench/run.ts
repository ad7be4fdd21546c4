/**
 * `npm run bench [-- name ...]`: benchmarks, printed as tables. Not tests: figures vary with
 * the machine; targets are stated next to each figure.
 *   model      per-token time across stage lengths, FLOP/s ratio, remat, step time per backend;
 *              tensorflow vs wasm in the same run (bench/native.ts)
 *   data       data loading / step time, tiny 63s stage from files (target < 5%); the prefetch
 *              thread with realistic 63 s samples vs dd (bench/native.ts)
 *   overhead   stage through Temporal / same steps direct (target <= 1.05)
 *   convert    CogVideoX conversion of a multi-GB checkpoint: peak RSS (target <= 1.5 x largest input shard + 300 MB), s/GB
 */
import * as os from 'node:os';
import { initBackend } from '../src/backend';
import { convertBench } from './convert';
import { dataBench } from './data';
import { modelBench } from './model';
import { nativeBench, prefetchBench } from './native';
import { overheadBench } from './overhead';

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const want = (n: string): boolean => names.length === 0 || names.includes(n);
  const backend = await initBackend('auto');
  process.stdout.write(
    `ttt-curriculum benchmarks: node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), backend ${backend}\n\n`,
  );
  if (want('model')) {
    await modelBench(process.stdout);
    await nativeBench(process.stdout);
  }
  if (want('data')) {
    const r = await dataBench(Number(process.env.BENCH_DATA_STEPS ?? 6));
    process.stdout.write(
      `Data loading, tiny 63s stage from a file dataset: ${(r.dataSeconds * 1000).toFixed(1)} ms of a ${(r.stepSeconds * 1000).toFixed(0)} ms step = ${((100 * r.dataSeconds) / r.stepSeconds).toFixed(2)}% (target < 5%)\n\n`,
    );
    await prefetchBench(process.stdout);
  }
  if (want('convert')) {
    const layers = Number(process.env.BENCH_CONVERT_LAYERS ?? 13);
    const shards = Number(process.env.BENCH_CONVERT_SHARDS ?? 3);
    const dtype = process.env.BENCH_CONVERT_DTYPE === 'bfloat16' ? 'bfloat16' : 'float32';
    const gb = (n: number): string => (n / 1e9).toFixed(2);
    process.stdout.write(
      `CogVideoX conversion: synthetic ${layers}-layer CogVideoX-5B-width checkpoint, BF16 in ${shards} shards -> ${dtype}, in a child process\n`,
    );
    const r = convertBench({ layers, shards, dtype });
    process.stdout.write(
      `| input | largest input shard | output | convert (s) | s per GB in | s per GB out | peak RSS | RSS before converting | target RSS | reuse check (s) |\n|---|---|---|---|---|---|---|---|---|---|\n` +
        `| ${gb(r.inputBytes)} GB | ${gb(r.largestShardBytes)} GB | ${gb(r.outputBytes)} GB | ${r.convertSeconds.toFixed(1)} | ${(r.convertSeconds / (r.inputBytes / 1e9)).toFixed(2)} | ${(r.convertSeconds / (r.outputBytes / 1e9)).toFixed(2)} | ${(r.peakRss / 1e6).toFixed(0)} MB | ${(r.rssBefore / 1e6).toFixed(0)} MB | ${(r.targetRss / 1e6).toFixed(0)} MB | ${r.reuseSeconds.toFixed(1)} |\n` +
        `peak RSS ${r.peakRss <= r.targetRss ? '<=' : '>'} target (1.5 x largest input shard + 300 MB); input written in ${r.writeSeconds.toFixed(1)} s and read back from the page cache\n\n`,
    );
  }
  if (want('overhead')) {
    const steps = Number(process.env.BENCH_OVERHEAD_STEPS ?? 600);
    const reps = Number(process.env.BENCH_OVERHEAD_REPS ?? 2);
    process.stdout.write(
      `Orchestration overhead: tiny 3s stage, ${steps} steps (shards of at most 60 s), ${reps} alternating reps\n`,
    );
    const r = await overheadBench({ steps, reps });
    process.stdout.write(`| run | direct (s) | through Temporal (s) |\n|---|---|---|\n`);
    r.direct.forEach((d, i) => process.stdout.write(`| ${i + 1} | ${d.toFixed(2)} | ${r.temporal[i]!.toFixed(2)} |\n`));
    process.stdout.write(`overhead ratio (sum Temporal / sum direct): ${r.ratio.toFixed(3)} (target <= 1.05)\n\n`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
