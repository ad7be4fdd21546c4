/**
 * The TTT layers, verified numerically: finite-difference gradients of tttMlp, tttLinear and a
 * whole DiT block; the dual forms of tttMlp and tttLinear against a straightforward primal form
 * whose inner gradients come from autodiff; all five stage lengths; the fast-path matMul against tf.matMul.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { initBackend, tf } from '../../src/backend';
import { loadStageConfig } from '../../src/config/load';
import { modelDims } from '../../src/config/dims';
import { ditBlock, ditForward, ropeForModel, tttLayer, type Params } from '../../src/model/dit';
import { matMul, matMulStats, SMALL_PRODUCT } from '../../src/model/matmul';
import { geluTanh, geluTanhGrad, layerNorm } from '../../src/model/ops';
import { initialParams } from '../../src/model/params';
import {
  tttLinear,
  tttMlp,
  tttMlpReference,
  TTT_LN_EPS,
  type TttLinearInputs,
  type TttMlpInputs,
} from '../../src/model/ttt';
import { rngFor } from '../../src/rng';
import { maxDiff, ROOT } from '../helpers';
import { testBackend } from '../native';

// wasm here; native-ttt.test.ts runs this file again on tensorflow.
before(async () => {
  assert.equal(await initBackend(testBackend()), testBackend());
});

function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  const r = rngFor(seed, 99);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => (2 * r() - 1) * scale),
    shape,
  );
}

/** eta [B,H,NC,K,K] with possibly different rows (as after interleaving) and positive entries. */
function etaTensor(B: number, H: number, NC: number, K: number, seed: number, sameRows: boolean): tf.Tensor {
  const r = rngFor(seed, 7);
  const row = Array.from({ length: B * H * NC * K }, () => 0.05 + 0.1 * r());
  const data = new Float32Array(B * H * NC * K * K);
  for (let g = 0; g < B * H * NC; g++) {
    for (let i = 0; i < K; i++)
      for (let j = 0; j < K; j++) data[(g * K + i) * K + j] = sameRows ? row[g * K + j]! : 0.05 + 0.1 * r();
  }
  return tf.tensor(data, [B, H, NC, K, K]);
}

/** TTT-MLP inputs of shape [B, H, NC, K, D] with inner width F. */
function mlpInputs(seed: number, sameRows: boolean, [B, H, NC, K, D, F] = [1, 2, 3, 4, 3, 5]): TttMlpInputs {
  return {
    XQ: rand([B, H, NC, K, D], seed + 1),
    XK: rand([B, H, NC, K, D], seed + 2),
    XV: rand([B, H, NC, K, D], seed + 3),
    eta: etaTensor(B, H, NC, K, seed + 4, sameRows),
    lnWeight: rand([H, D], seed + 5, 0.5).add(1),
    lnBias: rand([H, D], seed + 6, 0.3),
    W1: rand([B, H, D, F], seed + 7, 0.5),
    b1: rand([B, H, 1, F], seed + 8, 0.2),
    W2: rand([B, H, F, D], seed + 9, 0.5),
    b2: rand([B, H, 1, D], seed + 10, 0.2),
  };
}

/**
 * Finite differences of f along a random direction of each input versus the autodiff directional
 * derivative. Central differences at h and h/2 combined by Richardson extrapolation,
 * (4 D(h/2) - D(h)) / 3, which cancels their h^2 error: the TTT inner loop is curved enough in its
 * weights that plain central differences need an h small enough for float32 rounding of the sum
 * to show (a whole DiT block at h = 3e-3: up to 7e-2 off on wasm, 1.9e-2 on tensorflow; with
 * this at h = 1e-2 both within 9e-3). Relative tolerance 2e-2.
 */
