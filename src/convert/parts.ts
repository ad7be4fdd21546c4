/**
 * The output files of a conversion ("parts"): the plan that cuts the output tensors into files of
 * at most a given size, and the writer that fills them in plan order, each file's header first.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeHeader } from '../io/safetensors';
import type { FileEntry } from '../io/files';
import type { Logger } from '../log';
import type { ParamSpec } from '../model/params';

/** One tensor of the output, in writing order: a source tensor (file and byte order), then the added parameters. */
export interface OutEntry {
  name: string;
  shape: number[];
  bytes: number;
  spec: ParamSpec;
}

/** One output file and the tensors it holds, in order. */
export interface OutPart {
  file: string;
  entries: OutEntry[];
}

export const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;

/** Splits the output into files of at most maxBytes (a bigger tensor gets a file of its own). */
export function planParts(entries: OutEntry[], maxBytes: number): OutPart[] {
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

async function writeFully(fh: fs.promises.FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
}

export interface PartWriterOptions {
  /** The folder the parts are written into. */
  dir: string;
  parts: OutPart[];
  dtype: 'F32' | 'BF16';
  /** Data bytes of all parts together (for progress). */
  bytesTotal: number;
  log: Logger;
  onProgress?: (p: { phase: 'converting'; bytesDone: number; bytesTotal: number; file: string }) => void;
}

/**
 * Writes the planned parts in order, tensor after tensor, hashing as it goes. Every step runs after
 * the ones queued before it, so writes stay in order while the caller reads and converts the next chunk.
 */
export class PartWriter {
  /** sha256 and size of every part closed so far, in order. */
  readonly files: Record<string, FileEntry> = {};
  private readonly o: PartWriterOptions;
  private queue: Promise<void> = Promise.resolve();
  private fh: fs.promises.FileHandle | undefined;
  private partIdx = -1;
  /** Tensors of the current part not started yet. */
  private left = 0;
  private hash: crypto.Hash | undefined;
  private written = 0;
  private expectedBytes = 0;
  private done = 0;

  constructor(o: PartWriterOptions) {
    this.o = o;
  }

  /** Queues the start of the next tensor of the plan. */
  startTensor(): void {
    void this.enqueue(() => this.startEntry());
  }

  /** Queues bytes of the current tensor, read from `file`; settles once they are written. */
  append(bytes: Uint8Array, file: string): Promise<void> {
    return this.enqueue(() => this.writeData(bytes, file));
  }

  /** Settles when every queued step has run. */
  flushed(): Promise<void> {
    return this.queue;
  }

  /** Waits for the queued steps, then closes the last part. */
  async finish(): Promise<void> {
    await this.queue;
    await this.closePart();
  }

  /** After a failure: lets a write in flight end before closing its file. */
  async abandon(): Promise<void> {
    await this.queue.catch(() => undefined);
    await this.fh?.close().catch(() => undefined);
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(step);
    this.queue.catch(() => undefined); // awaited later; not an unhandled rejection meanwhile
    return this.queue;
  }

  /** Starts the next tensor of the plan, opening the next part (its header first) when the current one is full. */
  private async startEntry(): Promise<void> {
    while (this.left === 0) {
      await this.closePart();
      await this.openNextPart();
    }
    this.left--;
  }

  private async openNextPart(): Promise<void> {
    this.partIdx++;
    const s = this.o.parts[this.partIdx]!;
    const { header, dataBytes } = encodeHeader(
      s.entries.map((x) => ({ name: x.name, dtype: this.o.dtype, shape: x.shape })),
      { format: 'pt' },
    );
    this.expectedBytes = header.length + dataBytes;
    this.fh = await fs.promises.open(path.join(this.o.dir, s.file), 'w');
    this.hash = crypto.createHash('sha256');
    this.written = 0;
    this.left = s.entries.length;
    await writeFully(this.fh, header);
    this.hash.update(header);
    this.written += header.length;
  }

  /** Appends bytes of the current tensor. */
  private async writeData(bytes: Uint8Array, file: string): Promise<void> {
    await writeFully(this.fh!, bytes);
    this.hash!.update(bytes);
    this.written += bytes.length;
    this.done += bytes.length;
    this.o.onProgress?.({ phase: 'converting', bytesDone: this.done, bytesTotal: this.o.bytesTotal, file });
  }

  private async closePart(): Promise<void> {
    if (!this.fh) return;
    await this.fh.sync();
    await this.fh.close();
    this.fh = undefined;
    const s = this.o.parts[this.partIdx]!;
    if (this.written !== this.expectedBytes)
      throw new Error(`internal: ${s.file} has ${this.written} bytes, its header plans ${this.expectedBytes}`);
    this.files[s.file] = { sha256: this.hash!.digest('hex'), bytes: this.written };
    this.o.log.info(
      { shard: s.file, of: this.o.parts.length, tensors: s.entries.length, mb: mb(this.written) },
      'output shard written',
    );
  }
}
