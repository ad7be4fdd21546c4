/**
 * CogVideoX (diffusers) -> TTT-Video-DiT weights, streaming.
 *
 *   read config.json and every header, check keys/shapes/dtypes (diffusers.ts)
 *   -> plan the output: source tensors in file order, then the parameters TTT-Video-DiT adds,
 *      cut into output files ("parts") of at most maxPartBytes (parts.ts)
 *   -> for each input file, each tensor in byte order, in chunks: read, hash, convert the dtype,
 *      append to the current part (whose header was written first, from the plan)
 *   -> the added parameters, initialised as TTT-Video-DiT does (params.ts)
 *   -> config.json (the [model] fields) and convert.json (the manifest: the input's content
 *      hash, the options, every output file's sha256), then an atomic rename into place.
 *
 * Memory holds one 16 MiB chunk of a source tensor (and its converted bytes), or one added
 * parameter, far below "one input file plus one output file". Every input byte is read once: the input's
 * content hash is computed while converting. Converting the same input with the same options
 * again finds the manifest and reuses the output after checking the input's hash.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DTYPE_BYTES, fromFloat32, toFloat32 } from '../io/safetensors';
import { fsyncDir, removeDeadWritersFolders, verifyFiles, writeFileSynced } from '../checkpoint/store';
import { type FileEntry, fileEntry } from '../io/files';
import { type Logger, logger } from '../log';
import { initialValue, paramSpecs, type ParamSpec } from '../model/params';
import {
  ConvertError,
  paramDims,
  readDiffusersSource,
  type DiffusersConfig,
  type DiffusersSource,
  type SourceFile,
} from './diffusers';
import { splitSpecs, tttName } from './keymap';
import { mb, type OutEntry, type OutPart, PartWriter, planParts } from './parts';

export const CONVERT_FORMAT = 'ttt-curriculum-convert/1';
export const MANIFEST = 'convert.json';
export const MODEL_CONFIG = 'config.json';
/** The largest output file by default (`--max-file-size`). */
export const DEFAULT_MAX_PART_BYTES = 5 * 1024 ** 3;

export type OutputDtype = 'float32' | 'bfloat16';
const SAFETENSORS_DTYPE: Record<OutputDtype, 'F32' | 'BF16'> = { float32: 'F32', bfloat16: 'BF16' };

export interface ConvertOptions {
  /** The diffusers transformer folder. */
  from: string;
  /** The output folder: created, or replaced if it holds an earlier conversion. */
  out: string;
  ssmLayer?: 'ttt_mlp' | 'ttt_linear';
  dtype?: OutputDtype;
  /** Seed of the parameters TTT-Video-DiT adds (the same stream as a fresh initialisation with training.seed). */
  seed?: number;
  /** The largest output file (`--max-file-size`; a bigger tensor gets a file of its own). Default 5 GiB. */
  maxPartBytes?: number;
  signal?: AbortSignal;
  onProgress?: (p: ConvertProgress) => void;
}

export interface ConvertProgress {
  /** hashing: checking the input against an earlier conversion; converting: writing the output. */
  phase: 'hashing' | 'converting';
  bytesDone: number;
  bytesTotal: number;
  /** The input file being read. */
  file: string;
}

/** The [model] fields of a stage config that the converted weights fit. */
export interface ModelConfig extends DiffusersConfig {
  ssm_layer: 'ttt_mlp' | 'ttt_linear';
}

export interface ConvertManifest {
  format: typeof CONVERT_FORMAT;
  source: string;
  /** sha256 over the input files' names, sizes and sha256 (see inputHash()). */
  inputHash: string;
  inputFiles: Record<string, FileEntry>;
  options: { ssm_layer: string; dtype: OutputDtype; seed: number; max_shard_bytes: number };
  model: ModelConfig;
  tensors: { mapped: number; added: number };
  /** Every output file but the manifest: sha256 and size. */
  files: Record<string, FileEntry>;
  createdAt: string;
}

export interface ConvertResult {
  out: string;
  /** True when an earlier conversion of the same input with the same options was kept. */
  reused: boolean;
  inputHash: string;
  /** The weights files (model.safetensors, or its parts). */
  weightFiles: string[];
  tensors: { mapped: number; added: number };
  bytesIn: number;
  bytesOut: number;
  seconds: number;
  model: ModelConfig;
}

