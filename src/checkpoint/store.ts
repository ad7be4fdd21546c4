/**
 * Checkpoints on disk. One format everywhere (stage init, shard checkpoints, promoted stage
 * finals): a folder holding model.safetensors (TTT-Video-DiT names, PyTorch shapes),
 * optionally optimizer.safetensors, and state.json with the step, data cursor, seeds and the
 * sha256 of every file.
 *
 * A save writes into a hidden temporary folder, fsyncs every file and the folder, and renames
 * it into place only when complete; a crash during a save leaves a ".tmp-*" folder that is
 * never picked (and is cleaned up later). Loading verifies sizes and sha256 checksums.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { type FileEntry, readSafetensorsIndex, sha256File } from '../io/files';
import { encodeSafetensors, readSafetensors, type FloatTensor } from '../io/safetensors';

export const CHECKPOINT_FORMAT = 'ttt-curriculum-checkpoint/1';
const STEP_DIR = /^step-(\d{8})$/;

export type { FileEntry };

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  /** Optimizer steps completed in this stage. */
  step: number;
  stage: string;
  totalSteps: number;
  /** Data cursor: samples consumed so far in this stage. */
  samplesSeen: number;
  seed: number;
  /** Loss of the first step of the stage and of the last step before this checkpoint. */
  firstLoss: number | null;
  lastLoss: number | null;
  /** Hash of the init weights this stage started from. */
  initHash: string | null;
  configHash: string;
  /** Epoch of the writer's lease on the stage (lease.ts). */
  lease?: number;
  /** Data steps whose batch gave a non-finite loss: stepped over on resume. */
  skippedBatches?: number[];
  /** The stage's non-finite loss events so far. */
  nonFinite?: NonFiniteEvent[];
  files: Record<string, FileEntry>;
  createdAt: string;
}

export interface NonFiniteEvent {
  /** Training step and data step (batch position) of the event. */
  step: number;
  dataStep: number;
  samples: number[];
  /** As strings: JSON has no NaN or Infinity. */
  loss: string;
  gradNorm: string;
}

export interface CheckpointContent {
  model: Map<string, FloatTensor>;
  optimizer?: Map<string, FloatTensor>;
  state: Omit<CheckpointState, 'files' | 'format' | 'createdAt'>;
}

export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

export function writeFileSynced(file: string, parts: Buffer[] | string): FileEntry {
  const fd = fs.openSync(file, 'w');
  const h = crypto.createHash('sha256');
  let bytes = 0;
  try {
    for (const p of typeof parts === 'string' ? [Buffer.from(parts)] : parts) {
      let off = 0;
      while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off);
      h.update(p);
      bytes += p.length;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), bytes };
}

export function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on directories; the rename is still atomic */
  }
}

export interface SaveHooks {
  /** Called after the files are written and before the rename (tests simulate crashes here). */
  beforeRename?: (tmpDir: string) => void;
}

/**
 * Saves a checkpoint atomically as checkpointsDir/step-NNNNNNNN. If a complete checkpoint of
 * that step already exists (a retried shard), the existing one is kept. Returns its folder.
 */
