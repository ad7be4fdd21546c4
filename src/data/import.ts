/**
 * `ttt-curriculum dataset import`: a TTT-Video-DiT precomputed dataset folder into ours.
 *
 * TTT-Video-DiT's JSONL lines are {"vid_emb": "<file>", "text_chunk_emb": ["<file>", ...]}
 * with paths relative to the dataset folder (or absolute); its files are torch.save'd tensors
 * (.pt): the VAE posterior [T, 2C, H, W] and one T5 embedding [L, E] per 3-second segment,
 * usually BF16. Here:
 *
 *   find the JSONL files -> read every line, map every file to its place in --out
 *   (<same relative path>.safetensors; absolute paths outside the folder under external/)
 *   -> convert each .pt with Python's torch (torchfiles.ts), copy .safetensors/.npy as they are
 *   -> write the JSONL files with the new paths (every other field kept) and import.json.
 *
 * Idempotent: import.json records, per output file, the source's size and mtime; a file whose
 * source is unchanged is kept. Each file is written under a temporary name and renamed, so an
 * interrupted import is resumed by running it again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { startTorchConverter, type TorchConverter } from './torchfiles';

export const IMPORT_FORMAT = 'ttt-curriculum-import/1';
export const IMPORT_MANIFEST = 'import.json';
const TORCH_EXTS = ['.pt', '.pth'];
const COPY_EXTS = ['.safetensors', '.npy'];

export interface ImportOptions {
  /** The TTT-Video-DiT dataset folder (its training.dataset_path). */
  from: string;
  out: string;
  /** JSONL files, relative to `from`; default: every *.jsonl under it. */
  jsonl?: string[];
  /** The Python with torch (default: python3, then python). */
  python?: string;
  signal?: AbortSignal;
  onProgress?: (p: ImportProgress) => void;
}

export interface ImportProgress {
  done: number;
  total: number;
  /** The output file just written (relative to out). */
  file: string;
}

export interface ImportResult {
  out: string;
  /** The JSONL files written, relative to out. */
  jsonl: string[];
  samples: number;
  converted: number;
  copied: number;
  /** Files kept from an earlier import (their sources are unchanged). */
  kept: number;
  /** torch's version, when .pt files were converted. */
  torch?: string;
  /** Whether torch.load ran with weights_only=True (torch 1.13 and later). */
  weightsOnly?: boolean;
  seconds: number;
}

/** One file of the output: where it comes from, how it is made. */
interface PlannedFile {
  src: string;
  how: 'torch' | 'copy';
  name: string;
  /** Where the JSONL lines name it (for error messages). */
  where: string;
}

interface Plan {
  files: Map<string, PlannedFile>;
  jsonl: { rel: string; text: string }[];
  samples: number;
}

interface ManifestEntry {
  source: string;
  bytes: number;
  mtimeMs: number;
}

interface Manifest {
  format: typeof IMPORT_FORMAT;
  source: string;
  jsonl: string[];
  files: Record<string, ManifestEntry>;
}

const dataError = (message: string, where: string, fix: string): UserError =>
  new UserError(message, { kind: 'DataError', where, fix });

/** Every *.jsonl under dir (sorted, relative), skipping `skip` (the output folder, when it is inside). */
function findJsonl(dir: string, skip: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && p !== skip && !e.name.startsWith('.')) walk(p);
      else if (e.isFile() && e.name.endsWith('.jsonl')) out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Where a file named in a JSONL line goes, relative to out. */
function outName(from: string, p: string): string {
  const abs = path.resolve(from, p);
  const rel = path.relative(from, abs);
  const inside = rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  const base = inside ? rel : path.join('external', abs.replace(/^\/+/, ''));
  const ext = path.extname(base).toLowerCase();
  return TORCH_EXTS.includes(ext) ? `${base.slice(0, -ext.length)}.safetensors` : base;
}

