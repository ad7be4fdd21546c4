/**
 * Data off the training thread: a worker thread reads, decodes and noises the next micro-batches
 * (hostBatch) while the training thread runs the current step; the arrays come back transferred,
 * not copied, and only become tensors on the training thread. The queue is bounded: at most
 * `depth` micro-batches are requested ahead.
 *
 * Batches are keyed by (data step, micro-batch). The prefetcher guesses that the next key follows
 * the one just taken (micro + 1, then the next data step); a key it did not guess (after a
 * rollback that skips a batch) drops the guesses and is read on demand. Bad samples are skipped in
 * the worker with the same SkipPolicy rules; their warnings and a too-many-bad-samples error reach
 * the caller when it takes that batch, so they are reported against the step that uses it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { StageConfig } from '../config/schema';
import { UserError, type UserErrorKind } from '../errors';
import type { ModelDims } from '../model/dims';
import { type Batch, batchTensors, type HostBatch, hostBatch, openDataSource, type SkipPolicy } from './batch';

export interface PrefetchOptions {
  config: StageConfig;
  dims: ModelDims;
  /** Samples per micro-batch, and micro-batches per optimizer step. */
  microSize: number;
  accum: number;
  skip: SkipPolicy;
  /** Micro-batches requested ahead (default 2). */
  depth?: number;
  /** false: build batches on the calling thread (no worker), as makeBatch does. */
  thread?: boolean;
  /** Called when the worker has built a micro-batch (tests, benchmarks). */
  onReady?: (dataStep: number, micro: number) => void;
}

/** What the worker is given (structured-cloned) and what it answers. */
export interface PrefetchWorkerData {
  config: StageConfig;
  dims: ModelDims;
  microSize: number;
  maxBad: number;
}
export interface PrefetchRequest {
  id: number;
  dataStep: number;
  micro: number;
}
export type PrefetchReply =
  | { id: number; ok: true; batch: HostBatch; skips: { sample: number; reason: string }[] }
  | {
      id: number;
      ok: false;
      skips: { sample: number; reason: string }[];
      error: { message: string; userError: boolean; kind?: UserErrorKind; where?: string; fix?: string };
    };

export interface PrefetchStats {
  /** Micro-batches taken, and those not ready when asked for. */
  batches: number;
  waited: number;
  /** Seconds the caller spent blocked in take() (waiting for data, plus making tensors). */
  waitSeconds: number;
}

export interface BatchPrefetcher {
  /** The micro-batch `micro` of data step `dataStep` as tensors (the caller disposes them). */
  take(dataStep: number, micro: number): Promise<Batch>;
  readonly stats: PrefetchStats;
  close(): Promise<void>;
}

const WORKER = path.join(__dirname, 'prefetch-worker.js');

/** Opens the stage's data source (errors such as a missing dataset are thrown here) and a prefetcher over it. */
export function openPrefetcher(o: PrefetchOptions): BatchPrefetcher {
  const src = openDataSource(o.config, o.dims);
  const seed = o.config.training.seed;
  const gbs = o.config.training.global_batch_size;
  if (o.thread === false || !fs.existsSync(WORKER)) {
    const cache = new Map<number, number[]>();
    const stats: PrefetchStats = { batches: 0, waited: 0, waitSeconds: 0 };
    return {
      stats,
      async take(dataStep, micro) {
        const t = process.hrtime.bigint();
        const b = batchTensors(hostBatch(src, o.dims, seed, dataStep, gbs, micro, o.microSize, cache, o.skip));
        stats.batches++;
        stats.waited++;
        stats.waitSeconds += Number(process.hrtime.bigint() - t) / 1e9;
        return b;
      },
      async close() {},
    };
  }
  return new ThreadPrefetcher(o);
}

type Pending = { key: string; reply: Promise<PrefetchReply>; settled: boolean };

class ThreadPrefetcher implements BatchPrefetcher {
  readonly stats: PrefetchStats = { batches: 0, waited: 0, waitSeconds: 0 };
  private readonly worker: Worker;
  private readonly depth: number;
  private readonly queue: Pending[] = [];
  private readonly waiting = new Map<number, (r: PrefetchReply) => void>();
  private nextId = 1;
  private failed: Error | undefined;

  constructor(private readonly o: PrefetchOptions) {
    this.depth = Math.max(1, o.depth ?? 2);
    const data: PrefetchWorkerData = { config: o.config, dims: o.dims, microSize: o.microSize, maxBad: o.skip.maxBad };
    this.worker = new Worker(WORKER, { workerData: data });
    this.worker.on('message', (r: PrefetchReply) => {
      this.waiting.get(r.id)?.(r);
      this.waiting.delete(r.id);
    });
    const die = (e: Error): void => {
      this.failed = e;
      for (const [id, resolve] of this.waiting)
        resolve({
          id,
          ok: false,
          skips: [],
          error: { message: `data prefetch thread: ${e.message}`, userError: false },
        });
      this.waiting.clear();
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`exited with code ${code}`)));
  }

  private request(dataStep: number, micro: number): Pending {
    const id = this.nextId++;
    const p: Pending = { key: `${dataStep}/${micro}`, settled: false, reply: Promise.resolve(undefined as never) };
    p.reply = new Promise<PrefetchReply>((resolve) => {
      if (this.failed)
        return resolve({ id, ok: false, skips: [], error: { message: this.failed.message, userError: false } });
      this.waiting.set(id, (r) => {
        p.settled = true;
        if (r.ok) this.o.onReady?.(dataStep, micro);
        resolve(r);
      });
      this.worker.postMessage({ id, dataStep, micro } satisfies PrefetchRequest);
    });
    return p;
  }

  /** The key after (dataStep, micro) in an uninterrupted run. */
  private after(dataStep: number, micro: number): [number, number] {
    return micro + 1 < this.o.accum ? [dataStep, micro + 1] : [dataStep + 1, 0];
  }

  async take(dataStep: number, micro: number): Promise<Batch> {
    const t = process.hrtime.bigint();
    const key = `${dataStep}/${micro}`;
    // Guesses before the wanted key, or all of them if it was not guessed, are dropped.
    const at = this.queue.findIndex((p) => p.key === key);
    this.queue.splice(0, at < 0 ? this.queue.length : at);
    const mine = this.queue.shift() ?? this.request(dataStep, micro);
    if (!mine.settled) this.stats.waited++;
    // Keep `depth` requests in flight after this one.
    let [d, m] = this.after(dataStep, micro);
    for (const p of this.queue) [d, m] = this.after(...(p.key.split('/').map(Number) as [number, number]));
    while (this.queue.length < this.depth) {
      this.queue.push(this.request(d, m));
      [d, m] = this.after(d, m);
    }
    const r = await mine.reply;
    for (const s of r.skips) {
      if (!this.o.skip.bad.has(s.sample)) {
        this.o.skip.bad.set(s.sample, s.reason);
        this.o.skip.onSkip?.(s.sample, s.reason);
      }
    }
    if (!r.ok) throw rebuildError(r.error);
    const b = batchTensors(r.batch);
    this.stats.batches++;
    this.stats.waitSeconds += Number(process.hrtime.bigint() - t) / 1e9;
    return b;
  }

  async close(): Promise<void> {
    this.queue.length = 0;
    await this.worker.terminate();
  }
}

/** The worker's error on this thread: a UserError stays one (same kind, where, fix, message). */
function rebuildError(e: Extract<PrefetchReply, { ok: false }>['error']): Error {
  if (!e.userError) return new Error(e.message);
  const u = new UserError('', { kind: e.kind });
  Object.assign(u, { message: e.message, where: e.where, fix: e.fix });
  return u;
}
