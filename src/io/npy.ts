/**
 * NumPy .npy reading (float16/32/64, C order) and float32 writing. Hand-written: npm has no
 * maintained .npy reader for Node; the format is a magic string, a version, a Python-literal
 * header {'descr', 'fortran_order', 'shape'} and raw little-endian data.
 */
import * as fs from 'node:fs';
import { UserError } from '../errors';
import { toFloat32, type FloatTensor } from './safetensors';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

function bad(file: string, msg: string): UserError {
  return new UserError(msg, {
    where: file,
    kind: 'DataError',
    fix: 'rewrite the file with numpy.save(path, array.astype("float32"))',
  });
}

export function readNpy(file: string): FloatTensor {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw bad(file, 'not a .npy file (bad magic)');
  const major = buf[6]!;
  if (major < 1 || major > 3) throw bad(file, `format version ${major} is not supported (1, 2 or 3)`);
  const start = major === 1 ? 10 : 12;
  if (buf.length < start) throw bad(file, 'the header is cut short (truncated?)');
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (start + headerLen > buf.length) throw bad(file, 'header runs past the end of the file');
  const header = buf.subarray(start, start + headerLen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined)
    throw bad(file, `unreadable header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') throw bad(file, 'Fortran-ordered arrays are not supported');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw bad(file, `unreadable shape (${shapeText}) in the header`);
  const dtype = ({ '<f4': 'F32', '<f2': 'F16', '<f8': 'F64' } as const)[descr as '<f4'];
  if (!dtype) throw bad(file, `dtype ${descr} is not supported (float16, float32 or float64, little-endian)`);
  const bytesPer = dtype === 'F32' ? 4 : dtype === 'F16' ? 2 : 8;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = buf.subarray(start + headerLen);
  if (data.length !== n * bytesPer)
    throw bad(
      file,
      `shape (${shape.join(', ')}) of ${descr} needs ${n * bytesPer} bytes but the file holds ${data.length} (truncated?)`,
    );
  return { shape, data: toFloat32(dtype, Buffer.from(data), file) };
}

export function writeNpy(file: string, t: FloatTensor): void {
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += `${' '.repeat((64 - (total % 64)) % 64)}\n`;
  const head = Buffer.alloc(10);
  MAGIC.copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}