function checkGradients(
  name: string,
  f: (xs: tf.Tensor[]) => tf.Scalar,
  inputs: Record<string, tf.Tensor>,
  h = 1e-2,
): void {
  const names = Object.keys(inputs);
  const xs = names.map((n) => inputs[n]!);
  const grads = tf.grads((...a: tf.Tensor[]) => f(a))(xs);
  names.forEach((n, i) => {
    const v = rand(xs[i]!.shape, 1000 + i);
    const analytic = grads[i]!.mul(v).sum().dataSync()[0]!;
    const central = (step: number): number => {
      const plus = f(xs.map((x, j) => (j === i ? x.add(v.mul(step)) : x))).dataSync()[0]!;
      const minus = f(xs.map((x, j) => (j === i ? x.sub(v.mul(step)) : x))).dataSync()[0]!;
      return (plus - minus) / (2 * step);
    };
    const numeric = (4 * central(h / 2) - central(h)) / 3;
    const err = Math.abs(analytic - numeric) / Math.max(1e-3, Math.abs(numeric), Math.abs(analytic));
    assert.ok(
      err < 2e-2,
      `${name}: d/d${n}: autodiff ${analytic}, finite difference ${numeric} (relative error ${err.toExponential(2)})`,
    );
  });
}

test('tttMlp: finite-difference gradient check for every input', () => {
  const inp = mlpInputs(1, false);
  const R = rand(inp.XQ.shape, 77);
  checkGradients(
    'tttMlp',
    ([XQ, XK, XV, eta, lnWeight, lnBias, W1, b1, W2, b2]) =>
      tttMlp({
        XQ: XQ!,
        XK: XK!,
        XV: XV!,
        eta: eta!,
        lnWeight: lnWeight!,
        lnBias: lnBias!,
        W1: W1!,
        b1: b1!,
        W2: W2!,
        b2: b2!,
      })
        .mul(R)
        .sum() as tf.Scalar,
    { ...inp },
  );
});

test("tttMlp's written-out gradient equals autodiff of the plain form, with and without checkpoint groups", () => {
  // Batch 2 and 4 mini-batches, so that batch axes, carried weights and partial groups all show.
  const inp = mlpInputs(40, false, [2, 2, 4, 4, 3, 5]);
  const names = Object.keys(inp) as (keyof TttMlpInputs)[];
  const R = rand(inp.XQ.shape, 51);
  const run = (f: (x: TttMlpInputs) => tf.Tensor) =>
    tf.valueAndGrads((...xs: tf.Tensor[]) => {
      const x = Object.fromEntries(names.map((n, i) => [n, xs[i]!])) as unknown as TttMlpInputs;
      return f(x).mul(R).sum() as tf.Scalar;
    })(names.map((n) => inp[n]));
  const ref = run(tttMlpReference);
  // The FLOP counter of the benchmarks counts forward products only (a step is its forward x 3).
  const f0 = matMulStats.flops;
  tf.dispose(tttMlp(inp));
  const forwardFlops = matMulStats.flops - f0;
  for (const checkpointGroup of [0, 1, 3]) {
    const f1 = matMulStats.flops;
    const before = tf.memory().numTensors;
    const ours = run((x) => tttMlp(x, { checkpointGroup }));
    assert.equal(matMulStats.flops - f1, forwardFlops, `group ${checkpointGroup}: FLOPs counted`);
    assert.ok(forwardFlops > 0);
    assert.ok(
      Math.abs(ours.value.dataSync()[0]! - ref.value.dataSync()[0]!) <= 1e-5 * Math.abs(ref.value.dataSync()[0]!),
    );
    names.forEach((n, i) => {
      assert.deepEqual(ours.grads[i]!.shape, ref.grads[i]!.shape, n);
      const { diff, scale } = maxDiff(ours.grads[i]!.dataSync(), ref.grads[i]!.dataSync());
      assert.ok(scale > 1e-3, `group ${checkpointGroup}: d/d${n} is not vacuous (max |grad| ${scale})`);
      assert.ok(diff <= 1e-4 * scale, `group ${checkpointGroup}: d/d${n} differs by ${diff} (max |grad| ${scale})`);
    });
    tf.dispose([ours.value, ...ours.grads]);
    // Nothing of the op's own is left behind (its saved tensors are freed after the backward pass).
    assert.equal(tf.memory().numTensors, before, `group ${checkpointGroup}: tensors left behind`);
  }
});

