/**
 * safetensors reading and writing.
 *
 * Our own module, on purpose: npm has no maintained safetensors library for Node (checked
 * 2026-11: `safetensors` is a 0.0.1 placeholder, and @huggingface/hub only parses the headers
 * of files on the Hub over HTTP; it neither reads local tensors nor writes files). The format
 * is small: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then the tensor
 * bytes, little-endian, row-major. Reading validates the header as strictly as the reference
 * implementation (Rust `safetensors`): a malformed, torn or tampered file fails with a
 * SafetensorsError that names the file and the problem, never with another exception.
 *
 * Files are read tensor by tensor with positional reads, so a file larger than one Buffer
 * (2-4 GiB) reads, and memory holds one tensor at a time.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { UserError } from '../errors';

export type DType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';
export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8,
  I64: 8,
  U64: 8,
  F32: 4,
  I32: 4,
  U32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  U16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
/** The reference implementation's limit: a longer header is refused before it is read. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** Byte offsets relative to the start of the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute file offset where the data section starts (8 + header length). */
  dataStart: number;
  /** Length of the data section; the tensors cover it exactly. */
  dataBytes: number;
}

/** A float32 tensor in row-major order with its (PyTorch) shape. */
export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

export class SafetensorsError extends UserError {
  /** The problem alone, without the file and the fix. */
  readonly problem: string;
  constructor(file: string, message: string) {
    super(message, {
      where: file,
      kind: 'SafetensorsError',
      fix: 'the file is malformed or truncated; restore it or delete it so that an earlier checkpoint is used',
    });
    this.name = 'SafetensorsError';
    this.problem = message;
  }
}

const LITTLE_ENDIAN = os.endianness() === 'LE';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The first key that occurs twice in one object of a JSON text, if any. JSON.parse keeps the
 * last value of a duplicate key silently, so duplicates are found here. The text must already
 * be valid JSON (it is scanned, not parsed); iterative, so deep nesting cannot overflow the stack.
 */
export function duplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c) {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return undefined;
}

/** Parses and validates a header given the whole file length. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  const dataBytes = fileSize - dataStart;
  const json = headerObject(file, headerBytes);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') metadata = headerMetadata(file, v);
    else tensors.set(name, tensorEntry(file, name, v, dataBytes));
  }
  checkCoverage(file, tensors, dataBytes);
  return { tensors, metadata, dataStart, dataBytes };
}

/** The header's JSON object: valid UTF-8, valid JSON, an object, no key twice. */
function headerObject(file: string, headerBytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new SafetensorsError(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new SafetensorsError(file, 'header is not a JSON object');
  const dup = duplicateKey(text);
  if (dup !== undefined) throw new SafetensorsError(file, `header has the key ${JSON.stringify(dup)} twice`);
  return json as Record<string, unknown>;
}

/** The "__metadata__" entry: strings to strings. */
function headerMetadata(file: string, v: unknown): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw new SafetensorsError(file, '__metadata__ must map strings to strings');
  }
  return v as Record<string, string>;
}

