/**
 * TTT-Video-DiT's checkpoint layout, read so that a torn checkpoint is never picked.
 *
 * How TTT-Video-DiT (github.com/test-time-training/ttt-video-dit, read at 6c316a7) writes them:
 * - the experiment folder is `{job.dump_folder}/{job.exp_name}` (ttt/infra/logging.py,
 *   `MultiLogger.__init__`: `multi_dir`); checkpoints go to `{multi_dir}/checkpoint/step-{N}`
 *   (ttt/infra/logging.py `get_checkpoint_dir`, ttt/infra/train_iterator.py `_checkpoint`), N the
 *   optimizer steps done, not zero-padded;
 * - each is a PyTorch Distributed Checkpoint (ttt/infra/checkpoint.py `Checkpointer._save`:
 *   `dcp.save(state_dict, checkpoint_id=path)`): every rank writes its shard files
 *   (`__{rank}_{i}.distcp`), then the coordinator writes the pickled `Metadata` as `.metadata`
 *   (through `.metadata.tmp` and a rename). `Metadata.storage_data` maps each saved item to a
 *   `_StorageInfo(relative_path, offset, length)`: the shard file and the byte range it lives in.
 *
 * Its own bug, fixed here: on resume it takes the largest `step-*` name in `checkpoint/` without
 * looking inside (ttt/infra/logging.py `get_latest_checkpoint_step`, lines 149-161, called from
 * ttt/infra/train_iterator.py `resume`, line 58). And the folder exists before DCP writes a byte:
 * `_checkpoint` first calls `save_multi(..., should_checkpoint=True)`, which creates `step-{N}`
 * and writes `all_stat_dict.pth` into it (ttt/infra/logging.py lines 134-137), then `dcp.save`.
 * A job killed during a save leaves a `step-{N}` without `.metadata` (or with shards missing),
 * and every later resume picks it and fails to load. Here a step folder counts only when its
 * `.metadata` parses and every file it names is there with at least offset + length bytes.
 *
 * The metadata is a Python pickle. It is read with the `pickleparser` package (a pickle-protocol
 * 0-5 reader in plain TypeScript, no dependencies): it never imports or runs Python code, it only
 * records class names (an unpickler that runs code would let whoever can write a checkpoint
 * folder run code on the worker), and it needs no Python with torch where the worker runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Parser } from 'pickleparser';
import type { CheckpointLayout, CompleteCheckpoint } from '../types';

/** The folder of the experiment folder that holds the `step-N` checkpoints. */
export const TTT_CHECKPOINT_SUBDIR = 'checkpoint';
/** DCP's metadata file, written last (torch.distributed.checkpoint.filesystem `FileSystemWriter.finish`). */
export const DCP_METADATA_FILE = '.metadata';
const STEP_DIR = /^step-(\d+)$/;

/** One file that a DCP checkpoint's metadata names, and the bytes it must hold at least. */
export interface DcpFile {
  relativePath: string;
  minBytes: number;
}

export type DcpCheck = { complete: true; files: DcpFile[] } | { complete: false; reason: string };

