/**
 * The validation loss on the tiny curriculum (configs/curriculum/tiny.toml), in this process:
 * every stage from the previous stage's final weights, trained twice in alternating order, once
 * with the stage's validation settings and once with validation.samples = 0. Reports per stage:
 * the validation loss at its start and end, the first and last single-step loss, and the cost
 * (mean step time, seconds per validation measurement, shard seconds with and without).
 * The two runs of a stage also show that validation changes no training: same final weights.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCurriculum } from '../src/config/load';
import { metricsFile, stageDir } from '../src/paths';
import { readMetricsFile, stageValidation } from '../src/train/metrics';
import { runShard, type ShardResult } from '../src/train/shard';

export interface ValidationStageRow {
  stage: string;
  steps: number;
  valStart: number | null;
  valEnd: number | null;
  firstLoss: number | null;
  lastLoss: number | null;
  measurements: number;
  /** Mean step time (metrics step_time) with validation on and off. */
  stepOn: number;
  stepOff: number;
  /** Mean seconds of one validation measurement. */
  valSeconds: number;
  /** Shard seconds (runShard's wall time, validation included) with validation on and off. */
  shardOn: number;
  shardOff: number;
  /** The final model.safetensors of both runs is byte-identical. */
  sameWeights: boolean;
}

const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

export async function validationBench(): Promise<{ rows: ValidationStageRow[]; load: [number, number] }> {
  const load0 = os.loadavg()[0]!;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-val-'));
  const cur = loadCurriculum(path.resolve(__dirname, '..', '..', 'configs/curriculum/tiny.toml'));
  const prev: Record<'on' | 'off', string | null> = { on: null, off: null };
  const rows: ValidationStageRow[] = [];
  try {
    for (const [i, st] of cur.stages.entries()) {
      const run = async (side: 'on' | 'off'): Promise<ShardResult> => {
        const overrides = side === 'off' ? { 'validation.samples': 0 } : {};
        const jobDir = path.join(root, side);
        return runShard({
          configFile: st.file,
          overrides,
          jobDir,
          initFrom: prev[side],
          maxSeconds: Number.POSITIVE_INFINITY,
        });
      };
      // Alternate which side runs first, so that a machine getting busier or quieter favours neither.
      const order: ('on' | 'off')[] = i % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      const r: Partial<Record<'on' | 'off', ShardResult>> = {};
      for (const side of order) r[side] = await run(side);
      const on = readMetricsFile(metricsFile(stageDir(path.join(root, 'on'), st.video.stage)));
      const off = readMetricsFile(metricsFile(stageDir(path.join(root, 'off'), st.video.stage)));
      const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      const v = stageValidation(on.validation, st.config.training.steps);
      rows.push({
        stage: st.video.stage,
        steps: st.config.training.steps,
        valStart: v.valLossStart,
        valEnd: v.valLossEnd,
        firstLoss: r.on!.firstLoss,
        lastLoss: r.on!.lastLoss,
        measurements: on.validation.length,
        stepOn: mean(on.steps.map((s) => s.step_time)),
        stepOff: mean(off.steps.map((s) => s.step_time)),
        valSeconds: mean(on.validation.map((s) => s.val_time)),
        shardOn: r.on!.seconds,
        shardOff: r.off!.seconds,
        sameWeights:
          sha(path.join(r.on!.checkpoint, 'model.safetensors')) ===
          sha(path.join(r.off!.checkpoint, 'model.safetensors')),
      });
      prev.on = r.on!.checkpoint;
      prev.off = r.off!.checkpoint;
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return { rows, load: [load0, os.loadavg()[0]!] };
}

/** The bench's table (Markdown). */
export function validationTable(rows: ValidationStageRow[]): string {
  const f4 = (x: number | null): string => (x === null ? '-' : x.toFixed(4));
  const pct = (a: number | null, b: number | null): string =>
    a === null || b === null ? '-' : `${b < a ? '-' : '+'}${Math.abs((100 * (b - a)) / a).toFixed(2)}%`;
  const lines = [
    '| stage | steps | val start | val end | val change | first loss | last loss | step s (on / off) | val s x n | shard s (on / off) | same weights |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.stage} | ${r.steps} | ${f4(r.valStart)} | ${f4(r.valEnd)} | ${pct(r.valStart, r.valEnd)} | ${f4(r.firstLoss)} | ${f4(r.lastLoss)} | ${r.stepOn.toFixed(3)} / ${r.stepOff.toFixed(3)} | ${r.valSeconds.toFixed(2)} x ${r.measurements} | ${r.shardOn.toFixed(1)} / ${r.shardOff.toFixed(1)} | ${r.sameWeights ? 'yes' : 'NO'} |`,
    ),
  ];
  const on = rows.reduce((a, r) => a + r.shardOn, 0);
  const off = rows.reduce((a, r) => a + r.shardOff, 0);
  const val = rows.reduce((a, r) => a + r.valSeconds * r.measurements, 0);
  const steps = rows.reduce((a, r) => a + r.stepOn * r.steps, 0);
  lines.push(
    '',
    `validation: ${val.toFixed(1)} s in all = ${((100 * val) / steps).toFixed(1)}% of the ${steps.toFixed(1)} s of training steps; shards ${on.toFixed(1)} s with, ${off.toFixed(1)} s without (${((100 * (on - off)) / off).toFixed(1)}%)`,
  );
  return `${lines.join('\n')}\n`;
}
