/**
 * The native tensorflow backend against wasm, in the same run (issue 2/6):
 *   (e) step times, tiny stages and the 3 s stage at width 1024; the two backends take turns
 *       within each repetition, so that a slow spell of the machine hits both alike;
 *   (f) training FLOP/s / the same backend's 1024³ matMul FLOP/s, and the fraction of the CPU's
 *       peak (cores x FMA lanes x FMA units x 2 x clock, from lscpu / /proc/cpuinfo);
 *   (g) time per video token at 63 s / 3 s at width 512 (compute-bound, not per-op overhead);
 * and, for `bench data`, the prefetch thread with realistic sample sizes (a CogVideoX 63 s latent,
 * 253 x 16 x 60 x 90 float32 = 87 MB) against `dd` on the same files.
 * Weights change between timed steps (a small update, as training does), untimed.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeBackend, initBackend, tf } from '../src/backend';
import { loadStageConfig } from '../src/config/load';
import { disposeBatch, openDataSource } from '../src/data/batch';
import { readSample } from '../src/data/source';
import { openPrefetcher } from '../src/data/prefetch';
import { writeSynthDataset } from '../src/data/synthfiles';
import { modelDims } from '../src/config/dims';
import { NO_REMAT } from '../src/model/remat';
import { type PreparedStep, prepareStep } from './model';

const ROOT = path.resolve(__dirname, '..', '..');
/** The two backends, and tensorflow with graph replay off (src/graph.ts: TTT_GRAPH=0), op by op as before it. */
type Backend = 'tensorflow' | 'tensorflow-eager' | 'wasm';