/** The `step-N` folders under an experiment folder, newest first (N parsed as TTT-Video-DiT does: an integer). */
export function tttStepFolders(runDir: string): { step: number; dir: string }[] {
  const root = path.join(runDir, TTT_CHECKPOINT_SUBDIR);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: { step: number; dir: string }[] = [];
  for (const e of entries) {
    const m = STEP_DIR.exec(e.name);
    if (m && e.isDirectory()) out.push({ step: Number(m[1]), dir: path.join(root, e.name) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/**
 * Whether a folder is a complete DCP checkpoint: `.metadata` is there and parses, and every file
 * its storage_data names exists with at least offset + length bytes. A metadata file that parses
 * but is not DCP's `Metadata` throws: that is a format this reader does not know, and skipping
 * every checkpoint silently would restart training from its init weights.
 */
export function checkDcpFolder(dir: string): DcpCheck {
  const metaFile = path.join(dir, DCP_METADATA_FILE);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(metaFile);
  } catch {
    return { complete: false, reason: `${DCP_METADATA_FILE} is missing (the save did not finish)` };
  }
  let files: DcpFile[];
  try {
    files = dcpStorageFiles(bytes);
  } catch (e) {
    if (e instanceof DcpFormatError) throw new Error(`${metaFile}: ${e.message}`);
    return { complete: false, reason: `${DCP_METADATA_FILE} is unreadable (${(e as Error).message})` };
  }
  for (const f of files) {
    const p = path.join(dir, f.relativePath);
    let size: number;
    try {
      size = fs.statSync(p).size;
    } catch {
      return { complete: false, reason: `${f.relativePath} is missing (${DCP_METADATA_FILE} names it)` };
    }
    if (size < f.minBytes)
      return { complete: false, reason: `${f.relativePath} has ${size} bytes, the metadata needs ${f.minBytes}` };
  }
  return { complete: true, files };
}

/** A `.metadata` that parsed as a pickle but is not shaped like DCP's `Metadata`. */
class DcpFormatError extends Error {}

interface PickledObject {
  [field: string]: unknown;
}

/**
 * The files named by a DCP metadata pickle, each with the bytes it must hold (the largest
 * offset + length of the items stored in it). Throws DcpFormatError when the pickle is not a
 * `Metadata` whose storage_data maps items to `_StorageInfo(relative_path, offset, length)`;
 * other errors mean the pickle itself is cut short or damaged.
 */
export function dcpStorageFiles(pickle: Uint8Array): DcpFile[] {
  // Dictionaries as Maps: storage_data's keys are MetadataIndex objects, which a plain object would collapse.
  const meta = new Parser({ unpicklingTypeOfDictionary: 'Map' }).parse<unknown>(pickle);
  if (pickledClassName(meta) !== 'Metadata')
    throw new DcpFormatError(`not a DCP Metadata pickle (found ${pickledClassName(meta) ?? typeof meta})`);
  const storage = (meta as PickledObject).storage_data;
  if (!(storage instanceof Map))
    throw new DcpFormatError('Metadata.storage_data is not a dict (the coordinator did not finish the save?)');
  const need = new Map<string, number>();
  for (const info of storage.values()) {
    const { relative_path: rel, offset, length } = (info ?? {}) as PickledObject;
    const off = asByteCount(offset);
    const len = asByteCount(length);
    if (typeof rel !== 'string' || off === null || len === null)
      throw new DcpFormatError('a storage_data entry is not _StorageInfo(relative_path, offset, length)');
    if (rel === '' || path.isAbsolute(rel) || rel.split(/[\\/]/).includes('..'))
      throw new DcpFormatError(`storage_data names ${JSON.stringify(rel)}, outside the checkpoint folder`);
    need.set(rel, Math.max(need.get(rel) ?? 0, off + len));
  }
  return [...need].map(([relativePath, minBytes]) => ({ relativePath, minBytes }));
}

/** The class name pickleparser recorded for an object it rebuilt (`__name__` on its prototype). */
function pickledClassName(o: unknown): string | undefined {
  if (o === null || typeof o !== 'object') return undefined;
  const name = (Object.getPrototypeOf(o) as { __name__?: unknown } | null)?.__name__;
  return typeof name === 'string' ? name : undefined;
}

function asByteCount(v: unknown): number | null {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/**
 * TTT-Video-DiT's layout: the newest complete DCP `step-N` folder under `{runDir}/checkpoint`.
 * Its `dir` is what the next stage's `checkpoint.init_state_dir` points to (TTT-Video-DiT's
 * `Checkpointer.load_pretrained` loads the `model` entry of such a folder).
 */
export const tttVideoDitLayout: CheckpointLayout = {
  name: 'ttt-video-dit',
  latestComplete(runDir: string): CompleteCheckpoint | null {
    for (const c of tttStepFolders(runDir)) if (checkDcpFolder(c.dir).complete) return c;
    return null;
  },
};