/** Reads every JSONL line, maps its files, checks that they exist and have a type we take. */
function planImport(from: string, jsonlFiles: string[]): Plan {
  const files = new Map<string, PlannedFile>();
  const problems: string[] = [];
  const add = (p: string, name: string, where: string): string => {
    const rel = outName(from, p);
    const src = path.resolve(from, p);
    const ext = path.extname(src).toLowerCase();
    const other = files.get(rel);
    if (other && other.src !== src) problems.push(`${where}: ${p} and ${other.src} would both become ${rel}`);
    else if (!TORCH_EXTS.includes(ext) && !COPY_EXTS.includes(ext))
      problems.push(`${where}: ${p} is neither .pt/.pth nor .safetensors/.npy`);
    else if (!fs.existsSync(src)) problems.push(`${where}: ${p} does not exist`);
    else if (!other) files.set(rel, { src, how: TORCH_EXTS.includes(ext) ? 'torch' : 'copy', name, where });
    return rel;
  };
  const jsonl: Plan['jsonl'] = [];
  let samples = 0;
  for (const j of jsonlFiles) {
    const file = path.resolve(from, j);
    const lines: string[] = [];
    fs.readFileSync(file, 'utf8')
      .split('\n')
      .forEach((raw, i) => {
        if (!raw.trim()) return;
        const where = `${file}:${i + 1}`;
        const o = parseLine(raw, where);
        const vid = add(o.vid_emb, 'vid_emb', where);
        const texts = o.text_chunk_emb.map((t) => add(t, 'text_chunk_emb', where));
        lines.push(JSON.stringify({ ...o, vid_emb: vid, text_chunk_emb: texts }));
        samples++;
      });
    jsonl.push({ rel: path.isAbsolute(j) ? path.basename(j) : path.normalize(j), text: `${lines.join('\n')}\n` });
  }
  if (problems.length > 0)
    throw dataError(
      `${problems.length} file(s) named in the JSONL cannot be imported:\n  - ${problems.slice(0, 20).join('\n  - ')}${problems.length > 20 ? `\n  - and ${problems.length - 20} more` : ''}\n`,
      from,
      'fix the paths (relative to the dataset folder) or restore the files, then run the import again',
    );
  if (samples === 0) throw dataError('the JSONL files list no samples', from, 'point it at a TTT-Video-DiT dataset');
  return { files, jsonl, samples };
}

function parseLine(raw: string, where: string): { vid_emb: string; text_chunk_emb: string[] } {
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    throw dataError('not valid JSON', where, 'one JSON object per line');
  }
  const { vid_emb, text_chunk_emb } = (o ?? {}) as Record<string, unknown>;
  if (
    typeof vid_emb !== 'string' ||
    !Array.isArray(text_chunk_emb) ||
    text_chunk_emb.some((t) => typeof t !== 'string')
  )
    throw dataError(
      'expected {"vid_emb": "<file>", "text_chunk_emb": ["<file>", ...]} (TTT-Video-DiT\'s JSONL)',
      where,
      'point it at a TTT-Video-DiT precomputed dataset',
    );
  return o as { vid_emb: string; text_chunk_emb: string[] };
}

function readManifest(out: string): Manifest | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(out, IMPORT_MANIFEST), 'utf8')) as Manifest;
    return m.format === IMPORT_FORMAT && m.files && typeof m.files === 'object' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The output folder's earlier import (or a fresh one); refuses a folder that holds something else. */
function openOutput(from: string, out: string): Manifest {
  if (out === from) throw dataError('the output folder is the dataset folder', out, 'choose another --out');
  const fresh: Manifest = { format: IMPORT_FORMAT, source: from, jsonl: [], files: {} };
  if (!fs.existsSync(out)) return fresh;
  const m = readManifest(out);
  if (m) return { ...m, source: from };
  if (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length > 0)
    throw dataError(
      `exists, is not empty and holds no ${IMPORT_MANIFEST} (not an earlier import); it is left alone`,
      out,
      'choose a new or empty output folder',
    );
  return fresh;
}

const sourceEntry = (src: string): ManifestEntry => {
  const s = fs.statSync(src);
  return { source: src, bytes: s.size, mtimeMs: s.mtimeMs };
};