interface Spread {
  median: number;
  min: number;
  max: number;
}
function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}
const fmt = (s: Spread, digits = 3): string =>
  `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

/** Width 1024: 16 heads of 64. */
const w1024 = { 'model.num_attention_heads': 16, 'model.attention_head_dim': 64 };

/** A training step of a tiny stage on the current backend, its weights updated after each run (untimed). */
function trainingStep(stage: string, overrides: Record<string, unknown>): PreparedStep {
  return prepareStep(stage, overrides, NO_REMAT, { updateWeights: true });
}

/** Seconds of one untransposed 1024³ product on the current backend. */
function matmulSeconds(a: tf.Tensor2D): number {
  const t = process.hrtime.bigint();
  const r = tf.matMul(a, a);
  r.dataSync();
  r.dispose();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** The CPU's peak float32 FLOP/s: cores x clock x SIMD lanes x 2 (FMA) x FMA units per core. */
export function cpuPeak(): { flops: number; text: string } {
  let lscpu = '';
  try {
    lscpu = execFileSync('lscpu', { encoding: 'utf8' });
  } catch {
    // no lscpu
  }
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(lscpu)?.[1]?.trim();
  const cores = Number(field('Core\\(s\\) per socket') ?? os.cpus().length) * Number(field('Socket\\(s\\)') ?? 1);
  const flags = field('Flags') ?? '';
  const lanes = /\bavx512f\b/.test(flags) ? 16 : /\bavx2\b/.test(flags) ? 8 : 4;
  const fma = /\bfma\b/.test(flags) ? 2 : 1;
  // Two FMA units per core on server cores with AVX-512 and AVX2 cores alike (BENCH_FMA_UNITS overrides).
  const units = Number(process.env.BENCH_FMA_UNITS ?? 2);
  // lscpu's clock where it has one, else /proc/cpuinfo's (a VM's lscpu may list none).
  let cpuinfo = '';
  try {
    cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux
  }
  const mhz =
    Number(field('CPU max MHz') ?? field('CPU MHz')) ||
    Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]) ||
    os.cpus()[0]?.speed ||
    0;
  const flops = cores * mhz * 1e6 * lanes * fma * units;
  return {
    flops,
    text: `${cores} cores x ${(mhz / 1000).toFixed(2)} GHz x ${lanes} float32 lanes (${lanes === 16 ? 'AVX-512' : lanes === 8 ? 'AVX2' : 'SSE'}) x ${fma} (FMA) x ${units} FMA units = ${(flops / 1e9).toFixed(1)} GFLOP/s`,
  };
}

/** Case|backend that threw, and why (reported instead of a time). */
const failed = new Map<string, string>();

interface Case {
  label: string;
  stage: string;
  overrides: Record<string, unknown>;
  /** The library that runs it (default both; tensorflow: graph and eager alike). */
  only?: 'tensorflow' | 'wasm';
}

/** Runs every case on both backends, alternating backends within each repetition; seconds per case and backend. */
async function alternate(
  cases: Case[],
  reps: number,
): Promise<Map<string, { s: number[]; flops: number; tokens: number; mm: number[] }>> {
  const out = new Map<string, { s: number[]; flops: number; tokens: number; mm: number[] }>();
  failed.clear();
  const graphEnv = process.env.TTT_GRAPH;
  const backends: Backend[] = ['tensorflow', 'tensorflow-eager', 'wasm'];
  for (let r = -1; r < reps; r++) {
    for (const b of r % 2 === 0 ? backends : [...backends].reverse()) {
      const lib = b === 'wasm' ? 'wasm' : 'tensorflow';
      await initBackend(lib);
      if (b === 'tensorflow-eager') process.env.TTT_GRAPH = '0';
      else delete process.env.TTT_GRAPH;
      const a = tf.randomNormal([1024, 1024]) as tf.Tensor2D;
      matmulSeconds(a);
      for (const c of cases) {
        const key = `${c.label}|${b}`;
        if (failed.has(key)) continue;
        if (c.only && c.only !== lib) {
          failed.set(key, `not run on ${b}`);
          continue;
        }
        let step: PreparedStep | undefined;
        try {
          step = trainingStep(c.stage, c.overrides);
          const first = await step.run(); // warm-up of this configuration
          const timed = await step.run();
          const e = out.get(key) ?? { s: [], flops: first.flops, tokens: first.videoTokens, mm: [] };
          if (r >= 0) e.s.push(timed.seconds);
          out.set(key, e);
        } catch (err) {
          // (wasm: "memory access out of bounds" once its heap passes 2 GB)
          failed.set(key, (err as Error).message.split('\n')[0]!);
        } finally {
          step?.dispose();
        }
      }
      const mm = out.get(`${cases[0]!.label}|${b}`)!.mm;
      const best = Math.min(matmulSeconds(a), matmulSeconds(a), matmulSeconds(a));
      if (r >= 0) mm.push(best);
      a.dispose();
    }
  }
  if (graphEnv === undefined) delete process.env.TTT_GRAPH;
  else process.env.TTT_GRAPH = graphEnv;
  return out;
}

export async function nativeBench(
  out: NodeJS.WritableStream,
  reps = Number(process.env.BENCH_NATIVE_REPS ?? 3),
): Promise<void> {
  const w = (s: string): boolean => out.write(s);
  try {
    await initBackend('tensorflow');
  } catch (e) {
    w(`(e)-(g) tensorflow vs wasm: skipped, ${(e as Error).message}\n\n`);
    return;
  }
  const device = describeBackend().deviceText;
  const cases: Case[] = [
    { label: '3s, width 32 (tiny)', stage: '3s', overrides: {} },
    { label: '63s, width 32 (tiny)', stage: '63s', overrides: {} },
    { label: '3s, width 1024 (16 heads of 64)', stage: '3s', overrides: w1024 },
    // The tiny 3s stage has 64 tokens: its products have 64 rows, far from a square 1024^3 product.
    // The same width at 896 tokens (latent 16x16: 64 tokens a frame) is where compute dominates.
    {
      label: '3s, width 1024, 896 tokens',
      stage: '3s',
      overrides: { ...w1024, 'model.latent_height': 16, 'model.latent_width': 16, 'model.text_length': 64 },
      only: 'tensorflow',
    },
  ];
  // (g) first, in a child process: the 63 s step at width 512 holds ~12 GB without remat; run after
  // the cases below, it would sit beside what they leave allocated in this process (23.6 GB seen on a
  // 24 GB machine). wasm cannot run it at all ("memory access out of bounds").
  let gTable = '';
  gTable +=
    '(g) Time per video token at 63s / 3s, width 512 (8 heads of 64), tensorflow, own process, steps alternating\n';
  gTable += '| backend | 3s µs/token | 63s µs/token | 63s / 3s |\n|---|---|---|---|\n';
  try {
    const g = JSON.parse(
      execFileSync(process.execPath, [__filename, 'per-token', String(reps)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    ) as { s3: number[]; s63: number[]; t3: number; t63: number };
    const p3 = (spread(g.s3).median / g.t3) * 1e6;
    const p63 = (spread(g.s63).median / g.t63) * 1e6;
    gTable += `| tensorflow | ${p3.toFixed(1)} | ${p63.toFixed(1)} | ${(p63 / p3).toFixed(2)} |\n`;
  } catch (e) {
    gTable += `| tensorflow | failed: ${(e as Error).message.split('\n')[0]} | | |\n`;
  }
  gTable += '| wasm | not run: its heap cannot hold the 63s step at width 512 | | |\n';
  gTable += 'target: 63s <= 1.3 x 3s\n\n';
  const r = await alternate(cases, reps);
  const get = (c: Case, b: Backend) => r.get(`${c.label}|${b}`) ?? { s: [], flops: 0, tokens: 1, mm: [] };
  const ok = (c: Case, b: Backend): boolean => get(c, b).s.length > 0;
  w(
    `(e) Step time (forward + backward), tensorflow [${device}] vs wasm, same run, backends alternating, ${reps} repetitions after a warm-up: median (min–max) seconds. tensorflow runs the step as one graph (src/graph.ts); "tensorflow eager" is the same backend op by op (TTT_GRAPH=0), alternating too\n`,
  );
  w(
    '| model | tensorflow (s) | tensorflow eager (s) | wasm (s) | wasm / tensorflow | eager / graph |\n|---|---|---|---|---|---|\n',
  );
  const why = (c: Case, b: Backend): string =>
    ok(c, b)
      ? fmt(spread(get(c, b).s))
      : /^not run/.test(failed.get(`${c.label}|${b}`) ?? '')
        ? failed.get(`${c.label}|${b}`)!
        : `failed: ${failed.get(`${c.label}|${b}`)}`;
  const ratio = (c: Case, num: Backend, den: Backend): string => {
    if (!ok(c, num) || !ok(c, den)) return '-';
    const n = spread(get(c, num).s);
    const d = spread(get(c, den).s);
    return `${(n.median / d.median).toFixed(2)} (${(n.min / d.max).toFixed(2)}–${(n.max / d.min).toFixed(2)})`;
  };
  for (const c of cases) {
    w(
      `| ${c.label} | ${why(c, 'tensorflow')} | ${why(c, 'tensorflow-eager')} | ${why(c, 'wasm')} | ${ratio(c, 'wasm', 'tensorflow')} | ${ratio(c, 'tensorflow-eager', 'tensorflow')} |\n`,
    );
  }
  w('target: tensorflow >= 3x faster at width 1024\n\n');

  const peak = cpuPeak();
  w(
    `(f) Training FLOP/s at width 1024 / the same backend's 1024^3 matMul FLOP/s (best of 3, measured in each repetition); CPU peak: ${peak.text}\n`,
  );
  w(
    '| model | backend | GFLOP per step | step GFLOP/s | matMul GFLOP/s | step / matMul | step / CPU peak | matMul / CPU peak |\n|---|---|---|---|---|---|---|---|\n',
  );
  for (const [c1024, b] of [cases[2]!, cases[3]!].flatMap((c) =>
    (['tensorflow', 'tensorflow-eager', 'wasm'] as Backend[]).map((x) => [c, x] as const),
  )) {
    const e = get(c1024, b);
    if (!ok(c1024, b)) continue;
    const mm = spread(get(cases[0]!, b).mm.map((s) => (2 * 1024 ** 3) / s)); // measured once per repetition and backend (one product: no graph)
    const step = spread(e.s.map((s) => e.flops / s));
    w(
      `| ${c1024.label} | ${b} | ${(e.flops / 1e9).toFixed(2)} | ${fmt({ median: step.median / 1e9, min: step.min / 1e9, max: step.max / 1e9 }, 1)} | ${fmt({ median: mm.median / 1e9, min: mm.min / 1e9, max: mm.max / 1e9 }, 1)} | ${(step.median / mm.median).toFixed(3)} | ${(step.median / peak.flops).toFixed(3)} | ${(mm.median / peak.flops).toFixed(3)} |\n`,
    );
  }
  w(
    'FLOPs: matmul products counted in the forward pass x 3 (no remat: nothing recomputed). target: step / matMul >= 0.5 (tensorflow)\n\n',
  );

  w(gTable);
}