export function saveCheckpoint(checkpointsDir: string, content: CheckpointContent, hooks: SaveHooks = {}): string {
  fs.mkdirSync(checkpointsDir, { recursive: true });
  const finalDir = path.join(checkpointsDir, stepDirName(content.state.step));
  const tmp = path.join(
    checkpointsDir,
    `.tmp-${stepDirName(content.state.step)}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`,
  );
  fs.mkdirSync(tmp);
  try {
    const files: Record<string, FileEntry> = {};
    files['model.safetensors'] = writeFileSynced(
      path.join(tmp, 'model.safetensors'),
      encodeSafetensors(content.model, { format: 'pt' }),
    );
    if (content.optimizer) {
      files['optimizer.safetensors'] = writeFileSynced(
        path.join(tmp, 'optimizer.safetensors'),
        encodeSafetensors(content.optimizer, { format: 'pt' }),
      );
    }
    const state: CheckpointState = {
      format: CHECKPOINT_FORMAT,
      ...content.state,
      files,
      createdAt: new Date().toISOString(),
    };
    writeFileSynced(path.join(tmp, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
    fsyncDir(tmp);
    hooks.beforeRename?.(tmp);
    try {
      fs.renameSync(tmp, finalDir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && verifyCheckpoint(finalDir).ok) {
        fs.rmSync(tmp, { recursive: true, force: true });
        return finalDir;
      }
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        // An invalid folder with our name (should not happen: only renames create them). Replace it.
        fs.rmSync(finalDir, { recursive: true, force: true });
        fs.renameSync(tmp, finalDir);
      } else {
        throw e;
      }
    }
    fsyncDir(checkpointsDir);
    return finalDir;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

export type VerifyResult = { ok: true; state: CheckpointState } | { ok: false; reason: string };

/** Checks that a folder is a complete checkpoint: state.json parses and every file matches its size and sha256. */
export function verifyCheckpoint(dir: string, opts: { checksums?: boolean } = {}): VerifyResult {
  const stateFile = path.join(dir, 'state.json');
  let state: CheckpointState;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as CheckpointState;
  } catch (e) {
    return { ok: false, reason: `state.json missing or unreadable (${(e as Error).message})` };
  }
  if (
    state.format !== CHECKPOINT_FORMAT ||
    typeof state.step !== 'number' ||
    state.files === null ||
    typeof state.files !== 'object'
  ) {
    return { ok: false, reason: 'state.json is not a ttt-curriculum checkpoint state' };
  }
  if (!state.files['model.safetensors']) return { ok: false, reason: 'state.json lists no model.safetensors' };
  const bad = verifyFiles(dir, state.files, 'state.json', opts);
  return bad ? { ok: false, reason: bad } : { ok: true, state };
}

/** Checks files against their recorded sizes (and sha256 unless checksums: false); returns what is wrong, or undefined. */
export function verifyFiles(
  dir: string,
  files: Record<string, FileEntry>,
  listedIn: string,
  opts: { checksums?: boolean } = {},
): string | undefined {
  for (const [name, entry] of Object.entries(files)) {
    const f = path.join(dir, name);
    let size: number;
    try {
      size = fs.statSync(f).size;
    } catch {
      return `${name} is missing`;
    }
    if (size !== entry.bytes) return `${name} has ${size} bytes, ${listedIn} says ${entry.bytes} (truncated?)`;
    if (opts.checksums !== false && sha256File(f) !== entry.sha256)
      return `${name} fails its sha256 checksum (corrupted)`;
  }
  return undefined;
}

/** Step checkpoints of a stage, newest first. Temporary folders are not listed. */
export function listCheckpoints(checkpointsDir: string): { step: number; dir: string }[] {
  let names: string[];
  try {
    names = fs.readdirSync(checkpointsDir);
  } catch {
    return [];
  }
  return names
    .map((n) => ({ m: STEP_DIR.exec(n), n }))
    .filter((x) => x.m !== null)
    .map((x) => ({ step: Number(x.m![1]), dir: path.join(checkpointsDir, x.n) }))
    .sort((a, b) => b.step - a.step);
}

/** The newest complete checkpoint; invalid ones are skipped and reported through `onSkip`. */
export function latestCompleteCheckpoint(
  checkpointsDir: string,
  onSkip: (dir: string, reason: string) => void = () => {},
): VerifiedCheckpoint | undefined {
  for (const c of listCheckpoints(checkpointsDir)) {
    const v = verifyCheckpoint(c.dir);
    if (v.ok) return { dir: c.dir, state: v.state };
    onSkip(c.dir, v.reason);
  }
  return undefined;
}

/** Deletes all but the newest `keep` complete checkpoints, and stale temporary folders of dead writers. */
export function pruneCheckpoints(checkpointsDir: string, keep: number): void {
  const all = listCheckpoints(checkpointsDir);
  for (const c of all.slice(keep)) fs.rmSync(c.dir, { recursive: true, force: true });
  removeDeadWritersFolders(checkpointsDir, (n) => /^\.tmp-.*-(\d+)-[0-9a-f]{8}$/.exec(n)?.[1]);
}

/**
 * Removes the entries of `dir` left by writers that are gone: `writerPid` gives the pid in an
 * entry's name (undefined = not a temporary entry); entries of live processes stay.
 */
export function removeDeadWritersFolders(dir: string, writerPid: (name: string) => string | undefined): void {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = writerPid(n);
    if (pid !== undefined && !processAlive(Number(pid))) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
  }
}

export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A checkpoint whose files verified against its state.json. */
export interface VerifiedCheckpoint {
  dir: string;
  state: CheckpointState;
}

function verified(dir: string): VerifiedCheckpoint {
  const v = verifyCheckpoint(dir);
  if (!v.ok) throw new Error(`checkpoint ${dir} is not usable: ${v.reason}`);
  return { dir, state: v.state };
}

/** Loads a complete checkpoint: a folder (verified here) or one already verified (e.g. by latestCompleteCheckpoint). */
export function loadCheckpoint(ck: string | VerifiedCheckpoint): {
  model: Map<string, FloatTensor>;
  optimizer?: Map<string, FloatTensor>;
  state: CheckpointState;
} {
  const { dir, state } = typeof ck === 'string' ? verified(ck) : ck;
  const model = readSafetensors(path.join(dir, 'model.safetensors')).tensors;
  const optimizer = state.files['optimizer.safetensors']
    ? readSafetensors(path.join(dir, 'optimizer.safetensors')).tensors
    : undefined;
  return optimizer ? { model, optimizer, state } : { model, state };
}

/** The model safetensors files of a weights folder: model.safetensors or the shards of model.safetensors.index.json. */
export function modelFiles(dir: string): string[] {
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const r = readSafetensorsIndex(index);
    if ('problem' in r)
      throw new UserError(r.problem, { where: index, kind: 'CheckpointError', fix: 'restore the index file' });
    return r.files;
  }
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return [single];
  throw new UserError('no model.safetensors or model.safetensors.index.json', {
    where: dir,
    kind: 'CheckpointError',
    fix: 'point checkpoint.init_state_dir at a folder written by `ttt-curriculum convert` or a stage final checkpoint',
  });
}

