/**
 * Remat (activation recomputation) at 63 s, measured like with like: every measurement is a fresh
 * process (`node bench/remat.js <plain|remat>`: backend start, one warm-up step, then timed steps),
 * the two configurations alternate in order from rep to rep, and the spread over the reps is
 * reported. Each process also reports the forward matmul FLOPs it counted in a step: with full
 * recomputation the forward products run twice, so the counted FLOPs show whether recomputation
 * really happened. Both run op by op (TTT_GRAPH=0): the tensor memory measured is TensorFlow.js's,
 * which does not see inside a libtensorflow graph (src/graph.ts), and with remat the step is not
 * one anyway.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { initBackend } from '../src/backend';
import { NO_REMAT, type RematConfig } from '../src/model/remat';
import { prepareStep } from './model';

/** Width 64 (2 heads of 32), as in the model benchmark's per-token table. */
const WIDTH = { 'model.num_attention_heads': 2, 'model.attention_head_dim': 32 };
const FULL: RematConfig = { ...NO_REMAT, layerGroup: 1 };

export interface RematSample {
  config: 'plain' | 'remat';
  /** Median of the timed steps in that process. */
  seconds: number;
  steps: number[];
  peakBytes: number;
  forwardFlops: number;
}

export interface RematResult {
  plain: RematSample[];
  remat: RematSample[];
  first: ('plain' | 'remat')[];
  /** Per rep: remat step / plain step. */
  timeRatios: number[];
  memoryRatio: number;
  load: [number, number];
}

function measureInChild(config: 'plain' | 'remat', steps: number): RematSample {
  const r = spawnSync(process.execPath, [__filename, config, String(steps)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    env: { ...process.env, TTT_LOG_LEVEL: 'warn', TTT_GRAPH: '0' },
  });
  if (r.status !== 0) throw new Error(`remat child (${config}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as RematSample;
}

export function rematBench(reps: number, steps = 3): RematResult {
  const out: RematResult = {
    plain: [],
    remat: [],
    first: [],
    timeRatios: [],
    memoryRatio: 0,
    load: [os.loadavg()[0]!, 0],
  };
  for (let r = 0; r < reps; r++) {
    const order: ('plain' | 'remat')[] = r % 2 === 0 ? ['plain', 'remat'] : ['remat', 'plain'];
    for (const c of order) out[c].push(measureInChild(c, steps));
    out.first.push(order[0]!);
    out.timeRatios.push(out.remat[r]!.seconds / out.plain[r]!.seconds);
    process.stderr.write(
      `  remat rep ${r + 1}/${reps} (${order[0]} first): plain ${out.plain[r]!.seconds.toFixed(3)} s, remat ${out.remat[r]!.seconds.toFixed(3)} s, load ${os.loadavg()[0]!.toFixed(1)}\n`,
    );
  }
  out.memoryRatio = out.remat[0]!.peakBytes / out.plain[0]!.peakBytes;
  out.load[1] = os.loadavg()[0]!;
  return out;
}

async function child(config: 'plain' | 'remat', steps: number): Promise<void> {
  await initBackend('auto');
  const step = prepareStep('63s', WIDTH, config === 'remat' ? FULL : NO_REMAT, { measurePeak: true });
  await step.run(); // warm-up
  const times: number[] = [];
  let peak = 0;
  let flops = 0;
  for (let i = 0; i < steps; i++) {
    const t = await step.run();
    times.push(t.seconds);
    peak = Math.max(peak, t.peakBytes);
    flops = t.flops / 3; // prepareStep counts forward products x 3; report the forward count itself
  }
  step.dispose();
  const sorted = [...times].sort((a, b) => a - b);
  const sample: RematSample = {
    config,
    seconds: sorted[sorted.length >> 1]!,
    steps: times,
    peakBytes: peak,
    forwardFlops: flops,
  };
  process.stdout.write(`${JSON.stringify(sample)}\n`);
}

if (require.main === module) {
  const [config, steps] = process.argv.slice(2);
  if (config !== 'plain' && config !== 'remat') throw new Error('usage: remat.js plain|remat [steps]');
  child(config, Number(steps ?? 3)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