/** Source bytes converted at a time (a multiple of every element size). */
const CHUNK_BYTES = 16 << 20;

/** sha256 over "name\tbytes\tsha256\n" of every input file, in the source's order. */
export function inputHash(files: Record<string, FileEntry>): string {
  const h = crypto.createHash('sha256');
  for (const [name, e] of Object.entries(files)) h.update(`${name}\t${e.bytes}\t${e.sha256}\n`);
  return h.digest('hex');
}

async function readFully(fh: fs.promises.FileHandle, buf: Buffer, position: number, file: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, Math.min(buf.length - off, 1 << 30), position + off);
    if (bytesRead === 0)
      throw new ConvertError(
        file,
        `ended at byte ${position + off} (the file shrank while it was read)`,
        'do not change the input while it is converted',
      );
    off += bytesRead;
  }
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('conversion cancelled');
}

function readManifest(out: string): ConvertManifest | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(out, MANIFEST), 'utf8')) as ConvertManifest;
    return m.format === CONVERT_FORMAT && typeof m.inputHash === 'string' && m.files && typeof m.files === 'object'
      ? m
      : undefined;
  } catch {
    return undefined;
  }
}

/** Checks a conversion output folder: every file listed in convert.json has its size (and, with checksums, its sha256). */
export function verifyConversion(
  out: string,
  opts: { checksums?: boolean } = {},
): { ok: true; manifest: ConvertManifest } | { ok: false; reason: string } {
  const m = readManifest(out);
  if (!m) return { ok: false, reason: `${MANIFEST} missing or unreadable` };
  const bad = verifyFiles(out, m.files, MANIFEST, opts);
  return bad ? { ok: false, reason: bad } : { ok: true, manifest: m };
}

/** Hashes every input file (streaming), reporting progress. */
async function hashInputs(src: DiffusersSource, opts: ConvertOptions): Promise<Record<string, FileEntry>> {
  const total = src.inputFiles.reduce((a, f) => a + fs.statSync(f).size, 0);
  let done = 0;
  const out: Record<string, FileEntry> = {};
  const buf = Buffer.allocUnsafeSlow(8 << 20);
  for (const file of src.inputFiles) {
    const fh = await fs.promises.open(file, 'r');
    const h = crypto.createHash('sha256');
    let bytes = 0;
    try {
      for (;;) {
        checkAborted(opts.signal);
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
        bytes += bytesRead;
        done += bytesRead;
        opts.onProgress?.({ phase: 'hashing', bytesDone: done, bytesTotal: total, file });
      }
    } finally {
      await fh.close();
    }
    out[path.basename(file)] = { sha256: h.digest('hex'), bytes };
  }
  return out;
}

function removeStaleTemporaries(out: string): void {
  const prefix = `.${path.basename(out)}.`;
  removeDeadWritersFolders(path.dirname(out), (n) =>
    n.startsWith(prefix) ? /\.(?:tmp|old)-(\d+)-[0-9a-f]{8}$/.exec(n)?.[1] : undefined,
  );
}

/** One conversion's options, defaults applied and checked, and its source, read and checked. */
interface Job {
  opts: ConvertOptions;
  /** Date.now() at the start. */
  t0: number;
  out: string;
  src: DiffusersSource;
  ssmLayer: 'ttt_mlp' | 'ttt_linear';
  dtype: OutputDtype;
  /** The output dtype as safetensors names it. */
  st: 'F32' | 'BF16';
  seed: number;
  maxPartBytes: number;
  model: ModelConfig;
  options: ConvertManifest['options'];
  bytesIn: number;
  log: Logger;
}

/** The output of a conversion: every tensor in writing order, cut into parts. */
interface OutputPlan {
  entries: OutEntry[];
  parts: OutPart[];
  bytesTotal: number;
  /** Source tensors, at the start of `entries`. */
  mapped: number;
  /** Parameters TTT-Video-DiT adds, after them. */
  added: OutEntry[];
}