const unchanged = (m: Manifest, out: string, rel: string, src: string): boolean => {
  const e = m.files[rel];
  const now = sourceEntry(src);
  return (
    e !== undefined &&
    e.source === now.source &&
    e.bytes === now.bytes &&
    e.mtimeMs === now.mtimeMs &&
    fs.existsSync(path.join(out, rel))
  );
};

/** Writes a file under a temporary name, then renames it into place: it is whole or absent. */
function writeAtomically(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function writeManifest(out: string, m: Manifest): void {
  writeAtomically(path.join(out, IMPORT_MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
}

function copyAtomically(src: string, dst: string): { dst: string } {
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  const tmp = `${dst}.tmp-${process.pid}`;
  fs.copyFileSync(src, tmp);
  fs.renameSync(tmp, dst);
  return { dst };
}

/** Imports a TTT-Video-DiT precomputed dataset folder (see the file comment). */
export async function importTttDataset(opts: ImportOptions): Promise<ImportResult> {
  const t0 = Date.now();
  const from = path.resolve(opts.from);
  const out = path.resolve(opts.out);
  if (!fs.existsSync(from) || !fs.statSync(from).isDirectory())
    throw dataError('no such folder', from, "give TTT-Video-DiT's dataset folder (its training.dataset_path)");
  const jsonlFiles = opts.jsonl ?? findJsonl(from, out);
  if (jsonlFiles.length === 0)
    throw dataError('holds no *.jsonl file', from, 'give the dataset folder, or name the JSONL files with --jsonl');
  const plan = planImport(from, jsonlFiles);
  const manifest = openOutput(from, out);
  const todo = [...plan.files].filter(([rel, f]) => !unchanged(manifest, out, rel, f.src));
  const counts = { converted: 0, copied: 0, kept: plan.files.size - todo.length };
  const torch = todo.some(([, f]) => f.how === 'torch') ? await startTorchConverter(opts.python) : undefined;
  try {
    writeManifest(out, manifest); // before any file: from now on the folder is an import, and a rerun resumes it
    await produceFiles(out, todo, manifest, torch, counts, opts);
  } finally {
    await torch?.close();
    writeManifest(out, manifest);
  }
  for (const j of plan.jsonl) writeAtomically(path.join(out, j.rel), j.text);
  manifest.jsonl = plan.jsonl.map((j) => j.rel);
  writeManifest(out, manifest);
  return {
    out,
    jsonl: manifest.jsonl,
    samples: plan.samples,
    ...counts,
    ...(torch ? { torch: torch.torch, weightsOnly: torch.weightsOnly } : {}),
    seconds: (Date.now() - t0) / 1000,
  };
}

/** Converts or copies the files to do, in order, recording each in the manifest; lists every failure. */
async function produceFiles(
  out: string,
  todo: [string, PlannedFile][],
  manifest: Manifest,
  torch: TorchConverter | undefined,
  counts: { converted: number; copied: number },
  opts: ImportOptions,
): Promise<void> {
  const failed: string[] = [];
  for (const [i, [rel, f]] of todo.entries()) {
    if (opts.signal?.aborted)
      throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('import cancelled');
    const dst = path.join(out, rel);
    const before = sourceEntry(f.src);
    const r = f.how === 'copy' ? copyAtomically(f.src, dst) : await torch!.convert({ src: f.src, dst, name: f.name });
    if ('error' in r) failed.push(`${f.src} (${f.where}): ${r.error}`);
    else {
      counts[f.how === 'copy' ? 'copied' : 'converted']++;
      manifest.files[rel] = before;
    }
    if (i % 50 === 49) writeManifest(out, manifest);
    opts.onProgress?.({ done: i + 1, total: todo.length, file: rel });
  }
  if (failed.length > 0)
    throw dataError(
      `torch could not read ${failed.length} file(s):\n  - ${failed.slice(0, 20).join('\n  - ')}\n`,
      out,
      'regenerate them with TTT-Video-DiT (each .pt holds one tensor), then run the import again: the files already imported are kept',
    );
}