/** One tensor's entry: a known dtype, a shape, and data offsets inside the data section that span exactly its bytes. */
function tensorEntry(file: string, name: string, v: unknown, dataBytes: number): TensorInfo {
  const what = `tensor ${JSON.stringify(name)}`;
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new SafetensorsError(file, `${what}: entry is not an object`);
  const { dtype, shape, data_offsets: offs } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new SafetensorsError(
      file,
      `${what}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new SafetensorsError(file, `${what}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (
    !Array.isArray(offs) ||
    offs.length !== 2 ||
    offs.some((d) => !Number.isSafeInteger(d) || d < 0) ||
    offs[0] > offs[1]
  ) {
    throw new SafetensorsError(
      file,
      `${what}: data_offsets ${JSON.stringify(offs)} is not [begin, end] with 0 <= begin <= end`,
    );
  }
  const [begin, end] = offs as [number, number];
  if (end > dataBytes) {
    throw new SafetensorsError(
      file,
      `${what}: data_offsets [${begin}, ${end}] fall outside the ${Math.max(0, dataBytes)}-byte data section (file truncated?)`,
    );
  }
  let expected = DTYPE_BYTES[dtype as DType];
  for (const d of shape as number[]) expected *= d;
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new SafetensorsError(
      file,
      `${what}: shape ${JSON.stringify(shape)} of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { dtype: dtype as DType, shape: shape as number[], begin, end };
}

/** As in the reference implementation: the tensors cover the data section exactly, without overlaps or holes. */
function checkCoverage(file: string, tensors: Map<string, TensorInfo>, dataBytes: number): void {
  const ranges = [...tensors].map(([name, t]): [number, number, string] => [t.begin, t.end, name]);
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  let prev = '(start of the data section)';
  for (const [begin, end, name] of ranges) {
    if (begin < at)
      throw new SafetensorsError(
        file,
        `tensors ${JSON.stringify(prev)} and ${JSON.stringify(name)} overlap (bytes ${begin}..${at})`,
      );
    if (begin > at)
      throw new SafetensorsError(
        file,
        `${begin - at} bytes between ${prev === '(start of the data section)' ? prev : JSON.stringify(prev)} and tensor ${JSON.stringify(name)} belong to no tensor`,
      );
    at = end;
    prev = name;
  }
  if (at !== dataBytes)
    throw new SafetensorsError(
      file,
      `the last ${dataBytes - at} bytes of the file belong to no tensor (the data section is ${dataBytes} bytes, the tensors end at ${at})`,
    );
}

/** Reads exactly `length` bytes at `position` (a short read means the file shrank). */
export function readExactly(fd: number, file: string, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, Math.min(buf.length - off, 1 << 30), position + off);
    if (n === 0)
      throw new SafetensorsError(
        file,
        `file ended at byte ${position + off} while reading ${buf.length} bytes at ${position} (truncated while reading?)`,
      );
    off += n;
  }
}

/** The header length from the first 8 bytes of a file of `size` bytes, checked against the file and the limit. */
function headerLength(file: string, first8: Uint8Array, size: number): number {
  if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, shorter than the 8-byte header length`);
  const n = Buffer.from(first8.buffer, first8.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n > BigInt(size - 8))
    throw new SafetensorsError(file, `header length ${n} runs past the end of the ${size}-byte file`);
  return Number(n);
}

/** Reads and validates the header of an open file. */
export function readHeaderFd(fd: number, file: string): SafetensorsHeader {
  const size = fs.fstatSync(fd).size;
  const first8 = Buffer.alloc(8);
  if (size >= 8) readExactly(fd, file, first8, 0);
  const header = Buffer.alloc(headerLength(file, first8, size));
  readExactly(fd, file, header, 8);
  return parseHeader(file, header, size);
}

/** Decodes a whole safetensors file held in memory (every tensor as float32), with the same checks as reading a file. */
export function decodeSafetensors(
  bytes: Uint8Array,
  file = '(buffer)',
): { tensors: Map<string, FloatTensor>; metadata: Record<string, string> } {
  const n = headerLength(file, bytes.subarray(0, 8), bytes.length);
  const header = parseHeader(file, bytes.subarray(8, 8 + n), bytes.length);
  const tensors = new Map<string, FloatTensor>();
  for (const [name, info] of header.tensors) {
    tensors.set(name, {
      shape: info.shape,
      data: toFloat32(
        info.dtype,
        bytes.subarray(header.dataStart + info.begin, header.dataStart + info.end),
        file,
        name,
      ),
    });
  }
  return { tensors, metadata: header.metadata };
}

/** Reads only the header of a file. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    return readHeaderFd(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

function halfToFloat(h: number): number {
  const s = (h & 0x8000) >> 15;
  const e = (h & 0x7c00) >> 10;
  const f = h & 0x03ff;
  let v: number;
  if (e === 0) v = f * 2 ** -24;
  else if (e === 0x1f) v = f ? NaN : Infinity;
  else v = (1 + f / 1024) * 2 ** (e - 15);
  return s ? -v : v;
}

let halfTable: Float32Array | undefined;
function halfLookup(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** A Uint8Array whose byteOffset is a multiple of `align` (a copy only when it is not). */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : new Uint8Array(bytes);
}

/**
 * Converts raw little-endian bytes of a float dtype to a new float32 array (exact for BF16 and
 * F16; F64 rounds). `owned` lets F32 bytes that nobody else holds become the result without a copy.
 */
export function toFloat32(dtype: DType, bytes: Uint8Array, file = '(buffer)', name = '', owned = false): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  if (!LITTLE_ENDIAN)
    return toFloat32Portable(dtype, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), n, file, name);
  switch (dtype) {
    case 'F32': {
      const a = aligned(bytes, 4);
      const view = new Float32Array(a.buffer, a.byteOffset, n);
      return owned || a !== bytes ? view : view.slice();
    }
    case 'BF16': {
      const a = aligned(bytes, 2);
      const src = new Uint16Array(a.buffer, a.byteOffset, n);
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16': {
      const a = aligned(bytes, 2);
      const src = new Uint16Array(a.buffer, a.byteOffset, n);
      const table = halfLookup();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case 'F64': {
      const a = aligned(bytes, 8);
      return Float32Array.from(new Float64Array(a.buffer, a.byteOffset, n));
    }
    default:
      throw new SafetensorsError(
        file,
        `tensor ${JSON.stringify(name)} has dtype ${dtype}, expected a floating-point dtype (F32, BF16, F16, F64)`,
      );
  }
}