test('tttLinear: finite-difference gradient check for every input', () => {
  const [B, H, NC, K, D] = [1, 2, 3, 4, 3];
  const inp = {
    XQ: rand([B, H, NC, K, D], 21),
    XK: rand([B, H, NC, K, D], 22),
    XV: rand([B, H, NC, K, D], 23),
    eta: etaTensor(B, H, NC, K, 24, false),
    lnWeight: rand([H, D], 25, 0.5).add(1),
    lnBias: rand([H, D], 26, 0.3),
    W1: rand([B, H, D, D], 27, 0.5),
    b1: rand([B, H, 1, D], 28, 0.2),
  };
  const R = rand(inp.XQ.shape, 78);
  checkGradients(
    'tttLinear',
    ([XQ, XK, XV, eta, lnWeight, lnBias, W1, b1]) =>
      tttLinear({ XQ: XQ!, XK: XK!, XV: XV!, eta: eta!, lnWeight: lnWeight!, lnBias: lnBias!, W1: W1!, b1: b1! })
        .mul(R)
        .sum() as tf.Scalar,
    inp,
  );
});

test('the autodiff scan (tttLinear, tttMlpReference) in checkpoint groups gives the gradients it gives without, a last group of one mini-batch included', () => {
  const lin = linearInputs(61, false);
  const mlp = mlpInputs(62, false);
  const cases: [string, Record<string, tf.Tensor>, (x: Record<string, tf.Tensor>, g: number) => tf.Tensor][] = [
    ['tttLinear', { ...lin }, (x, g) => tttLinear(x as unknown as TttLinearInputs, { checkpointGroup: g })],
    ['tttMlpReference', { ...mlp }, (x, g) => tttMlpReference(x as unknown as TttMlpInputs, { checkpointGroup: g })],
  ];
  for (const [name, inp, f] of cases) {
    const names = Object.keys(inp);
    const R = rand(inp.XQ!.shape, 63);
    const grads = (g: number): Float32Array[] =>
      tf
        .grads(
          (...xs: tf.Tensor[]) =>
            f(Object.fromEntries(names.map((n, i) => [n, xs[i]!])), g)
              .mul(R)
              .sum() as tf.Scalar,
        )(names.map((n) => inp[n]!))
        .map((t) => t.dataSync() as Float32Array);
    const base = grads(0);
    for (const g of [1, 2]) {
      // 3 mini-batches: groups of 2 leave a last group of one.
      grads(g).forEach((a, i) => {
        const err = maxRelErr(a, base[i]!);
        assert.ok(err < 1e-5, `${name}, groups of ${g}: d/d${names[i]} differs by ${err}`);
      });
    }
  }
});

/**
 * Primal form, written the plain way: for each query i of a mini-batch, take one gradient step
 * on the inner weights (W1, b1[, W2, b2]) over the mini-batch's tokens j, weighted by eta[i, j],
 * with the inner gradients from autodiff of 1/2 ||LN(f(x_j)) - (v_j - k_j)||^2; apply the updated
 * weights to q_i. Carry the weights updated with the last row of eta to the next mini-batch.
 */
