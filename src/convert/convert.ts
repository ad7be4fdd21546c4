/**
 * CogVideoX (diffusers) -> TTT-Video-DiT weights, streaming.
 *
 *   read config.json and every header, check keys/shapes/dtypes (diffusers.ts)
 *   -> plan the output: source tensors in file order, then the parameters TTT-Video-DiT adds,
 *      cut into shards of at most maxShardBytes
 *   -> for each input file, each tensor in byte order, in chunks: read, hash, convert the dtype,
 *      append to the current output shard (whose header was written first, from the plan)
 *   -> the added parameters, initialised as TTT-Video-DiT does (params.ts)
 *   -> config.json (the [model] fields) and convert.json (the manifest: the input's content
 *      hash, the options, every output file's sha256), then an atomic rename into place.
 *
 * Memory holds one 16 MiB chunk of a source tensor (and its converted bytes), or one added
 * parameter, far below "one input shard plus one output shard". Every input byte is read once: the input's
 * content hash is computed while converting. Converting the same input with the same options
 * again finds the manifest and reuses the output after checking the input's hash.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DTYPE_BYTES, encodeHeader, fromFloat32, toFloat32 } from '../io/safetensors';
import { fsyncDir, removeDeadWritersFolders, verifyFiles, writeFileSynced } from '../checkpoint/store';
import { type FileEntry, fileEntry } from '../io/files';
import { logger } from '../log';
import { initialValue, paramSpecs, type ParamSpec } from '../model/params';
import { ConvertError, paramDims, readDiffusersSource, type DiffusersConfig, type DiffusersSource } from './diffusers';
import { splitSpecs, tttName } from './keymap';

export const CONVERT_FORMAT = 'ttt-curriculum-convert/1';
export const MANIFEST = 'convert.json';
export const MODEL_CONFIG = 'config.json';
export const DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3;

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
  maxShardBytes?: number;
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
  /** The weights files (model.safetensors, or the shards). */
  weightFiles: string[];
  tensors: { mapped: number; added: number };
  bytesIn: number;
  bytesOut: number;
  seconds: number;
  model: ModelConfig;
}

/** One tensor of the output, in writing order: a source tensor (file and byte order), then the added parameters. */
interface OutEntry {
  name: string;
  shape: number[];
  bytes: number;
  spec: ParamSpec;
}

interface OutShard {
  file: string;
  entries: OutEntry[];
}

/** Source bytes converted at a time (a multiple of every element size). */
const CHUNK_BYTES = 16 << 20;
const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;

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

async function writeFully(fh: fs.promises.FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('conversion cancelled');
}