/** Converts a CogVideoX diffusers transformer folder into TTT-Video-DiT weights (see the file comment). */
export async function convertDiffusers(opts: ConvertOptions): Promise<ConvertResult> {
  const job = openJob(opts, Date.now());
  const earlier = await reuseEarlierConversion(job);
  if (earlier) return earlier;
  const plan = planOutput(job);
  job.log.info(
    {
      from: job.src.dir,
      inputFiles: job.src.files.length,
      inputMB: mb(job.bytesIn),
      outputShards: plan.parts.length,
      outputMB: mb(plan.bytesTotal),
      mapped: plan.mapped,
      added: plan.added.length,
      dtype: job.dtype,
    },
    'converting CogVideoX weights',
  );
  return writeConversion(job, plan);
}

/** Applies the defaults, checks the options and reads the source (its headers, not its tensors). */
function openJob(opts: ConvertOptions, t0: number): Job {
  const out = path.resolve(opts.out);
  const ssmLayer = opts.ssmLayer ?? 'ttt_mlp';
  const dtype = opts.dtype ?? 'float32';
  const seed = opts.seed ?? 0;
  const maxPartBytes = opts.maxPartBytes ?? DEFAULT_MAX_PART_BYTES;
  const st = SAFETENSORS_DTYPE[dtype];
  if (!st)
    throw new ConvertError('--dtype', `${JSON.stringify(dtype)} is not an output dtype`, 'use float32 or bfloat16');
  if (ssmLayer !== 'ttt_mlp' && ssmLayer !== 'ttt_linear')
    throw new ConvertError(
      '--ssm-layer',
      `${JSON.stringify(ssmLayer)} is not a TTT layer`,
      'use ttt_mlp or ttt_linear',
    );
  const log = logger.child({ convert: out });
  const src = readDiffusersSource(opts.from, ssmLayer);
  if (path.resolve(src.dir) === out)
    throw new ConvertError(out, 'the output folder is the input folder', 'choose another --out');
  return {
    opts,
    t0,
    out,
    src,
    ssmLayer,
    dtype,
    st,
    seed,
    maxPartBytes,
    model: { ...src.config, ssm_layer: ssmLayer },
    options: { ssm_layer: ssmLayer, dtype, seed, max_shard_bytes: maxPartBytes },
    bytesIn: src.inputFiles.reduce((a, f) => a + fs.statSync(f).size, 0),
    log,
  };
}

/**
 * The earlier conversion in the output folder when it converted the same input with the same
 * options and is complete; undefined when the folder is new, empty or to be converted again.
 * Throws when the folder holds something else.
 */
async function reuseEarlierConversion(job: Job): Promise<ConvertResult | undefined> {
  const { out, log, options } = job;
  if (!fs.existsSync(out)) return undefined;
  if (!fs.statSync(out).isDirectory())
    throw new ConvertError(out, 'exists and is not a folder', 'choose a new or empty output folder');
  const prev = readManifest(out);
  if (!prev && fs.readdirSync(out).length > 0)
    throw new ConvertError(
      out,
      `exists, is not empty and holds no ${MANIFEST} (not the output of an earlier conversion); it is left alone`,
      'choose a new or empty output folder',
    );
  if (!prev) return undefined;
  if (JSON.stringify(prev.options) !== JSON.stringify(options)) {
    log.info({ was: prev.options, now: options }, 'the earlier conversion used other options; converting again');
    return undefined;
  }
  const sizesOk = verifyConversion(out, { checksums: false });
  if (!sizesOk.ok) {
    log.info({ reason: sizesOk.reason }, 'the earlier conversion is incomplete; converting again');
    return undefined;
  }
  const hash = inputHash(await hashInputs(job.src, job.opts));
  if (hash !== prev.inputHash) {
    log.info({ was: prev.inputHash, now: hash }, 'the input changed since the earlier conversion; converting again');
    return undefined;
  }
  log.info({ inputHash: hash }, 'the output folder already holds this conversion; reusing it');
  const weightFiles = Object.keys(prev.files)
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  return {
    out,
    reused: true,
    inputHash: hash,
    weightFiles,
    tensors: prev.tensors,
    bytesIn: job.bytesIn,
    bytesOut: weightFiles.reduce((a, f) => a + prev.files[f]!.bytes, 0),
    seconds: (Date.now() - job.t0) / 1000,
    model: prev.model,
  };
}