function primal(
  inp: TttLinearInputs,
  weights: tf.Tensor[],
  inner: (x: tf.Tensor, w: tf.Tensor[]) => tf.Tensor,
): Float32Array {
  const [B, H, NC, K, D] = inp.XQ.shape as number[];
  const out = new Float32Array(B! * H! * NC! * K! * D!);
  const at = (t: tf.Tensor, ...idx: number[]): tf.Tensor => {
    let x = t;
    for (const i of idx) x = x.gather([i], 0).squeeze([0]);
    return x;
  };
  for (let b = 0; b < B!; b++) {
    for (let h = 0; h < H!; h++) {
      let W: tf.Tensor[] = weights.map((w) => at(w, b, h));
      const lnW = at(inp.lnWeight, h);
      const lnB = at(inp.lnBias, h);
      for (let c = 0; c < NC!; c++) {
        const q = at(inp.XQ, b, h, c);
        const k = at(inp.XK, b, h, c);
        const v = at(inp.XV, b, h, c);
        const eta = at(inp.eta, b, h, c).arraySync() as number[][];
        // Per-token inner gradients, by autodiff.
        const tokenGrads: tf.Tensor[][] = [];
        for (let j = 0; j < K!; j++) {
          const kj = k.slice([j, 0], [1, -1]);
          const tj = v.slice([j, 0], [1, -1]).sub(kj);
          tokenGrads.push(
            tf.grads(
              (...w: tf.Tensor[]) =>
                layerNorm(inner(kj, w), lnW, lnB, TTT_LN_EPS).sub(tj).square().sum().mul(0.5) as tf.Scalar,
            )(W),
          );
        }
        const step = (row: number[]): tf.Tensor[] =>
          W.map((w, p) => tokenGrads.reduce((acc, g, j) => acc.sub(g[p]!.mul(row[j]!)), w));
        for (let i = 0; i < K!; i++) {
          const wi = step(eta[i]!);
          const y = q.slice([i, 0], [1, -1]).add(layerNorm(inner(q.slice([i, 0], [1, -1]), wi), lnW, lnB, TTT_LN_EPS));
          out.set(y.dataSync(), (((b * H! + h) * NC! + c) * K! + i) * D!);
        }
        W = step(eta[K! - 1]!);
      }
    }
  }
  return out;
}

/** TTT-MLP's inner model: gelu_tanh(x·W1 + b1)·W2 + b2. */
function primalMlp(inp: TttMlpInputs): Float32Array {
  return primal(inp, [inp.W1, inp.b1, inp.W2, inp.b2], (x, w) =>
    geluTanh(x.matMul(w[0]!).add(w[1]!)).matMul(w[2]!).add(w[3]!),
  );
}

/** TTT-Linear's inner model: x·W1 + b1. */
function primalLinear(inp: TttLinearInputs): Float32Array {
  return primal(inp, [inp.W1, inp.b1], (x, w) => x.matMul(w[0]!).add(w[1]!));
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return m;
}

test('tttMlp dual form equals the primal form (identical and differing eta rows)', () => {
  for (const sameRows of [true, false]) {
    const inp = mlpInputs(3, sameRows);
    const dual = tttMlp(inp).dataSync() as Float32Array;
    const primal = primalMlp(inp);
    const err = maxRelErr(dual, primal);
    assert.ok(err < 1e-4, `sameRows=${sameRows}: max relative difference ${err}`);
  }
});

function linearInputs(seed: number, sameRows: boolean): TttLinearInputs {
  const [B, H, NC, K, D] = [1, 2, 3, 4, 3];
  return {
    XQ: rand([B, H, NC, K, D], seed + 1),
    XK: rand([B, H, NC, K, D], seed + 2),
    XV: rand([B, H, NC, K, D], seed + 3),
    eta: etaTensor(B, H, NC, K, seed + 4, sameRows),
    lnWeight: rand([H, D], seed + 5, 0.5).add(1),
    lnBias: rand([H, D], seed + 6, 0.3),
    W1: rand([B, H, D, D], seed + 7, 0.5),
    b1: rand([B, H, 1, D], seed + 8, 0.2),
  };
}

test('tttLinear dual form equals the primal form (identical and differing eta rows)', () => {
  for (const sameRows of [true, false]) {
    const inp = linearInputs(5, sameRows);
    const dual = tttLinear(inp).dataSync() as Float32Array;
    const primalOut = primalLinear(inp);
    const err = maxRelErr(dual, primalOut);
    assert.ok(err < 1e-4, `sameRows=${sameRows}: max relative difference ${err}`);
    // Not vacuous: the inner update changes the output (the primal form without any step differs).
    const noStep = primalLinear({ ...inp, eta: tf.zerosLike(inp.eta) });
    assert.ok(maxRelErr(noStep, primalOut) > 1e-3, `sameRows=${sameRows}: the inner step matters`);
  }
});

function tinyParams(stage: string): {
  d: ReturnType<typeof modelDims>;
  P: Params;
  rope: ReturnType<typeof ropeForModel>;
} {
  const st = loadStageConfig(path.join(ROOT, `configs/train/tiny/${stage}.toml`));
  const d = modelDims(st.config);
  const P: Params = initialParams(d, 5);
  const rope = ropeForModel(d);
  return { d, P, rope };
}

