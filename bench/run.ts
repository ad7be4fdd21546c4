/**
 * `npm run bench [-- name ...]`: benchmarks, printed as tables. Not tests: figures vary with
 * the machine; targets are stated next to each figure.
 *   model      per-token time across stage lengths, FLOP/s ratio, remat, step time per backend;
 *              tensorflow vs wasm in the same run (bench/native.ts)
 *   native     the model benchmark's tensorflow-vs-wasm tables (e)-(g) alone
 *   remat      the model benchmark's remat table (c) alone
 *   data       data loading / step time, tiny 63s stage from files (target < 5%); the prefetch
 *              thread with realistic 63 s samples vs dd (bench/native.ts)
 *   overhead   stage through Temporal / same steps direct, fresh processes, alternating (target <= 1.05)
 *   convert    CogVideoX conversion of a multi-GB checkpoint: peak RSS (target <= 1.5 x largest input shard + 300 MB), s/GB
 *   validation the validation loss on the tiny curriculum: start -> end per stage, and its cost
 *              (each stage with and without it, order alternating; same final weights)
 */
import * as os from 'node:os';
import { initBackend } from '../src/backend';
import { convertBench } from './convert';
import { dataBench } from './data';
import { modelBench } from './model';
import { nativeBench, prefetchBench } from './native';
import { overheadBench } from './overhead';
import { rematBench } from './remat';
import { validationBench, validationTable } from './validation';

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
  } else if (names.includes('native')) {
    // Only the tensorflow-vs-wasm tables of the model benchmark, (e)-(g).
    await nativeBench(process.stdout);
  } else if (names.includes('remat')) {
    // Only the remat table of the model benchmark (c).
    const reps = Math.max(3, Number(process.env.BENCH_REMAT_REPS ?? 4));
    const r = rematBench(reps);
    const med = (xs: number[]): number => {
      const v = [...xs].sort((a, b) => a - b);
      const m = v.length >> 1;
      return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
    };
    process.stdout.write(
      `Remat at 63s (width 64, full layer recomputation), ${reps} reps, fresh processes, order alternating\n| rep | first | no remat (s) | remat (s) | ratio |\n|---|---|---|---|---|\n`,
    );
    r.timeRatios.forEach((x, i) =>
      process.stdout.write(
        `| ${i + 1} | ${r.first[i]} | ${r.plain[i]!.seconds.toFixed(3)} | ${r.remat[i]!.seconds.toFixed(3)} | ${x.toFixed(3)} |\n`,
      ),
    );
    process.stdout.write(
      `forward matmul GFLOP per step counted: no remat ${(r.plain[0]!.forwardFlops / 1e9).toFixed(3)}, remat ${(r.remat[0]!.forwardFlops / 1e9).toFixed(3)}; peak tensor memory ${(r.plain[0]!.peakBytes / 1e6).toFixed(1)} -> ${(r.remat[0]!.peakBytes / 1e6).toFixed(1)} MB (${r.memoryRatio.toFixed(2)}x)\n` +
        `time ratio: median ${med(r.timeRatios).toFixed(3)}, spread ${Math.min(...r.timeRatios).toFixed(3)}-${Math.max(...r.timeRatios).toFixed(3)}; load average ${r.load[0].toFixed(1)} -> ${r.load[1].toFixed(1)} on ${os.cpus().length} cores\n\n`,
    );
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
    const reps = Math.max(3, Number(process.env.BENCH_OVERHEAD_REPS ?? 3));
    process.stdout.write(
      `Orchestration overhead: tiny 3s stage, ${steps} steps (shards of at most 60 s), ${reps} reps, each side in fresh processes, order alternating\n`,
    );
    const r = await overheadBench({ steps, reps });
    process.stdout.write(`| rep | first | direct (s) | through Temporal (s) | ratio |\n|---|---|---|---|---|\n`);
    r.direct.forEach((d, i) =>
      process.stdout.write(
        `| ${i + 1} | ${r.first[i]} | ${d.toFixed(2)} | ${r.temporal[i]!.toFixed(2)} | ${r.ratios[i]!.toFixed(3)} |\n`,
      ),
    );
    process.stdout.write(
      `overhead ratio (median of per-rep Temporal / direct): ${r.ratio.toFixed(3)}, spread ${Math.min(...r.ratios).toFixed(3)}-${Math.max(...r.ratios).toFixed(3)} (target <= 1.05); load average ${r.load[0].toFixed(1)} -> ${r.load[1].toFixed(1)} on ${os.cpus().length} cores${r.load[0] > os.cpus().length ? ' (loaded machine: not a measurement of the target)' : ''}\n\n`,
    );
  }
  if (want('validation')) {
    process.stdout.write(
      'Validation loss on the tiny curriculum (configs/train/tiny: 2 samples x 3 timesteps, one forward pass each; 3s also every 10 steps), each stage with and without it, in this process, order alternating\n',
    );
    const r = await validationBench();
    process.stdout.write(
      `${validationTable(r.rows)}load average ${r.load[0].toFixed(1)} -> ${r.load[1].toFixed(1)} on ${os.cpus().length} cores\n\n`,
    );
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
