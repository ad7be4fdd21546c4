/**
 * safetensors reading and writing.
 *
 * Hand-written: the npm registry has no maintained safetensors package for Node (the
 * `safetensors` package is a 0.0.1 placeholder), and the format is small: an 8-byte
 * little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
 * the raw little-endian tensor bytes. Reading validates the header strictly, so a torn or
 * tampered file fails with a message that names the file and the problem.
 */
import * as fs from 'node:fs';
import { UserError } from '../errors';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';
export const DTYPE_BYTES: Record<DType, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1 };
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
  /** Absolute file offset where the data section starts. */
  dataStart: number;
}

/** A float32 tensor in row-major order with its (PyTorch) shape. */
export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

export class SafetensorsError extends UserError {
  constructor(file: string, message: string) {
    super(message, { where: file, kind: 'SafetensorsError', fix: 'the file is malformed or truncated; restore it or delete it so that an earlier checkpoint is used' });
    this.name = 'SafetensorsError';
  }
}

/** Parses and validates a header given the whole file length. */
export function parseHeader(file: string, headerBytes: Buffer, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  let json: unknown;
  try {
    json = JSON.parse(headerBytes.toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError(file, 'header is not a JSON object');
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const dataSize = fileSize - dataStart;
  const ranges: [number, number, string][] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
        throw new SafetensorsError(file, '__metadata__ must map strings to strings');
      }
      metadata = v as Record<string, string>;
      continue;
    }
    if (v === null || typeof v !== 'object') throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: entry is not an object`);
    const { dtype, shape, data_offsets: offs } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || offs.some((d) => !Number.isSafeInteger(d) || d < 0) || offs[0] > offs[1]) {
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: data_offsets ${JSON.stringify(offs)} is not [begin, end] with begin <= end`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: data_offsets [${begin}, ${end}] fall outside the ${dataSize}-byte data section (file truncated?)`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * DTYPE_BYTES[dtype as DType];
    if (expected !== end - begin) {
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)}: shape ${JSON.stringify(shape)} of ${dtype} needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    tensors.set(name, { dtype: dtype as DType, shape: shape as number[], begin, end });
    ranges.push([begin, end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i]![0] < ranges[i - 1]![1]) {
      throw new SafetensorsError(file, `tensors ${JSON.stringify(ranges[i - 1]![2])} and ${JSON.stringify(ranges[i]![2])} overlap`);
    }
  }
  return { tensors, metadata, dataStart };
}

/** Reads only the header of a file. */
export function readHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    if (n > BigInt(size - 8)) throw new SafetensorsError(file, `header length ${n} runs past the end of the ${size}-byte file`);
    const header = Buffer.alloc(Number(n));
    fs.readSync(fd, header, 0, header.length, 8);
    return parseHeader(file, header, size);
  } finally {
    fs.closeSync(fd);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

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

/** Converts raw little-endian bytes of a float dtype to float32 (exact for BF16 and F16). */
export function toFloat32(dtype: DType, bytes: Buffer, file = '(buffer)', name = ''): Float32Array {
  const n = bytes.length / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(i * 4);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) {
        u32[0] = bytes.readUInt16LE(i * 2) << 16;
        out[i] = f32[0]!;
      }
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
      return out;
    default:
      throw new SafetensorsError(file, `tensor ${JSON.stringify(name)} has dtype ${dtype}, expected a floating-point dtype`);
  }
}

/** Reads every tensor of a file as float32. */
export function readSafetensors(file: string): { tensors: Map<string, FloatTensor>; metadata: Record<string, string> } {
  const header = readHeader(file);
  const buf = fs.readFileSync(file);
  const tensors = new Map<string, FloatTensor>();
  for (const [name, info] of header.tensors) {
    const bytes = buf.subarray(header.dataStart + info.begin, header.dataStart + info.end);
    tensors.set(name, { shape: info.shape, data: toFloat32(info.dtype, bytes, file, name) });
  }
  return { tensors, metadata: header.metadata };
}

/** Serialises float32 tensors (sorted by name, 8-byte aligned header) into one buffer list. */
export function encodeSafetensors(tensors: Map<string, FloatTensor>, metadata: Record<string, string> = {}): Buffer[] {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) throw new Error(`tensor ${name}: shape ${JSON.stringify(t.shape)} has ${elements} elements but data has ${t.data.length}`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.length * 4] };
    offset += t.data.length * 4;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const parts: Buffer[] = [len, json];
  for (const name of names) {
    const t = tensors.get(name)!;
    const b = Buffer.alloc(t.data.length * 4);
    for (let i = 0; i < t.data.length; i++) b.writeFloatLE(t.data[i]!, i * 4);
    parts.push(b);
  }
  return parts;
}