test('a whole DiT block: finite-difference gradient check of its inputs and TTT/attention weights', () => {
  const { d, P, rope } = tinyParams('9s');
  const nL = d.segments * d.textLength;
  const Nv = d.latentFrames * d.tokensPerFrame;
  const vid = rand([1, Nv, d.width], 31, 0.5);
  const txt = rand([1, nL, d.width], 32, 0.5);
  const temb = rand([1, d.timeEmbedDim], 33, 0.5);
  const Rv = rand([1, Nv, d.width], 34);
  const Rt = rand([1, nL, d.width], 35);
  const names = [
    'dit.layers.0.seq_modeling_block.ssm.ttt.W1',
    'dit.layers.0.seq_modeling_block.ssm.ttt.wk.weight',
    'dit.layers.0.seq_modeling_block.q.weight',
    'dit.layers.0.seq_modeling_block.forward_ssm_gating_video.gating_alpha',
    'dit.layers.0.pre_seq_adaLN_modulation.1.weight',
  ];
  // Larger gates so that the TTT branches carry weight in the check.
  for (const g of ['forward', 'backward'])
    for (const k of ['text', 'video'])
      P[`dit.layers.0.seq_modeling_block.${g}_ssm_gating_${k}.gating_alpha`] = tf.fill([d.width], 0.8);
  checkGradients(
    'ditBlock',
    ([v, t, e, ...ws]) => {
      const Q: Params = { ...P };
      names.forEach((n, i) => (Q[n] = ws[i]!));
      const o = ditBlock(Q, 0, v!, t!, e!, d, rope);
      return o.vid.mul(Rv).sum().add(o.txt.mul(Rt).sum()) as tf.Scalar;
    },
    { vid, txt, temb, ...Object.fromEntries(names.map((n) => [n, P[n]!])) },
  );
});

test("forward and backward at all five stage lengths at tiny width: the paper's lengths, whole-sequence outputs, every gradient", () => {
  const lengths: Record<string, [number, number]> = {
    '3s': [13, 1],
    '9s': [37, 3],
    '18s': [73, 6],
    '30s': [121, 10],
    '63s': [253, 21],
  };
  for (const stage of ['3s', '9s', '18s', '30s', '63s']) {
    const { d, P, rope } = tinyParams(stage);
    // The stage's length: latent frames (16 fps, 4x temporal compression) and 3-second segments.
    assert.deepEqual([d.latentFrames, d.segments], lengths[stage], `${stage}: latent frames and segments`);
    assert.equal(d.seqLen, d.segments * d.textLength + d.latentFrames * d.tokensPerFrame);
    assert.equal(d.seqLen % d.miniBatch, 0, `${stage}: whole TTT mini-batches`);
    const video = rand([1, d.latentFrames, d.inChannels, d.latentHeight, d.latentWidth], 41);
    const text = rand([1, d.segments, d.textLength, d.textDim], 42);
    const timesteps = tf.tensor1d([321]);
    // The output covers the whole video, and its first frame depends on the last one: the TTT
    // layers run over the whole sequence (local attention alone stays inside 3-second segments).
    const out = ditForward(P, d, { video, text, timesteps }, rope);
    assert.deepEqual(out.shape, video.shape, `${stage}: one prediction per input latent`);
    const F = d.latentFrames;
    const lastChanged = video.add(
      tf
        .oneHot([F - 1], F)
        .reshape([1, F, 1, 1, 1])
        .mul(0.5),
    );
    const out2 = ditForward(P, d, { video: lastChanged, text, timesteps }, rope);
    const firstFrameChange = out2
      .slice([0, 0], [1, 1])
      .sub(out.slice([0, 0], [1, 1]))
      .abs()
      .max()
      .dataSync()[0]!;
    assert.ok(firstFrameChange > 1e-6, `${stage}: frame 1 depends on frame ${F} (change ${firstFrameChange})`);
    if (stage === '63s') {
      // The control: with every TTT gate at 0, local attention alone (2 layers, 21 segments) does
      // not carry frame 63 back to frame 1; so the dependence above is the TTT layers' reach.
      const gated: Params = { ...P };
      for (const n of Object.keys(P).filter((k) => k.endsWith('.gating_alpha'))) gated[n] = tf.zerosLike(P[n]!);
      const a = ditForward(gated, d, { video, text, timesteps }, rope);
      const b = ditForward(gated, d, { video: lastChanged, text, timesteps }, rope);
      const local = b
        .slice([0, 0], [1, 1])
        .sub(a.slice([0, 0], [1, 1]))
        .abs()
        .max()
        .dataSync()[0]!;
      assert.equal(local, 0, '63s: without TTT, frame 1 does not see frame 253');
      tf.dispose([a, b]);
    }
    tf.dispose([out, out2, lastChanged]);
    const names = Object.keys(P);
    const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => {
      const Q: Params = {};
      names.forEach((n, i) => (Q[n] = xs[i]!));
      return ditForward(Q, d, { video, text, timesteps }, rope).square().mean() as tf.Scalar;
    })(names.map((n) => P[n]!));
    assert.ok(Number.isFinite(value.dataSync()[0]!), `${stage}: finite loss`);
    const norms = grads.map((g) => g.square().sum().dataSync()[0]!);
    assert.ok(norms.every(Number.isFinite), `${stage}: finite gradients`);
    // The last block's text stream is discarded after it, and its backward-TTT text gate feeds only
    // that stream: its gradient is exactly zero (as in the PyTorch model). Every other parameter gets one.
    const lastTextGate = `dit.layers.${d.layers - 1}.seq_modeling_block.backward_ssm_gating_text.gating_alpha`;
    assert.deepEqual(
      names.filter((_, i) => !(norms[i]! > 0)),
      [lastTextGate],
      `${stage}: every parameter gets a gradient`,
    );
    tf.dispose([value, ...grads, video, text, timesteps, ...Object.values(P)]);
  }
});

