/**
 * Data loading as a fraction of step time, tiny 63s stage, reading a file dataset written by
 * `dataset synth` (the real JSONL/.npy/.safetensors reader), from the per-step metrics.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadStageConfig } from '../src/config/load';
import { writeSynthDataset } from '../src/data/synthfiles';
import { modelDims } from '../src/config/dims';
import { isValidationLine } from '../src/train/metrics';
import { runShard } from '../src/train/shard';

export async function dataBench(steps: number): Promise<{ dataSeconds: number; stepSeconds: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttt-bench-data-'));
  const cfg = path.resolve(__dirname, '..', '..', 'configs/train/tiny/63s.toml');
  const st = loadStageConfig(cfg, {});
  writeSynthDataset(path.join(dir, 'data'), st.config, modelDims(st.config), 8);
  const overrides = {
    'training.dataset_path': path.join(dir, 'data'),
    'training.jsonl_paths': ['63sec.jsonl'],
    'training.steps': steps,
    'checkpoint.interval': steps,
  };
  try {
    await runShard({
      configFile: cfg,
      overrides,
      jobDir: path.join(dir, 'job'),
      initFrom: null,
      maxSeconds: Number.POSITIVE_INFINITY,
    });
    const rows = fs
      .readFileSync(path.join(dir, 'job', '63s', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step_time: number; data_time: number })
      .filter((l) => !isValidationLine(l))
      .slice(1); // the first step includes warm-up
    const sum = (k: 'step_time' | 'data_time'): number => rows.reduce((a, r) => a + r[k], 0);
    return { dataSeconds: sum('data_time') / rows.length, stepSeconds: sum('step_time') / rows.length };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