/** Source tensors in file and byte order, then the parameters TTT-Video-DiT adds, cut into parts. */
function planOutput(job: Job): OutputPlan {
  const specs = paramSpecs(paramDims(job.src.config, job.ssmLayer));
  const byName = new Map(specs.map((s) => [s.name, s]));
  const entryOf = (spec: ParamSpec): OutEntry => ({
    name: spec.name,
    shape: spec.torchShape,
    bytes: spec.torchShape.reduce((a, b) => a * b, DTYPE_BYTES[job.st]),
    spec,
  });
  const entries: OutEntry[] = [];
  for (const f of job.src.files) for (const t of f.tensors) entries.push(entryOf(byName.get(tttName(t.name)!)!));
  const { added } = splitSpecs(specs);
  const mapped = entries.length;
  for (const spec of added) entries.push(entryOf(spec));
  return {
    entries,
    parts: planParts(entries, job.maxPartBytes),
    bytesTotal: entries.reduce((a, e) => a + e.bytes, 0),
    mapped,
    added: entries.slice(mapped),
  };
}

/**
 * Writes the conversion into a temporary folder beside the output (the parts, the index, config.json,
 * the manifest), then moves it into place. On any failure, the temporary folder is removed.
 */
async function writeConversion(job: Job, plan: OutputPlan): Promise<ConvertResult> {
  const { out, log } = job;
  removeStaleTemporaries(out);
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${tag}`);
  fs.mkdirSync(tmp, { recursive: true });
  const writer = new PartWriter({
    dir: tmp,
    parts: plan.parts,
    dtype: job.st,
    bytesTotal: plan.bytesTotal,
    log,
    onProgress: job.opts.onProgress,
  });
  try {
    const inputFiles = await convertTensors(job, plan, writer);
    const files = writer.files;
    const manifest = writeDescriptions(job, plan, tmp, files, inputFiles);
    fsyncDir(tmp);
    moveIntoPlace(tmp, out, tag);
    const seconds = (Date.now() - job.t0) / 1000;
    const weightFiles = plan.parts.map((s) => s.file);
    log.info({ seconds, inputHash: manifest.inputHash, files: weightFiles.length }, 'conversion done');
    return {
      out,
      reused: false,
      inputHash: manifest.inputHash,
      weightFiles,
      tensors: { mapped: plan.mapped, added: plan.added.length },
      bytesIn: job.bytesIn,
      bytesOut: weightFiles.reduce((a, f) => a + files[f]!.bytes, 0),
      seconds,
      model: job.model,
    };
  } catch (e) {
    await writer.abandon();
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Streams every source tensor, then every added parameter, into the parts; returns every input file's sha256 and size. */
async function convertTensors(job: Job, plan: OutputPlan, writer: PartWriter): Promise<Record<string, FileEntry>> {
  const inputFiles: Record<string, FileEntry> = {};
  for (const f of job.src.inputFiles.filter((f) => !f.endsWith('.safetensors')))
    inputFiles[path.basename(f)] = fileEntry(f);
  const buffers = new ReadBuffers();
  for (const [fi, f] of job.src.files.entries()) {
    job.log.info(
      {
        file: path.basename(f.file),
        index: fi + 1,
        of: job.src.files.length,
        tensors: f.tensors.length,
        mb: mb(f.bytes),
      },
      'reading input file',
    );
    inputFiles[path.basename(f.file)] = await convertSourceFile(job, f, writer, buffers);
  }
  for (const e of plan.added) {
    checkAborted(job.opts.signal);
    const bytes = fromFloat32(job.st, initialValue(e.spec, job.seed)); // while the previous one is written
    await writer.flushed();
    writer.startTensor();
    void writer.append(bytes, ADDED_PARAMETERS);
  }
  await writer.finish();
  return inputFiles;
}

/** What progress reports as the file being read while the added parameters are written. */
const ADDED_PARAMETERS = '(added TTT parameters)';

/** Two read buffers, used in turn: the next chunk is read and converted while the previous one is written. */
class ReadBuffers {
  private readonly chunks = [Buffer.allocUnsafeSlow(CHUNK_BYTES), Buffer.allocUnsafeSlow(CHUNK_BYTES)];
  private readonly inUse: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  private c = 0;

  /** The next buffer, cut to `bytes`, once the write that last used it is done. */
  async next(bytes: number): Promise<Buffer> {
    await this.inUse[this.c];
    return this.chunks[this.c]!.subarray(0, bytes);
  }

  /** Keeps the buffer from next() until `written` settles, and turns to the other one. */
  lend(written: Promise<void>): void {
    this.inUse[this.c] = written;
    this.c ^= 1;
  }
}

/** Streams one input file's tensors into the parts, in chunks; returns the file's sha256 and size. */
async function convertSourceFile(
  job: Job,
  f: SourceFile,
  writer: PartWriter,
  buffers: ReadBuffers,
): Promise<FileEntry> {
  const h = crypto.createHash('sha256');
  const rh = await fs.promises.open(f.file, 'r');
  try {
    const head = Buffer.allocUnsafeSlow(f.header.dataStart);
    await readFully(rh, head, 0, f.file);
    h.update(head);
    for (const t of f.tensors) {
      checkAborted(job.opts.signal);
      writer.startTensor();
      // In chunks, so that memory does not grow with the largest tensor.
      for (let at = t.info.begin; at < t.info.end; at += CHUNK_BYTES) {
        const raw = await buffers.next(Math.min(CHUNK_BYTES, t.info.end - at));
        await readFully(rh, raw, f.header.dataStart + at, f.file);
        h.update(raw);
        const bytes =
          t.info.dtype === job.st ? raw : fromFloat32(job.st, toFloat32(t.info.dtype, raw, f.file, t.name, true));
        buffers.lend(writer.append(bytes, f.file));
      }
    }
    await writer.flushed();
  } finally {
    await rh.close();
  }
  // The tensors cover the data section exactly (checked with the header), so this is the whole file's hash.
  return { sha256: h.digest('hex'), bytes: f.bytes };
}

/**
 * Writes what describes the weights into tmp: model.safetensors.index.json (when there are
 * several parts), config.json (the [model] fields) and the manifest, which lists the others.
 */
function writeDescriptions(
  job: Job,
  plan: OutputPlan,
  tmp: string,
  files: Record<string, FileEntry>,
  inputFiles: Record<string, FileEntry>,
): ConvertManifest {
  if (plan.parts.length > 1) {
    const weightMap: Record<string, string> = {};
    for (const s of plan.parts) for (const e of s.entries) weightMap[e.name] = s.file;
    files['model.safetensors.index.json'] = writeFileSynced(
      path.join(tmp, 'model.safetensors.index.json'),
      `${JSON.stringify({ metadata: { total_size: plan.bytesTotal }, weight_map: weightMap }, null, 2)}\n`,
    );
  }
  files[MODEL_CONFIG] = writeFileSynced(path.join(tmp, MODEL_CONFIG), `${JSON.stringify(job.model, null, 2)}\n`);
  const ordered: Record<string, FileEntry> = {};
  for (const f of job.src.inputFiles) ordered[path.basename(f)] = inputFiles[path.basename(f)]!;
  const manifest: ConvertManifest = {
    format: CONVERT_FORMAT,
    source: job.src.dir,
    inputHash: inputHash(ordered),
    inputFiles: ordered,
    options: job.options,
    model: job.model,
    tensors: { mapped: plan.mapped, added: plan.added.length },
    files,
    createdAt: new Date().toISOString(),
  };
  writeFileSynced(path.join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Renames the finished temporary folder to `out`, replacing an earlier conversion there. */
function moveIntoPlace(tmp: string, out: string, tag: string): void {
  if (fs.existsSync(out)) {
    const old = path.join(path.dirname(out), `.${path.basename(out)}.old-${tag}`);
    fs.renameSync(out, old);
    fs.renameSync(tmp, out);
    fs.rmSync(old, { recursive: true, force: true });
  } else {
    fs.renameSync(tmp, out);
  }
  fsyncDir(path.dirname(out));
}
