/**
 * The keyed generators of src/rng.ts: pure functions of their key, and normalSource's ziggurat
 * draws standard normals (moments, the mass of the tail beyond the base layer, and a chi-square
 * test over bins of equal probability, the rare slow-path regions included). Fixed keys, so the
 * outcome is the same on every run; the bounds are about 5 standard errors wide.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalSource, normals, rngFor } from '../../src/rng';

/** The standard normal CDF (Abramowitz & Stegun 26.2.17: absolute error < 7.5e-8). */
function phi(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.2316419 * z);
  const poly = t * (0.31938153 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))));
  const upper = (Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI)) * poly;
  return x >= 0 ? 1 - upper : upper;
}

/** The x with phi(x) = p, by bisection. */
function quantile(p: number): number {
  let lo = -10;
  let hi = 10;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (phi(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

const N = 4_000_000;

test('normalSource and rngFor are pure functions of their key', () => {
  const a = normals(1000, 7, 3, 1, 0);
  const g = normalSource(7, 3, 1, 0);
  assert.deepEqual(
    a,
    Float32Array.from({ length: 1000 }, () => g()),
    'normals(n, key) = the first n draws of normalSource(key)',
  );
  assert.deepEqual(normals(1000, 7, 3, 1, 0), a, 'the same key draws the same numbers');
  const b = normals(1000, 7, 3, 1, 1);
  assert.ok(
    a.some((x, i) => x !== b[i]),
    'another key draws other numbers',
  );
  const u = rngFor(5, 6);
  const v = rngFor(5, 6);
  for (let i = 0; i < 100; i++) assert.equal(u(), v());
});

test('normalSource draws standard normals: moments, tail mass and a chi-square over 64 equiprobable bins', () => {
  const g = normalSource(11, 22, 33);
  const BINS = 64;
  const edges = Array.from({ length: BINS - 1 }, (_, i) => quantile((i + 1) / BINS));
  const counts = new Float64Array(BINS);
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let s4 = 0;
  let beyondR = 0; // |x| > 3.6541528853610088: the base layer's tail (the slow path)
  let beyond45 = 0;
  for (let i = 0; i < N; i++) {
    const x = g();
    s1 += x;
    s2 += x * x;
    s3 += x * x * x;
    s4 += x * x * x * x;
    if (Math.abs(x) > 3.6541528853610088) beyondR++;
    if (Math.abs(x) > 4.5) beyond45++;
    // Binary search over the edges.
    let lo = 0;
    let hi = BINS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (x < edges[mid]!) hi = mid;
      else lo = mid + 1;
    }
    counts[lo]!++;
  }
  const mean = s1 / N;
  const variance = s2 / N - mean * mean;
  // Standard errors: mean 1/sqrt(N), variance sqrt(2/N), third moment sqrt(15/N), fourth sqrt(96/N).
  assert.ok(Math.abs(mean) < 5 / Math.sqrt(N), `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / N), `variance ${variance}`);
  assert.ok(Math.abs(s3 / N) < 5 * Math.sqrt(15 / N), `third moment ${s3 / N}`);
  assert.ok(Math.abs(s4 / N - 3) < 5 * Math.sqrt(96 / N), `fourth moment ${s4 / N}`);
  const expectTail = (p: number) => N * 2 * (1 - phi(p));
  for (const [count, at] of [
    [beyondR, 3.6541528853610088],
    [beyond45, 4.5],
  ] as const) {
    const e = expectTail(at);
    assert.ok(Math.abs(count - e) < 5 * Math.sqrt(e), `|x| > ${at}: ${count} draws, ${e.toFixed(1)} expected`);
  }
  const expected = N / BINS;
  const chi2 = [...counts].reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
  // 63 degrees of freedom: mean 63, standard deviation 11.2; 120 is beyond the 1e-6 quantile.
  assert.ok(chi2 < 120, `chi-square over ${BINS} bins: ${chi2.toFixed(1)}`);
});