function toFloat32Portable(dtype: DType, bytes: Buffer, n: number, file: string, name: string): Float32Array {
  const out = new Float32Array(n);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    if (dtype === 'F32') out[i] = bytes.readFloatLE(i * 4);
    else if (dtype === 'F64') out[i] = bytes.readDoubleLE(i * 8);
    else if (dtype === 'F16') out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
    else if (dtype === 'BF16') {
      u32[0] = bytes.readUInt16LE(i * 2) << 16;
      out[i] = f32[0]!;
    } else
      throw new SafetensorsError(
        file,
        `tensor ${JSON.stringify(name)} has dtype ${dtype}, expected a floating-point dtype (F32, BF16, F16, F64)`,
      );
  }
  return out;
}

/** float32 values -> little-endian bytes of F32, or BF16 rounded to nearest even (NaN stays NaN). */
export function fromFloat32(dtype: 'F32' | 'BF16', data: Float32Array): Buffer {
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const b = Buffer.allocUnsafeSlow(data.length * 4);
    for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i]!, i * 4);
    return b;
  }
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const b = Buffer.allocUnsafeSlow(data.length * 2);
  const out = LITTLE_ENDIAN ? new Uint16Array(b.buffer, b.byteOffset, data.length) : undefined;
  for (let i = 0; i < data.length; i++) {
    const u = bits[i]!;
    const h =
      (u & 0x7fffffff) > 0x7f800000 ? ((u >>> 16) | 0x40) & 0xffff : ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
    if (out) out[i] = h;
    else b.writeUInt16LE(h, i * 2);
  }
  return b;
}

/** Reads the bytes of one tensor of an open file into a fresh buffer. */
export function readTensorBytes(fd: number, file: string, header: SafetensorsHeader, info: TensorInfo): Buffer {
  const buf = Buffer.allocUnsafeSlow(info.end - info.begin);
  readExactly(fd, file, buf, header.dataStart + info.begin);
  return buf;
}

/** Reads every tensor of a file as float32, one tensor in memory at a time besides the results. */
export function readSafetensors(file: string): { tensors: Map<string, FloatTensor>; metadata: Record<string, string> } {
  const fd = fs.openSync(file, 'r');
  try {
    const header = readHeaderFd(fd, file);
    const tensors = new Map<string, FloatTensor>();
    for (const [name, info] of header.tensors) {
      tensors.set(name, {
        shape: info.shape,
        data: toFloat32(info.dtype, readTensorBytes(fd, file, header, info), file, name, true),
      });
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

export interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * The 8-byte length and the JSON header (padded with spaces to a multiple of 8 bytes) of a
 * file whose tensors follow in the given order; also the data section's length.
 */
export function encodeHeader(
  entries: HeaderEntry[],
  metadata: Record<string, string> = {},
): { header: Buffer; dataBytes: number } {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || Object.hasOwn(json, e.name))
      throw new Error(`tensor name ${JSON.stringify(e.name)} is reserved or repeated`);
    const bytes = e.shape.reduce((a, b) => a * b, DTYPE_BYTES[e.dtype]);
    json[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = Buffer.from(JSON.stringify(json), 'utf8');
  const pad = (8 - (text.length % 8)) % 8;
  if (pad) text = Buffer.concat([text, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return { header: Buffer.concat([len, text]), dataBytes: offset };
}

/** Serialises float32 tensors (sorted by name) as F32 (default) or BF16 into a list of buffers. */
export function encodeSafetensors(
  tensors: Map<string, FloatTensor>,
  metadata: Record<string, string> = {},
  dtype: 'F32' | 'BF16' = 'F32',
): Buffer[] {
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length)
      throw new Error(
        `tensor ${name}: shape ${JSON.stringify(t.shape)} has ${elements} elements but data has ${t.data.length}`,
      );
  }
  const { header } = encodeHeader(
    names.map((name) => ({ name, dtype, shape: tensors.get(name)!.shape })),
    metadata,
  );
  return [header, ...names.map((name) => Buffer.from(fromFloat32(dtype, tensors.get(name)!.data)))];
}