test('a sequence length that breaks the mini-batch rule is a clear error', () => {
  const { d, P, rope } = tinyParams('3s');
  const x = rand([1, d.seqLen - 4, d.width], 51);
  assert.throws(
    () => tttLayer(P, 'dit.layers.0.seq_modeling_block.ssm.ttt', x, d, rope),
    /TTT sequence length 60 is not a multiple of the mini-batch size 64/,
  );
});

test('the fast-path matMul equals tf.matMul, values and gradients, with transposes', () => {
  for (const [tA, tB] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    const [Bt, M, K, N] = [3, 64, 48, 40];
    assert.ok(M * K * N >= SMALL_PRODUCT);
    const a = rand(tA ? [Bt, K, M] : [Bt, M, K], 61);
    const b = rand(tB ? [Bt, N, K] : [Bt, K, N], 62);
    const R = rand([Bt, M, N], 63);
    const ours = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => matMul(x, y, tA, tB).mul(R).sum() as tf.Scalar)([
      a,
      b,
    ]);
    const ref = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB).mul(R).sum() as tf.Scalar)([
      a,
      b,
    ]);
    for (let i = 0; i < 2; i++) {
      const err = maxRelErr(ours.grads[i]!.dataSync() as Float32Array, ref.grads[i]!.dataSync() as Float32Array);
      assert.ok(err < 1e-4, `transA=${tA} transB=${tB}: gradient ${i} differs by ${err}`);
    }
    assert.ok(Math.abs(ours.value.dataSync()[0]! - ref.value.dataSync()[0]!) < 1e-2);
  }
});