/**
 * The prefetch thread with realistic samples (CogVideoX latents at 60 x 90 with 16 channels, and
 * T5 chunks of about 226 tokens: [242, 4096] at 3 s, [202, 4096] at 63 s: a 63 s sample is 253 latent frames, 87 MB float32, plus 21 chunks),
 * read while training steps of width 1024 (16 heads of 64) run on the native backend. Data wait
 * per step / step time, and read throughput against `dd` reading the same files. Pairings:
 * each stage's own samples with its own step (3 s, 63 s), and the worst case, 63 s samples
 * behind the shortest (3 s) step.
 */
export async function prefetchBench(
  out: NodeJS.WritableStream,
  steps = Number(process.env.BENCH_PREFETCH_STEPS ?? 6),
): Promise<void> {
  const w = (s: string): boolean => out.write(s);
  // The native backend where it loads (after nativeBench, "auto" would keep whichever backend ran last).
  const backend = await initBackend('tensorflow').catch(() => initBackend('wasm'));
  // The 63 s step at width 512: at 1024 without remat it needs more than this machine's 24 GB.
  const w512 = { 'model.num_attention_heads': 8, 'model.attention_head_dim': 64 };
  const pairs: { samples: string; step: string; width: Record<string, number>; label: string }[] = [
    { samples: '3s', step: '3s', width: w1024, label: "3 s samples, the 3 s stage's step (width 1024)" },
    { samples: '63s', step: '63s', width: w512, label: "63 s samples, the 63 s stage's step (width 512)" },
    { samples: '63s', step: '3s', width: w1024, label: 'worst case: 63 s samples behind the 3 s step (width 1024)' },
  ];
  w(
    `Data prefetch on ${backend}: realistic samples (latents [frames, 16, 60, 90], T5 chunks [242 or 202, 4096]) while training steps run, ${steps} steps each\n`,
  );
  w(
    '| samples, step | MB/sample | dd MB/s | readSample MB/s | prefetch thread alone MB/s | step ms | data wait ms/step | wait / step |\n',
  );
  w('|---|---|---|---|---|---|---|---|\n');
  for (const p of pairs) w(`${await prefetchCase(p.samples, p.step, p.width, p.label, steps)}\n`);
  w('(target: data wait < 5% of the step)\n\n');
}

