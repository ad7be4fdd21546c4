/**
 * The data prefetch thread (see prefetch.ts): answers each request with the micro-batch's arrays,
 * transferred to the training thread, or the error that building it raised. Requests are served
 * in order, one at a time; the training thread bounds how many are outstanding.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isUserError } from '../errors';
import { hostBatch, openDataSource, type SkipPolicy } from './batch';
import type { PrefetchReply, PrefetchRequest, PrefetchWorkerData } from './prefetch';

const w = workerData as PrefetchWorkerData;
const src = openDataSource(w.config, w.dims);
const cache = new Map<number, number[]>();
let skips: { sample: number; reason: string }[] = [];
const skip: SkipPolicy = {
  maxBad: w.maxBad,
  bad: new Map(),
  onSkip: (sample, reason) => skips.push({ sample, reason }),
};
const seed = w.config.training.seed;
const gbs = w.config.training.global_batch_size;

parentPort!.on('message', (q: PrefetchRequest) => {
  skips = [];
  let reply: PrefetchReply;
  try {
    const batch = hostBatch(src, w.dims, seed, q.dataStep, gbs, q.micro, w.microSize, cache, skip);
    reply = { id: q.id, ok: true, batch, skips };
    const arrays = [batch.noisy, batch.target, batch.text, batch.timesteps];
    parentPort!.postMessage(
      reply,
      arrays.map((a) => a.buffer as ArrayBuffer),
    );
  } catch (e) {
    const u = isUserError(e);
    reply = {
      id: q.id,
      ok: false,
      skips,
      error: {
        message: (e as Error).message ?? String(e),
        userError: u,
        ...(u ? { kind: e.kind, where: e.where, fix: e.fix } : {}),
      },
    };
    parentPort!.postMessage(reply);
  }
});
