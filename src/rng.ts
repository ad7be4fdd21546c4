/**
 * Counter-based randomness: every random number is a pure function of (seed, stream, indices),
 * so a resumed run draws exactly what an uninterrupted one would, with no RNG state to save.
 */

/** 32-bit mix of integers (murmur3 finaliser over a running hash). */
export function hash32(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    let k = Math.imul(x | 0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32 generator seeded from hash32(...key). */
export function rngFor(...key: number[]): () => number {
  let a = hash32(...key);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard-normal draws (Box-Muller) from a keyed generator. */
export function normals(n: number, ...key: number[]): Float32Array {
  const r = rngFor(...key);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(r(), 1e-12);
    const u2 = r();
    const m = Math.sqrt(-2 * Math.log(u1));
    out[i] = m * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** A seeded permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, ...key: number[]): number[] {
  const r = rngFor(...key);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** Stream identifiers, so that different uses of one seed never share numbers. */
export const STREAM = { init: 1, data: 2, noise: 3, timestep: 4, order: 5, validation: 6 } as const;