/** One pairing of prefetchBench: a table row. */
async function prefetchCase(
  sampleStage: string,
  stepStage: string,
  width: Record<string, number>,
  label: string,
  steps: number,
): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-prefetch-'));
  try {
    const realSize = {
      'model.in_channels': 16,
      'model.out_channels': 16,
      'model.latent_height': 60,
      'model.latent_width': 90,
      // T5 chunks of 226 tokens in the paper; these keep the sequence a multiple of 64.
      'model.text_length': sampleStage === '3s' ? 242 : 202,
      'model.text_embed_dim': 4096,
      'training.global_batch_size': 1,
    };
    const cfg = path.join(ROOT, `configs/train/tiny/${sampleStage}.toml`);
    const st = loadStageConfig(cfg, realSize);
    const d = modelDims(st.config);
    const samples = steps + 2;
    const jsonl = path.basename(writeSynthDataset(path.join(dir, 'data'), st.config, d, samples));
    const files = ['latents', 'text'].flatMap((sub) =>
      fs.readdirSync(path.join(dir, 'data', sub)).map((f) => path.join(dir, 'data', sub, f)),
    );
    const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    // dd on the same files, its second pass timed: the page cache as warm as for the readers after it.
    const dd = (): number => {
      const t0 = process.hrtime.bigint();
      for (const f of files) execFileSync('dd', [`if=${f}`, 'of=/dev/null', 'bs=1M'], { stdio: 'ignore' });
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    dd();
    const ddSeconds = dd();
    const c = loadStageConfig(cfg, {
      ...realSize,
      'training.dataset_path': path.join(dir, 'data'),
      'training.jsonl_paths': [jsonl],
    }).config;
    // Reading and decoding alone (what dd's figure compares with): every sample, this thread.
    const src = openDataSource(c, d);
    const tr = process.hrtime.bigint();
    for (let s = 0; s < samples; s++) readSample(src, s, c.training.seed, undefined, undefined);
    const decodeSeconds = Number(process.hrtime.bigint() - tr) / 1e9;
    // Read throughput of the thread alone: every sample after the first (which waits for the
    // thread to start) back to back.
    const opts = { config: c, dims: d, microSize: 1, accum: 1, skip: { maxBad: 0, bad: new Map() } };
    const solo = openPrefetcher(opts);
    disposeBatch(await solo.take(1, 0));
    const t1 = process.hrtime.bigint();
    for (let s = 2; s <= samples; s++) disposeBatch(await solo.take(s, 0));
    const readSeconds = (Number(process.hrtime.bigint() - t1) / 1e9) * (samples / (samples - 1));
    await solo.close();
    // Overlap with training steps.
    const step = trainingStep(stepStage, width);
    await step.run();
    const pf = openPrefetcher(opts);
    disposeBatch(await pf.take(1, 0)); // first batch: nothing to overlap with
    const waitBefore = pf.stats.waitSeconds;
    let stepSeconds = 0;
    for (let s = 2; s <= steps + 1; s++) {
      stepSeconds += (await step.run()).seconds;
      disposeBatch(await pf.take(s, 0));
    }
    const wait = pf.stats.waitSeconds - waitBefore;
    await pf.close();
    step.dispose();
    const mbps = (sec: number): string => (bytes / 1e6 / sec).toFixed(0);
    const cells = [
      label,
      (bytes / samples / 1e6).toFixed(1),
      mbps(ddSeconds),
      mbps(decodeSeconds),
      mbps(readSeconds),
      ((stepSeconds / steps) * 1000).toFixed(0),
      ((wait / steps) * 1000).toFixed(1),
      `${((100 * wait) / stepSeconds).toFixed(2)}%`,
    ];
    return `| ${cells.join(' | ')} |`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `node native.js per-token <reps>`: (g)'s measurement on tensorflow, as JSON on stdout. */
async function perToken(reps: number): Promise<void> {
  await initBackend('tensorflow');
  const w512 = { 'model.num_attention_heads': 8, 'model.attention_head_dim': 64 };
  const out = { s3: [] as number[], s63: [] as number[], t3: 0, t63: 0 };
  const s3 = trainingStep('3s', w512);
  const s63 = trainingStep('63s', w512);
  out.t3 = (await s3.run()).videoTokens;
  out.t63 = (await s63.run()).videoTokens;
  for (let r = 0; r < reps; r++) {
    out.s3.push((await s3.run()).seconds);
    out.s63.push((await s63.run()).seconds);
  }
  s3.dispose();
  s63.dispose();
  process.stdout.write(JSON.stringify(out));
}

if (require.main === module && process.argv[2] === 'per-token') {
  perToken(Number(process.argv[3] ?? 3)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
