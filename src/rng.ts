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

/** The next state and 32-bit output of mulberry32 (Tommy Ettinger's, public domain) from state `a`. */
function mulberry32(a: number): number {
  let t = a;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return t ^ (t >>> 14);
}
const MULBERRY_STEP = 0x6d2b79f5;

/** mulberry32 generator seeded from hash32(...key): uniform in [0, 1). */
export function rngFor(...key: number[]): () => number {
  let a = hash32(...key);
  return () => {
    a = (a + MULBERRY_STEP) | 0;
    return (mulberry32(a) >>> 0) / 4294967296;
  };
}

/*
 * Standard normals by the ziggurat method (G. Marsaglia and W. W. Tsang, "The Ziggurat Method for
 * Generating Random Variables", J. Stat. Softw. 5(8), 2000), 256 layers. Each 32-bit draw gives
 * the layer (its low 8 bits) and a signed 24-bit value (its high 24 bits, float32's precision):
 * about 99% of normals cost one draw, a multiply and a compare, with no log or trigonometry.
 *
 * Hand-written rather than a library: the noise of a 63 s sample is 22 M normals per training
 * sample, drawn on the data thread beside training. Measured on this project's 2-core machine
 * for 22 M normals: Box-Muller with this generator 540 ms, @stdlib/random-base-improved-ziggurat
 * driven by it 330 ms (a call through its generic interface per draw, and 219 packages), this
 * 170-240 ms, and fused into noiseAndTarget's pass (no noise array) 180-330 ms for both.
 * test/unit/rng.test.ts checks the distribution (moments, tail mass, a chi-square over bins).
 */
const ZIG_R = 3.6541528853610088; // where the base layer's tail starts
const ZIG_V = 4.92867323399e-3; // the area of each layer
const ZIG_SCALE = 8388608; // 2^23: the signed 24-bit values
const ZIG_K = new Int32Array(256);
const ZIG_W = new Float64Array(256);
const ZIG_F = new Float64Array(256);
{
  let dn = ZIG_R;
  let tn = dn;
  const q = ZIG_V / Math.exp(-0.5 * dn * dn);
  ZIG_K[0] = Math.floor((dn / q) * ZIG_SCALE);
  ZIG_K[1] = 0;
  ZIG_W[0] = q / ZIG_SCALE;
  ZIG_W[255] = dn / ZIG_SCALE;
  ZIG_F[0] = 1;
  ZIG_F[255] = Math.exp(-0.5 * dn * dn);
  for (let i = 254; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(ZIG_V / dn + Math.exp(-0.5 * dn * dn)));
    ZIG_K[i + 1] = Math.floor((dn / tn) * ZIG_SCALE);
    tn = dn;
    ZIG_F[i] = Math.exp(-0.5 * dn * dn);
    ZIG_W[i] = dn / ZIG_SCALE;
  }
}

/** A keyed generator of standard normals: a pure function of `key` and of how many were drawn. */
export function normalSource(...key: number[]): () => number {
  let a = hash32(...key);
  const next = (): number => {
    a = (a + MULBERRY_STEP) | 0;
    return mulberry32(a);
  };
  /** Uniform in (0, 1): never 0, for the logarithms. */
  const open01 = (): number => ((next() >>> 0) + 0.5) / 4294967296;
  /** The rare case: outside the layer's rectangle, or in the base layer's tail. */
  const slow = (draw: number): number => {
    let h = draw;
    for (;;) {
      const i = h & 255;
      const v = h >> 8;
      const x = v * ZIG_W[i]!;
      if (i === 0) {
        // The tail beyond ZIG_R (Marsaglia 1964).
        let y: number;
        let z: number;
        do {
          z = -Math.log(open01()) / ZIG_R;
          y = -Math.log(open01());
        } while (y + y < z * z);
        return v > 0 ? ZIG_R + z : -ZIG_R - z;
      }
      if (ZIG_F[i]! + open01() * (ZIG_F[i - 1]! - ZIG_F[i]!) < Math.exp(-0.5 * x * x)) return x;
      h = next();
      const j = h & 255;
      const w = h >> 8;
      if (Math.abs(w) < ZIG_K[j]!) return w * ZIG_W[j]!;
    }
  };
  return () => {
    const h = next();
    const i = h & 255;
    const v = h >> 8;
    return Math.abs(v) < ZIG_K[i]! ? v * ZIG_W[i]! : slow(h);
  };
}

/** n standard-normal draws from a keyed generator (normalSource). */
export function normals(n: number, ...key: number[]): Float32Array {
  const g = normalSource(...key);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = g();
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