test('remat gives the same gradients with less peak tensor memory', async () => {
  const { peakBytes } = await import('../../src/memory');
  const { d, P, rope } = tinyParams('9s');
  const video = rand([1, d.latentFrames, d.inChannels, d.latentHeight, d.latentWidth], 71);
  const text = rand([1, d.segments, d.textLength, d.textDim], 72);
  const timesteps = tf.tensor1d([500]);
  const names = Object.keys(P);
  const run = async (remat: typeof d.remat) => {
    const dd = { ...d, remat };
    return peakBytes(() =>
      tf.tidy(() => {
        const { grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => {
          const Q: Params = {};
          names.forEach((n, i) => (Q[n] = xs[i]!));
          return ditForward(Q, dd, { video, text, timesteps }, rope).square().mean() as tf.Scalar;
        })(names.map((n) => P[n]!));
        return grads.map((g) => g.dataSync() as Float32Array);
      }),
    );
  };
  const off = {
    layerGroup: 0,
    attention: false,
    mlp: false,
    forwardSsm: false,
    reverseSsm: false,
    seqBlock: false,
    scanGroup: 0,
  };
  const base = await run(off);
  for (const remat of [
    { ...off, layerGroup: 1 },
    { ...off, attention: true, mlp: true, forwardSsm: true, reverseSsm: true },
    { ...off, mlp: true, seqBlock: true },
    { ...off, scanGroup: 2 },
  ]) {
    const r = await run(remat);
    names.forEach((n, i) => {
      const err = maxRelErr(r.result[i]!, base.result[i]!);
      assert.ok(err < 1e-4, `${JSON.stringify(remat)}: gradient of ${n} differs by ${err}`);
    });
    assert.ok(
      r.peakBytes < base.peakBytes,
      `${JSON.stringify(remat)}: peak ${r.peakBytes} B < ${base.peakBytes} B without remat`,
    );
  }
});

test('geluTanh and its derivative match the tanh formula of the paper code', () => {
  const xs = Array.from({ length: 201 }, (_, i) => (i - 100) / 12.5); // -8 .. 8
  const k = Math.sqrt(2 / Math.PI);
  const u = (x: number): number => k * (x + 0.044715 * x ** 3);
  const ref = xs.map((x) => 0.5 * x * (1 + Math.tanh(u(x))));
  const refGrad = xs.map(
    (x) => 0.5 * (1 + Math.tanh(u(x))) + 0.5 * x * (1 - Math.tanh(u(x)) ** 2) * k * (1 + 3 * 0.044715 * x * x),
  );
  const x = tf.tensor1d(xs);
  const y = Array.from(geluTanh(x).dataSync());
  const g = Array.from(geluTanhGrad(x).dataSync());
  const auto = Array.from(
    tf
      .grad((t: tf.Tensor) => geluTanh(t).sum())(x)
      .dataSync(),
  );
  // The second derivative (the outer backward pass through the TTT inner gradient), from the tanh formula:
  // d/dx [0.5 (1 + t) + 0.5 x (1 - t^2) u'] = (1 - t^2) u' - x t (1 - t^2) u'^2 + 0.5 x (1 - t^2) u''.
  const refCurv = xs.map((xv) => {
    const t = Math.tanh(u(xv));
    const u1 = k * (1 + 3 * 0.044715 * xv * xv);
    const u2 = 6 * k * 0.044715 * xv;
    return (1 - t * t) * u1 - xv * t * (1 - t * t) * u1 * u1 + 0.5 * xv * (1 - t * t) * u2;
  });
  const curv = Array.from(
    tf
      .grad((t: tf.Tensor) => geluTanhGrad(t).sum())(x)
      .dataSync(),
  );
  xs.forEach((xi, i) => {
    assert.ok(
      Math.abs(y[i]! - ref[i]!) <= 1e-5 * Math.max(1, Math.abs(ref[i]!)),
      `gelu(${xi}) = ${y[i]}, expected ${ref[i]}`,
    );
    assert.ok(Math.abs(g[i]! - refGrad[i]!) <= 1e-5, `gelu'(${xi}) = ${g[i]}, expected ${refGrad[i]}`);
    assert.ok(Math.abs(auto[i]! - refGrad[i]!) <= 1e-5, `autodiff gelu'(${xi}) = ${auto[i]}, expected ${refGrad[i]}`);
    assert.ok(Math.abs(curv[i]! - refCurv[i]!) <= 1e-5, `gelu''(${xi}) = ${curv[i]}, expected ${refCurv[i]}`);
  });
});
