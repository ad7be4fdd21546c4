/**
 * Where a stage trained by an external engine stands, read from its checkpoints: the result of a
 * shard (ShardSummary), and the stage's final for the workflow (StageFinal). Only complete
 * checkpoints count (the layout's reader decides); losses come from the checkpoint's state (ours)
 * or the stage's metrics.jsonl (others).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CheckpointState } from '../checkpoint/store';
import { metricsFile } from '../paths';
import type { ShardSummary, StageFinal } from '../shared/types';
import type { LayoutName } from './registry';
import { layoutSupport } from './registry';
import type { CompleteCheckpoint } from './types';

/** The latest complete checkpoint of a stage trained in `layout`, read from `runDir`. */
export function latestComplete(layout: LayoutName, runDir: string): CompleteCheckpoint | null {
  return layoutSupport(layout, { file: 'engine', field: 'checkpoint_layout' }).layout.latestComplete(runDir);
}

/** First and last loss of a stage up to `upTo` steps. */
export function stageLosses(
  layout: LayoutName,
  ck: CompleteCheckpoint,
  stageDirPath: string,
  stage: string,
): { firstLoss: number | null; lastLoss: number | null } {
  if (layout === 'ours') {
    const s = JSON.parse(fs.readFileSync(path.join(ck.dir, 'state.json'), 'utf8')) as CheckpointState;
    return { firstLoss: s.firstLoss, lastLoss: s.lastLoss };
  }
  return metricsLosses(metricsFile(stageDirPath), stage, ck.step);
}

/** The loss of the stage's first metrics line, and of its last line at or before step `upTo`. */
export function metricsLosses(
  file: string,
  stage: string,
  upTo: number,
): { firstLoss: number | null; lastLoss: number | null } {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  let firstLoss: number | null = null;
  let lastLoss: number | null = null;
  let first = Number.POSITIVE_INFINITY;
  let last = -1;
  for (const l of text.split('\n')) {
    let m: { stage?: string; step?: number; loss?: number | null };
    try {
      m = JSON.parse(l) as typeof m;
    } catch {
      continue;
    }
    if (m.stage !== stage || typeof m.step !== 'number' || typeof m.loss !== 'number') continue;
    if (m.step < first) [first, firstLoss] = [m.step, m.loss];
    // A step trained again after a resume: its latest line counts.
    if (m.step <= upTo && m.step >= last) [last, lastLoss] = [m.step, m.loss];
  }
  return { firstLoss, lastLoss };
}

/** A shard's result, from the stage's latest complete checkpoint; null when there is none. */
export function commandSummary(o: {
  layout: LayoutName;
  runDir: string;
  stageDir: string;
  stage: string;
  totalSteps: number;
  startStep: number;
  seconds: number;
  reason: ShardSummary['reason'];
  backend: string;
  device: string;
}): ShardSummary | null {
  const ck = latestComplete(o.layout, o.runDir);
  if (!ck) return null;
  const done = ck.step >= o.totalSteps;
  return {
    stage: o.stage,
    step: ck.step,
    totalSteps: o.totalSteps,
    done,
    startStep: o.startStep,
    stepsRun: Math.max(0, ck.step - o.startStep),
    ...stageLosses(o.layout, ck, o.stageDir, o.stage),
    checkpoint: ck.dir,
    seconds: o.seconds,
    backend: o.backend,
    device: o.device,
    reason: done ? 'done' : o.reason,
  };
}

/**
 * The stage's final, when its latest complete checkpoint holds all `steps`: that checkpoint's
 * folder itself (the next stage's init_state_dir), not a copy. modelSha256 is a digest of the folder
 * (folderDigest), as the weights of an external layout are not one file.
 */
export function externalFinal(
  layout: LayoutName,
  runDir: string,
  stageDirPath: string,
  stage: string,
  steps: number,
): StageFinal | null {
  const ck = latestComplete(layout, runDir);
  if (!ck || ck.step !== steps) return null;
  return {
    stage,
    steps,
    finalCheckpoint: ck.dir,
    modelSha256: folderDigest(ck.dir),
    ...stageLosses(layout, ck, stageDirPath, stage),
  };
}

/** Files up to this size are hashed by content in folderDigest. */
const SMALL_FILE = 1 << 20;

/**
 * sha256 over a folder's files, in name order: each one's relative path and size, and the content
 * of the small ones (such as DCP's .metadata, which lists every tensor and where it lies). It names
 * one save of a checkpoint without reading tens of GB; it is not a hash of the weights' values.
 */
export function folderDigest(dir: string): string {
  const h = crypto.createHash('sha256');
  const walk = (rel: string): void => {
    for (const e of fs
      .readdirSync(path.join(dir, rel), { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) {
        const size = fs.statSync(path.join(dir, r)).size;
        h.update(`${r}\0${size}\0`);
        if (size <= SMALL_FILE) h.update(fs.readFileSync(path.join(dir, r)));
      }
    }
  };
  walk('');
  return h.digest('hex');
}
