/**
 * File-level helpers of the tensor formats: the sha256 of a file, and the index of a
 * safetensors file split in several (`*.safetensors.index.json`, as written by
 * transformers/diffusers `save_pretrained` and by `ttt-curriculum convert`).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** sha256 and size of a file. */
export interface FileEntry {
  sha256: string;
  bytes: number;
}

/** sha256 (hex) of a file, read in 1 MiB blocks. */
export function sha256File(file: string): string {
  return fileEntry(file).sha256;
}

/** sha256 and size of a file, read in 1 MiB blocks. */
export function fileEntry(file: string): FileEntry {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  let bytes = 0;
  try {
    const buf = Buffer.alloc(1 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) {
      h.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), bytes };
}

/** A problem with an index file: what is wrong, and which fix applies (the caller words the fix). */
export interface IndexProblem {
  problem: string;
  cause: 'unreadable' | 'malformed' | 'outside' | 'missing';
}

/**
 * Reads a safetensors index: its weight map and the distinct files it names (absolute, sorted).
 * The files must sit beside the index and exist.
 */
export function readSafetensorsIndex(
  index: string,
): { weightMap: Record<string, string>; files: string[] } | IndexProblem {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    return { cause: 'unreadable', problem: `cannot read the shard index (${(e as Error).message})` };
  }
  if (
    weightMap === null ||
    typeof weightMap !== 'object' ||
    Array.isArray(weightMap) ||
    Object.values(weightMap).some((f) => typeof f !== 'string')
  )
    return { cause: 'malformed', problem: 'weight_map is not an object of {tensor name: file name}' };
  const names = [...new Set(Object.values(weightMap as Record<string, string>))].sort();
  const outside = names.filter((f) => f !== path.basename(f) || f.startsWith('.'));
  if (outside.length > 0)
    return { cause: 'outside', problem: `weight_map names files outside the folder: ${outside.join(', ')}` };
  const dir = path.dirname(index);
  const missing = names.filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length > 0)
    return { cause: 'missing', problem: `shard files listed in weight_map are missing: ${missing.join(', ')}` };
  return { weightMap: weightMap as Record<string, string>, files: names.map((f) => path.join(dir, f)) };
}