/**
 * Loads model weights from any weights folder (init_state_dir, a stage final, a step
 * checkpoint, or the output of `ttt-curriculum convert`). If the folder has a state.json (a
 * checkpoint) or a convert.json (a conversion), the files' sizes and checksums are verified first.
 */
export function loadModelWeights(dir: string): Map<string, FloatTensor> {
  if (fs.existsSync(path.join(dir, 'state.json'))) {
    const v = verifyCheckpoint(dir);
    if (!v.ok)
      throw new UserError(`weights folder is not usable: ${v.reason}`, {
        where: dir,
        kind: 'CheckpointError',
        fix: 'restore the folder or point at another checkpoint',
      });
  } else if (fs.existsSync(path.join(dir, 'convert.json'))) {
    let files: Record<string, FileEntry> | undefined;
    try {
      files = (
        JSON.parse(fs.readFileSync(path.join(dir, 'convert.json'), 'utf8')) as { files?: Record<string, FileEntry> }
      ).files;
    } catch {
      /* reported below */
    }
    const bad =
      files && typeof files === 'object' ? verifyFiles(dir, files, 'convert.json') : 'convert.json is unreadable';
    if (bad)
      throw new UserError(`converted weights are not usable: ${bad}`, {
        where: dir,
        kind: 'CheckpointError',
        fix: 'run `ttt-curriculum convert` again (it replaces the folder)',
      });
  }
  const out = new Map<string, FloatTensor>();
  for (const f of modelFiles(dir)) for (const [k, t] of readSafetensors(f).tensors) out.set(k, t);
  return out;
}

/** sha256 over sorted tensor names, shapes and float32 bytes (PyTorch layout). */
export function tensorsHash(tensors: Map<string, FloatTensor>): string {
  const h = crypto.createHash('sha256');
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(name)
      .update(JSON.stringify(t.shape))
      .update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/** A content hash of a weights folder (tensorsHash of its model weights). */
export function weightsHash(dir: string): string {
  return tensorsHash(loadModelWeights(dir));
}

/**
 * Promotes a verified step checkpoint to stageDir/final atomically (hard links when possible,
 * else fsynced copies). An existing valid final is kept. Returns the final checkpoint.
 */
export function promoteCheckpoint(src: VerifiedCheckpoint, finalDir: string): VerifiedCheckpoint {
  if (fs.existsSync(finalDir)) {
    const existing = verifyCheckpoint(finalDir);
    if (existing.ok) return { dir: finalDir, state: existing.state };
  }
  const tmp = `${finalDir}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { recursive: true });
  for (const name of [...Object.keys(src.state.files), 'state.json']) {
    const from = path.join(src.dir, name);
    const to = path.join(tmp, name);
    try {
      fs.linkSync(from, to);
    } catch {
      fs.copyFileSync(from, to);
      const fd = fs.openSync(to, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  fsyncDir(tmp);
  if (fs.existsSync(finalDir)) fs.rmSync(finalDir, { recursive: true, force: true });
  fs.renameSync(tmp, finalDir);
  fsyncDir(path.dirname(finalDir));
  return { dir: finalDir, state: src.state };
}