/** Splits the output into shards of at most maxBytes (a bigger tensor gets a shard of its own). */
function planShards(entries: OutEntry[], maxBytes: number): OutShard[] {
  const groups: OutEntry[][] = [];
  let cur: OutEntry[] = [];
  let size = 0;
  for (const e of entries) {
    if (cur.length > 0 && size + e.bytes > maxBytes) {
      groups.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(e);
    size += e.bytes;
  }
  if (cur.length > 0) groups.push(cur);
  if (groups.length === 1) return [{ file: 'model.safetensors', entries: groups[0]! }];
  const n = String(groups.length).padStart(5, '0');
  return groups.map((entries, i) => ({ file: `model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`, entries }));
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

/** Converts a CogVideoX diffusers transformer folder into TTT-Video-DiT weights (see the file comment). */
export async function convertDiffusers(opts: ConvertOptions): Promise<ConvertResult> {
  const t0 = Date.now();
  const out = path.resolve(opts.out);
  const ssmLayer = opts.ssmLayer ?? 'ttt_mlp';
  const dtype = opts.dtype ?? 'float32';
  const seed = opts.seed ?? 0;
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
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
  const model: ModelConfig = { ...src.config, ssm_layer: ssmLayer };
  const options = { ssm_layer: ssmLayer, dtype, seed, max_shard_bytes: maxShardBytes };
  const bytesIn = src.inputFiles.reduce((a, f) => a + fs.statSync(f).size, 0);

  if (fs.existsSync(out)) {
    if (!fs.statSync(out).isDirectory())
      throw new ConvertError(out, 'exists and is not a folder', 'choose a new or empty output folder');
    const prev = readManifest(out);
    if (!prev && fs.readdirSync(out).length > 0)
      throw new ConvertError(
        out,
        `exists, is not empty and holds no ${MANIFEST} (not the output of an earlier conversion); it is left alone`,
        'choose a new or empty output folder',
      );
    if (prev && JSON.stringify(prev.options) === JSON.stringify(options)) {
      const sizesOk = verifyConversion(out, { checksums: false });
      if (sizesOk.ok) {
        const inputFiles = await hashInputs(src, opts);
        const hash = inputHash(inputFiles);
        if (hash === prev.inputHash) {
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
            bytesIn,
            bytesOut: weightFiles.reduce((a, f) => a + prev.files[f]!.bytes, 0),
            seconds: (Date.now() - t0) / 1000,
            model: prev.model,
          };
        }
        log.info(
          { was: prev.inputHash, now: hash },
          'the input changed since the earlier conversion; converting again',
        );
      } else log.info({ reason: sizesOk.reason }, 'the earlier conversion is incomplete; converting again');
    } else if (prev)
      log.info({ was: prev.options, now: options }, 'the earlier conversion used other options; converting again');
  }

  // Plan: source tensors in file and byte order, then the parameters TTT-Video-DiT adds.
  const specs = paramSpecs(paramDims(src.config, ssmLayer));
  const byName = new Map(specs.map((s) => [s.name, s]));
  const entryOf = (spec: ParamSpec): OutEntry => ({
    name: spec.name,
    shape: spec.torchShape,
    bytes: spec.torchShape.reduce((a, b) => a * b, DTYPE_BYTES[st]),
    spec,
  });
  const entries: OutEntry[] = [];
  for (const f of src.files) for (const t of f.tensors) entries.push(entryOf(byName.get(tttName(t.name)!)!));
  const { added } = splitSpecs(specs);
  for (const spec of added) entries.push(entryOf(spec));
  const shards = planShards(entries, maxShardBytes);
  const bytesTotal = entries.reduce((a, e) => a + e.bytes, 0);
  const mapped = entries.length - added.length;
  log.info(
    {
      from: src.dir,
      inputFiles: src.files.length,
      inputMB: mb(bytesIn),
      outputShards: shards.length,
      outputMB: mb(bytesTotal),
      mapped,
      added: added.length,
      dtype,
    },
    'converting CogVideoX weights',
  );

  removeStaleTemporaries(out);
  const tag = `${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${tag}`);
  fs.mkdirSync(tmp, { recursive: true });
  let fh: fs.promises.FileHandle | undefined;
  let queue: Promise<void> = Promise.resolve();
  try {
    const files: Record<string, FileEntry> = {};
    const inputFiles: Record<string, FileEntry> = {};
    for (const f of src.inputFiles.filter((f) => !f.endsWith('.safetensors')))
      inputFiles[path.basename(f)] = fileEntry(f);
    let shardIdx = -1;
    let left = 0;
    let hash: crypto.Hash | undefined;
    let written = 0;
    let expectedBytes = 0;
    let done = 0;
    let currentFile = src.dir;
    const closeShard = async (): Promise<void> => {
      if (!fh) return;
      await fh.sync();
      await fh.close();
      fh = undefined;
      const s = shards[shardIdx]!;
      if (written !== expectedBytes)
        throw new Error(`internal: ${s.file} has ${written} bytes, its header plans ${expectedBytes}`);
      files[s.file] = { sha256: hash!.digest('hex'), bytes: written };
      log.info(
        { shard: s.file, of: shards.length, tensors: s.entries.length, mb: mb(written) },
        'output shard written',
      );
    };
    /** Runs an output step after the ones queued before it (writes stay in order while the next chunk is read). */
    const enqueue = (step: () => Promise<void>): Promise<void> => {
      queue = queue.then(step);
      queue.catch(() => undefined); // awaited later; not an unhandled rejection meanwhile
      return queue;
    };
    /** Starts the next tensor of the plan, opening the next shard (its header first) when the current one is full. */
    const startEntry = async (): Promise<void> => {
      while (left === 0) {
        await closeShard();
        shardIdx++;
        const s = shards[shardIdx]!;
        const { header, dataBytes } = encodeHeader(
          s.entries.map((x) => ({ name: x.name, dtype: st, shape: x.shape })),
          { format: 'pt' },
        );
        expectedBytes = header.length + dataBytes;
        fh = await fs.promises.open(path.join(tmp, s.file), 'w');
        hash = crypto.createHash('sha256');
        written = 0;
        left = s.entries.length;
        await writeFully(fh, header);
        hash.update(header);
        written += header.length;
      }
      left--;
    };
    /** Appends bytes of the current tensor. */
    const writeData = async (bytes: Uint8Array): Promise<void> => {
      await writeFully(fh!, bytes);
      hash!.update(bytes);
      written += bytes.length;
      done += bytes.length;
      opts.onProgress?.({ phase: 'converting', bytesDone: done, bytesTotal, file: currentFile });
    };

    let k = 0;
    // Two read buffers: the next chunk is read and converted while the previous one is written.
    const chunks = [Buffer.allocUnsafeSlow(CHUNK_BYTES), Buffer.allocUnsafeSlow(CHUNK_BYTES)];
    const inUse: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
    let c = 0;
    for (const [fi, f] of src.files.entries()) {
      currentFile = f.file;
      log.info(
        {
          file: path.basename(f.file),
          index: fi + 1,
          of: src.files.length,
          tensors: f.tensors.length,
          mb: mb(f.bytes),
        },
        'reading input file',
      );
      const h = crypto.createHash('sha256');
      const rh = await fs.promises.open(f.file, 'r');
      try {
        const head = Buffer.allocUnsafeSlow(f.header.dataStart);
        await readFully(rh, head, 0, f.file);
        h.update(head);
        for (const t of f.tensors) {
          checkAborted(opts.signal);
          k++;
          void enqueue(startEntry);
          // In chunks, so that memory does not grow with the largest tensor.
          for (let at = t.info.begin; at < t.info.end; at += CHUNK_BYTES) {
            await inUse[c]; // the write that last used this buffer is done
            const raw = chunks[c]!.subarray(0, Math.min(CHUNK_BYTES, t.info.end - at));
            await readFully(rh, raw, f.header.dataStart + at, f.file);
            h.update(raw);
            const bytes =
              t.info.dtype === st ? raw : fromFloat32(st, toFloat32(t.info.dtype, raw, f.file, t.name, true));
            inUse[c] = enqueue(() => writeData(bytes));
            c ^= 1;
          }
        }
        await queue;
      } finally {
        await rh.close();
      }
      // The tensors cover the data section exactly (checked with the header), so this is the whole file's hash.
      inputFiles[path.basename(f.file)] = { sha256: h.digest('hex'), bytes: f.bytes };
    }
    currentFile = '(added TTT parameters)';
    for (; k < entries.length; k++) {
      checkAborted(opts.signal);
      const bytes = fromFloat32(st, initialValue(entries[k]!.spec, seed)); // while the previous one is written
      await queue;
      void enqueue(startEntry);
      void enqueue(() => writeData(bytes));
    }
    await queue;
    await closeShard();

    const weightFiles = shards.map((s) => s.file);
    if (shards.length > 1) {
      const weightMap: Record<string, string> = {};
      for (const s of shards) for (const e of s.entries) weightMap[e.name] = s.file;
      files['model.safetensors.index.json'] = writeFileSynced(
        path.join(tmp, 'model.safetensors.index.json'),
        `${JSON.stringify({ metadata: { total_size: bytesTotal }, weight_map: weightMap }, null, 2)}\n`,
      );
    }
    files[MODEL_CONFIG] = writeFileSynced(path.join(tmp, MODEL_CONFIG), `${JSON.stringify(model, null, 2)}\n`);
    const ordered: Record<string, FileEntry> = {};
    for (const f of src.inputFiles) ordered[path.basename(f)] = inputFiles[path.basename(f)]!;
    const hashAll = inputHash(ordered);
    const manifest: ConvertManifest = {
      format: CONVERT_FORMAT,
      source: src.dir,
      inputHash: hashAll,
      inputFiles: ordered,
      options,
      model,
      tensors: { mapped, added: added.length },
      files,
      createdAt: new Date().toISOString(),
    };
    writeFileSynced(path.join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    fsyncDir(tmp);
    if (fs.existsSync(out)) {
      const old = path.join(path.dirname(out), `.${path.basename(out)}.old-${tag}`);
      fs.renameSync(out, old);
      fs.renameSync(tmp, out);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, out);
    }
    fsyncDir(path.dirname(out));
    const seconds = (Date.now() - t0) / 1000;
    log.info({ seconds, inputHash: hashAll, files: weightFiles.length }, 'conversion done');
    return {
      out,
      reused: false,
      inputHash: hashAll,
      weightFiles,
      tensors: { mapped, added: added.length },
      bytesIn,
      bytesOut: weightFiles.reduce((a, f) => a + files[f]!.bytes, 0),
      seconds,
      model,
    };
  } catch (e) {
    await queue.catch(() => undefined); // let a write in flight end before closing its file
    await fh?.close().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
