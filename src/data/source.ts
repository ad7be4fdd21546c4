/**
 * The sample stream: which sample fills each position of the training stream (a seeded
 * permutation per epoch), and the policy for unusable samples. A pure function of (seed,
 * position), so a resumed run reads exactly the samples of an uninterrupted one.
 */
import { UserError } from '../errors';
import { permutation, STREAM } from '../rng';

/** Bad samples: skipped with a warning up to `maxBad`, then the run fails with the list. */
export interface SkipPolicy {
  maxBad: number;
  /** Sample id -> why it is unusable ("file:line: ..."). */
  bad: Map<number, string>;
  onSkip?: (id: number, reason: string) => void;
}

export interface DataSource {
  size: number;
  /**
   * Sample `n`, in new arrays that the caller owns: hostBatch writes x_t over the latent and
   * transfers both arrays to the training thread (a source must not keep or share them).
   */
  sample(n: number): { video: Float32Array; text: Float32Array };
}

/** Sample id at global position `pos` of the stream: a seeded permutation per epoch. */
export function sampleAt(pos: number, size: number, seed: number, cache: Map<number, number[]> = new Map()): number {
  const epoch = Math.floor(pos / size);
  let perm = cache.get(epoch);
  if (!perm) {
    perm = permutation(size, seed, STREAM.order, epoch);
    cache.clear();
    cache.set(epoch, perm);
  }
  return perm[pos % size]!;
}

/**
 * The sample at stream position `pos`; a bad one is replaced by the sample at the same position
 * of the next epoch's order (deterministic, so resumed runs skip identically).
 */
export function readSample(
  src: DataSource,
  pos: number,
  seed: number,
  cache: Map<number, number[]> | undefined,
  skip: SkipPolicy | undefined,
): { id: number; s: { video: Float32Array; text: Float32Array } } {
  for (let attempt = 0; ; attempt++) {
    const id = sampleAt(pos + attempt * src.size, src.size, seed, cache);
    try {
      return { id, s: src.sample(id) };
    } catch (e) {
      if (!skip || !(e instanceof UserError) || e.kind !== 'DataError') throw e;
      if (!skip.bad.has(id)) {
        skip.bad.set(id, e.message);
        skip.onSkip?.(id, e.message);
      }
      if (skip.bad.size > skip.maxBad || skip.bad.size >= src.size) {
        const list = [...skip.bad.values()].map((r) => `  - ${r}`).join('\n');
        throw new UserError(
          `${skip.bad.size} bad samples, more than training.max_bad_samples = ${skip.maxBad}:\n${list}\n`,
          {
            kind: 'DataError',
            fix: 'repair or remove these samples, or raise training.max_bad_samples',
          },
        );
      }
    }
  }
}
