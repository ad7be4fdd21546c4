/**
 * TTT-Video-DiT forward pass (CogVideoX blocks with local attention per 3-second segment and a
 * bidirectional, gated TTT layer). Pure function of a parameter map and inputs; parameters use
 * the layouts of params.ts (linear weights [in, out]). See README "Model" for the data flow.
 *
 *   video [B,F,C,H,W] --patchify--> vid [B, F*P, D]      text [B,n,L,Dt] --text_proj--> txt [B, n*L, D]
 *   per layer: adaLN -> local attention (text_i + 13 frames, shared frame averaged)
 *              -> A + tanh(a_fwd)*TTT(A) -> Z + tanh(a_bwd)*rev(TTT(rev(Z)))   (gated residuals)
 *              -> gated residual, adaLN -> MLP (gelu tanh) -> gated residual
 *   final: transformer_norm, adaLN final norm, linear, unpatchify -> v prediction [B,F,C,H,W]
 */
import { tf } from '../backend';
import { matMul } from './matmul';
import type { ModelDims } from './dims';
import { geluTanh, layerNorm, linear, silu, splitAlong } from './ops';
import { applyRope, ropeTables } from './rope';
import { recomputed } from './remat';
import { tttLinear, tttMlp } from './ttt';
import { FRAMES_PER_SEGMENT, SEGMENT_STRIDE } from '../shared/stages';

export type { Params } from './remat';
import type { Params } from './remat';

const LN_EPS = 1e-6;

export interface DitInputs {
  /** Noisy latent video [B, F, C, H, W]. */
  video: tf.Tensor;
  /** Text chunk embeddings [B, n, L, Dt]. */
  text: tf.Tensor;
  /** DDPM timestep indices as floats [B]. */
  timesteps: tf.Tensor;
}

/** Rotary tables laid out for the two places they are used. */
export interface RopeTables {
  rot: tf.Tensor;
  /** Attention window [L + 13P, hd]: identity rows for text, window-local positions for video. */
  attnCos: tf.Tensor;
  attnSin: tf.Tensor;
  /** TTT sequence in interleaved order [S, 1, hd]: identity for text, global positions for video. */
  tttCos: tf.Tensor;
  tttSin: tf.Tensor;
}

/** The stage's rotary tables, in the layouts the model needs. */
export function ropeForModel(d: ModelDims): RopeTables {
  return tf.tidy(() => {
    // Global video table (frame, row, column); tidy disposes it once the layouts are built.
    const rope = ropeTables(d.latentFrames, d.gridH, d.gridW, d.headDim, d.ropeTheta);
    const hd = d.headDim;
    const win = FRAMES_PER_SEGMENT * d.tokensPerFrame;
    const nL = d.segments * d.textLength;
    const attnCos = tf.concat([tf.ones([d.textLength, hd]), rope.cos.slice([0, 0], [win, hd])], 0);
    const attnSin = tf.concat([tf.zeros([d.textLength, hd]), rope.sin.slice([0, 0], [win, hd])], 0);
    const tttCos = interleave(tf.concat([tf.ones([nL, hd]), rope.cos], 0), 0, d).reshape([-1, 1, hd]);
    const tttSin = interleave(tf.concat([tf.zeros([nL, hd]), rope.sin], 0), 0, d).reshape([-1, 1, hd]);
    return { rot: rope.rot.clone(), attnCos, attnSin, tttCos, tttSin };
  });
}

/** The tables of RopeTables, in one order. */
export const ROPE_KEYS = [
  'rot',
  'attnCos',
  'attnSin',
  'tttCos',
  'tttSin',
] as const satisfies readonly (keyof RopeTables)[];

export function disposeRopeTables(r: RopeTables): void {
  for (const k of ROPE_KEYS) r[k].dispose();
}

function get(P: Params, name: string): tf.Tensor {
  const t = P[name];
  if (!t) throw new Error(`missing parameter ${name}`);
  return t;
}

/** Sinusoidal embedding of size D, cos first, frequencies exp(-ln(10000) i / (D/2)). */
export function timestepEmbedding(t: tf.Tensor, dim: number): tf.Tensor {
  return tf.tidy(() => {
    const half = dim / 2;
    const freqs = tf.tensor1d(Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half)));
    const args = t.reshape([-1, 1]).mul(freqs.reshape([1, half]));
    return tf.concat([args.cos(), args.sin()], 1);
  });
}

function patchify(x: tf.Tensor, d: ModelDims): tf.Tensor {
  const [B, F] = x.shape as number[];
  const p = d.patch;
  return x
    .reshape([B! * F!, d.inChannels, d.gridH, p, d.gridW, p])
    .transpose([0, 2, 4, 1, 3, 5])
    .reshape([B!, F! * d.tokensPerFrame, d.inChannels * p * p]);
}

function unpatchify(x: tf.Tensor, d: ModelDims, B: number, F: number): tf.Tensor {
  const p = d.patch;
  return x
    .reshape([B * F, d.gridH, d.gridW, d.outChannels, p, p])
    .transpose([0, 3, 1, 4, 2, 5])
    .reshape([B, F, d.outChannels, d.latentHeight, d.latentWidth]);
}

/** Splits [B, S, H*hd] into heads [B, H, S, hd]. */
function toHeads(x: tf.Tensor, d: ModelDims): tf.Tensor {
  const [B, S] = x.shape as number[];
  return x.reshape([B!, S!, d.heads, d.headDim]).transpose([0, 2, 1, 3]);
}

function fromHeads(x: tf.Tensor, d: ModelDims): tf.Tensor {
  const [B, , S] = x.shape as number[];
  return x.transpose([0, 2, 1, 3]).reshape([B!, S!, d.width]);
}

function sliceAxis(x: tf.Tensor, axis: number, begin: number, size: number): tf.Tensor {
  const b = x.shape.map(() => 0);
  const s = x.shape.map(() => -1);
  b[axis] = begin;
  s[axis] = size;
  return x.slice(b, s);
}

/** Local attention over each 3-second window: text chunk i + latent frames [STRIDE·i, STRIDE·i + FRAMES_PER_SEGMENT). */
function localAttention(
  P: Params,
  pre: string,
  vin: tf.Tensor,
  tin: tf.Tensor,
  d: ModelDims,
  rope: RopeTables,
): { vid: tf.Tensor; txt: tf.Tensor } {
  const B = vin.shape[0]!;
  const n = d.segments;
  const L = d.textLength;
  const Pf = d.tokensPerFrame;
  const win = FRAMES_PER_SEGMENT * Pf;
  // Window i's frames are [shared_i | inner_i | shared_i+1] (consecutive windows share
  // FRAMES_PER_SEGMENT - SEGMENT_STRIDE frames). The pieces come from one tf.split each, whose
  // gradient is one concat (a slice per piece would make each piece's gradient a zero-padded
  // copy of the whole input: quadratic in the number of windows).
  const shared = (FRAMES_PER_SEGMENT - SEGMENT_STRIDE) * Pf;
  const inner = SEGMENT_STRIDE * Pf - shared;
  const texts = splitAlong(tin, n, 1);
  const frames = tf.split(vin, [shared, ...Array.from({ length: n }, () => [inner, shared]).flat()], 1);
  const seqs = Array.from({ length: n }, (_, i) =>
    tf.concat([texts[i]!, frames[2 * i]!, frames[2 * i + 1]!, frames[2 * i + 2]!], 1),
  );
  const Sw = L + win;
  const seq = tf.stack(seqs, 0).reshape([n * B, Sw, d.width]);
  const qk = (name: 'q' | 'k'): tf.Tensor => {
    const h = toHeads(linear(seq, get(P, `${pre}.${name}.weight`), get(P, `${pre}.${name}.bias`)), d);
    const normed = layerNorm(h, get(P, `${pre}.${name}_norm.weight`), get(P, `${pre}.${name}_norm.bias`), LN_EPS);
    return applyRope(normed, rope.attnCos, rope.attnSin, rope.rot);
  };
  // The 1/sqrt(head dim) scale on q, not on the scores: a pass over [S, head dim] instead of [S, S]
  // (exactly the same numbers when the head dim is a power of 4, as 64 is).
  const q = qk('q').mul(1 / Math.sqrt(d.headDim));
  const k = qk('k');
  const v = toHeads(linear(seq, get(P, `${pre}.v.weight`), get(P, `${pre}.v.bias`)), d);
  const att = matMul(q, k, false, true).softmax();
  const o = linear(fromHeads(matMul(att, v), d), get(P, `${pre}.o.weight`), get(P, `${pre}.o.bias`));
  const o4 = o.reshape([n, B, Sw, d.width]);
  // Each window's output as [text | shared | inner | shared] (one split per window, as above).
  const outs = splitAlong(o4, n, 0).map((w) => tf.split(w.reshape([B, Sw, d.width]), [L, shared, inner, shared], 1));
  const txt = tf.concat(
    outs.map((w) => w[0]!),
    1,
  );
  // Consecutive windows share frames: average the two outputs for them.
  const pieces: tf.Tensor[] = [outs[0]![1]!];
  outs.forEach((w, i) => {
    pieces.push(w[2]!);
    pieces.push(i + 1 < n ? w[3]!.add(outs[i + 1]![1]!).mul(0.5) : w[3]!);
  });
  return { vid: tf.concat(pieces, 1), txt };
}

/** Segment layout along an axis of a [text n*L | video] sequence: [T0 | V0(13 frames) | T1 | V1(12 frames) | ...]. */
function segmentBounds(d: ModelDims): { text: [number, number][]; video: [number, number][] } {
  const n = d.segments;
  const L = d.textLength;
  const Pf = d.tokensPerFrame;
  const text: [number, number][] = [];
  const video: [number, number][] = [];
  for (let i = 0; i < n; i++) text.push([i * L, L]);
  video.push([n * L, FRAMES_PER_SEGMENT * Pf]);
  for (let i = 1; i < n; i++)
    video.push([n * L + FRAMES_PER_SEGMENT * Pf + (i - 1) * SEGMENT_STRIDE * Pf, SEGMENT_STRIDE * Pf]);
  return { text, video };
}

/*
 * interleave, undoInterleave and reverseSequence cut the sequence with one tf.split, whose
 * gradient is one concat: a slice per piece would make each piece's gradient a zero-padded copy
 * of the whole sequence (2 x segments of them at 63 s).
 */

function interleave(x: tf.Tensor, axis: number, d: ModelDims): tf.Tensor {
  if (d.segments === 1) return x;
  const { text, video } = segmentBounds(d);
  const n = d.segments;
  const pieces = tf.split(x, [...text.map((t) => t[1]), ...video.map((v) => v[1])], axis);
  return tf.concat(Array.from({ length: n }, (_, i) => [pieces[i]!, pieces[n + i]!]).flat(), axis);
}

function undoInterleave(x: tf.Tensor, axis: number, d: ModelDims): tf.Tensor {
  if (d.segments === 1) return x;
  const { text, video } = segmentBounds(d);
  const pieces = tf.split(
    x,
    text.flatMap((t, i) => [t[1], video[i]![1]]),
    axis,
  );
  return tf.concat([...pieces.filter((_, j) => j % 2 === 0), ...pieces.filter((_, j) => j % 2 === 1)], axis);
}

/**
 * The TTT layer over x [B, S, D] laid out [all text | all video]. Works token-major: the
 * sequence is interleaved [T0 | V0 | T1 | V1 | ...] once, on the token axis, and every per-token
 * step (projections, L2 norm, RoPE, target, eta) runs in that order.
 */
export function tttLayer(P: Params, pre: string, x: tf.Tensor, d: ModelDims, rope: RopeTables): tf.Tensor {
  const [B, S] = x.shape as [number, number, number];
  const K = d.miniBatch;
  if (S % K !== 0) throw new Error(`TTT sequence length ${S} is not a multiple of the mini-batch size ${K}`);
  const NB = S / K;
  const H = d.heads;
  const hd = d.headDim;
  // Inner learning rate per token and head, from the layer input x: lr = base * sigmoid(x.w_h + b_h) / hd.
  const lrW = get(P, `${pre}.learnable_ttt_lr_weight`).reshape([H, d.width]).transpose();
  const lrB = get(P, `${pre}.learnable_ttt_lr_bias`).reshape([H]);
  const lr = linear(x, lrW, lrB)
    .sigmoid()
    .mul(d.tttBaseLr / hd); // [B,S,H]
  // eta[i, j] = lr_j / K over the keys j of the token's own (un-interleaved) mini-batch; rows move with tokens.
  const etaRows = lr
    .reshape([B, NB, K, H])
    .transpose([0, 1, 3, 2])
    .reshape([B, NB, 1, H, K])
    .mul(tf.fill([1, 1, K, 1, 1], 1 / K))
    .reshape([B, S, H, K]);
  const xi = interleave(x, 1, d);
  const eta = interleave(etaRows, 1, d);
  const heads = (w: string): tf.Tensor =>
    linear(xi, get(P, `${pre}.${w}.weight`), get(P, `${pre}.${w}.bias`)).reshape([B, S, H, hd]);
  // (Multiplying by a reciprocal: libtensorflow's broadcasting RealDiv is several times slower than Mul.)
  const l2 = (t: tf.Tensor): tf.Tensor => t.mul(t.square().sum(-1, true).sqrt().maximum(1e-12).reciprocal());
  const XQ = applyRope(l2(heads('wq')), rope.tttCos, rope.tttSin, rope.rot);
  const XK = applyRope(l2(heads('wk')), rope.tttCos, rope.tttSin, rope.rot);
  const XVraw = heads('wv');
  const lnW = get(P, `${pre}.ttt_norm_weight`);
  const lnB = get(P, `${pre}.ttt_norm_bias`);
  // Reconstruction target: XV' = LN(XV - XK) + XK, LN with the unbiased std and eps added to the std.
  const diff = XVraw.sub(XK);
  const centred = diff.sub(diff.mean(-1, true));
  const std = centred
    .square()
    .sum(-1, true)
    .div(hd - 1)
    .sqrt();
  const XV = centred.mul(std.add(1e-8).reciprocal()).mul(lnW).add(lnB).add(XK);
  const mb = (t: tf.Tensor, last: number): tf.Tensor => t.transpose([0, 2, 1, 3]).reshape([B, H, NB, K, last]);
  const tileB = (t: tf.Tensor): tf.Tensor => (B === 1 ? t.expandDims(0) : t.expandDims(0).tile([B, 1, 1, 1]));
  const scanOpts = { checkpointGroup: d.remat.scanGroup };
  const common = { XQ: mb(XQ, hd), XK: mb(XK, hd), XV: mb(XV, hd), eta: mb(eta, K), lnWeight: lnW, lnBias: lnB };
  const out =
    d.ssmLayer === 'ttt_mlp'
      ? tttMlp(
          {
            ...common,
            W1: tileB(get(P, `${pre}.W1`)),
            b1: tileB(get(P, `${pre}.b1`)),
            W2: tileB(get(P, `${pre}.W2`)),
            b2: tileB(get(P, `${pre}.b2`)),
          },
          scanOpts,
        )
      : tttLinear({ ...common, W1: tileB(get(P, `${pre}.W1`)), b1: tileB(get(P, `${pre}.b1`)) }, scanOpts);
  const y = out.reshape([B, H, S, hd]).transpose([0, 2, 1, 3]).reshape([B, S, d.width]);
  const normed = layerNorm(y, get(P, `${pre}.post_norm.weight`), get(P, `${pre}.post_norm.bias`), LN_EPS);
  return undoInterleave(linear(normed, get(P, `${pre}.wo.weight`), get(P, `${pre}.wo.bias`)), 1, d);
}

function gate(P: Params, name: string): tf.Tensor {
  return get(P, name).tanh();
}

/** Reverses a [text chunks | video] sequence: chunk order reversed (tokens inside a chunk keep their order), video flipped. */
function reverseSequence(x: tf.Tensor, d: ModelDims): tf.Tensor {
  const nL = d.segments * d.textLength;
  // (tf.split's array is the engine's own record of the op's outputs: read it, never reorder it.)
  const pieces = tf.split(x, [...Array.from({ length: d.segments }, () => d.textLength), x.shape[1]! - nL], 1);
  const chunks = pieces.slice(0, d.segments).reverse();
  return tf.concat([...chunks, pieces[d.segments]!.reverse(1)], 1);
}

/** Bidirectional TTT with gated residuals on the attention output A = [text | video]. */
function bidirectionalTtt(P: Params, pre: string, A: tf.Tensor, d: ModelDims, rope: RopeTables): tf.Tensor {
  const nL = d.segments * d.textLength;
  const Nv = A.shape[1]! - nL;
  const gated = (Y: tf.Tensor, dir: 'forward' | 'backward'): tf.Tensor =>
    tf.concat(
      [
        sliceAxis(Y, 1, 0, nL).mul(gate(P, `${pre}.${dir}_ssm_gating_text.gating_alpha`)),
        sliceAxis(Y, 1, nL, Nv).mul(gate(P, `${pre}.${dir}_ssm_gating_video.gating_alpha`)),
      ],
      1,
    );
  const ttt = (x: tf.Tensor, remat: boolean): tf.Tensor =>
    remat
      ? recomputed(P, [`${pre}.ssm.ttt.`], [x], (Q, [xx]) => tttLayer(Q, `${pre}.ssm.ttt`, xx!, d, rope))
      : tttLayer(P, `${pre}.ssm.ttt`, x, d, rope);
  const Y = ttt(A, d.remat.forwardSsm);
  const Z = A.add(gated(Y, 'forward'));
  // reverseSequence is its own inverse.
  const Y2 = reverseSequence(ttt(reverseSequence(Z, d), d.remat.reverseSsm), d);
  return Z.add(gated(Y2, 'backward'));
}

function adaLN(P: Params, name: string, temb: tf.Tensor, chunks: number, D: number): tf.Tensor[] {
  const m = linear(silu(temb), get(P, `${name}.weight`), get(P, `${name}.bias`));
  return tf.split(m.reshape([m.shape[0]!, 1, chunks * D]), chunks, 2);
}

/** One transformer block; returns the new (video, text) streams. */
export function ditBlock(
  P: Params,
  i: number,
  vid: tf.Tensor,
  txt: tf.Tensor,
  temb: tf.Tensor,
  d: ModelDims,
  rope: RopeTables,
): { vid: tf.Tensor; txt: tf.Tensor } {
  const p = `dit.layers.${i}`;
  const D = d.width;
  const nL = d.segments * d.textLength;
  const [shift, scale, g, tShift, tScale, tGate] = adaLN(P, `${p}.pre_seq_adaLN_modulation.1`, temb, 6, D) as [
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
  ];
  const lnW = get(P, `${p}.pre_seq_layernorm.weight`);
  const lnB = get(P, `${p}.pre_seq_layernorm.bias`);
  const vin = layerNorm(vid, lnW, lnB, LN_EPS).mul(scale.add(1)).add(shift);
  const tin = layerNorm(txt, lnW, lnB, LN_EPS).mul(tScale.add(1)).add(tShift);
  const sb = `${p}.seq_modeling_block`;
  // Attention returns [text | video] as one tensor so that it can be recomputed as one piece.
  const attention = (Q: Params, v: tf.Tensor, t: tf.Tensor): tf.Tensor => {
    const a = localAttention(Q, sb, v, t, d, rope);
    return tf.concat([a.txt, a.vid], 1);
  };
  const attnPrefixes = ['q', 'k', 'v', 'o', 'q_norm', 'k_norm'].map((x) => `${sb}.${x}.`);
  const seqBlock = (Q: Params, v: tf.Tensor, t: tf.Tensor): tf.Tensor => {
    const A =
      d.remat.attention && !d.remat.seqBlock
        ? recomputed(Q, attnPrefixes, [v, t], (R, [vv, tt]) => attention(R, vv!, tt!))
        : attention(Q, v, t);
    return bidirectionalTtt(Q, sb, A, d, rope);
  };
  const seqOut = d.remat.seqBlock
    ? recomputed(P, [`${sb}.`], [vin, tin], (Q, [v, t]) => seqBlock(Q, v!, t!))
    : seqBlock(P, vin, tin);
  vid = vid.add(sliceAxis(seqOut, 1, nL, vid.shape[1]!).mul(g));
  txt = txt.add(sliceAxis(seqOut, 1, 0, nL).mul(tGate));
  const [mShift, mScale, mGate, mtShift, mtScale, mtGate] = adaLN(P, `${p}.pre_mlp_adaLN_modulation.1`, temb, 6, D) as [
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
    tf.Tensor,
  ];
  const mW = get(P, `${p}.pre_mlp_layernorm.weight`);
  const mB = get(P, `${p}.pre_mlp_layernorm.bias`);
  const vin2 = layerNorm(vid, mW, mB, LN_EPS).mul(mScale.add(1)).add(mShift);
  const tin2 = layerNorm(txt, mW, mB, LN_EPS).mul(mtScale.add(1)).add(mtShift);
  const mlp = (Q: Params, x: tf.Tensor): tf.Tensor =>
    linear(
      geluTanh(linear(x, get(Q, `${p}.mlp.layer1.weight`), get(Q, `${p}.mlp.layer1.bias`))),
      get(Q, `${p}.mlp.layer2.weight`),
      get(Q, `${p}.mlp.layer2.bias`),
    );
  const mlpIn = tf.concat([tin2, vin2], 1);
  const h = d.remat.mlp ? recomputed(P, [`${p}.mlp.`], [mlpIn], (Q, [x]) => mlp(Q, x!)) : mlp(P, mlpIn);
  vid = vid.add(sliceAxis(h, 1, nL, vid.shape[1]!).mul(mGate));
  txt = txt.add(sliceAxis(h, 1, 0, nL).mul(mtGate));
  return { vid, txt };
}

/** The whole DiT: v prediction [B, F, Cout, H, W]. */
export function ditForward(P: Params, d: ModelDims, inp: DitInputs, rope: RopeTables): tf.Tensor {
  return tf.tidy(() => {
    const [B, F, , ,] = inp.video.shape as number[];
    if (F !== d.latentFrames) throw new Error(`video has ${F} latent frames, the stage expects ${d.latentFrames}`);
    const [, n, L] = inp.text.shape as number[];
    if (n !== d.segments || L !== d.textLength)
      throw new Error(
        `text is [${inp.text.shape.join(',')}], the stage expects [B, ${d.segments}, ${d.textLength}, ${d.textDim}]`,
      );
    const temb = linear(
      silu(
        linear(
          timestepEmbedding(inp.timesteps, d.width),
          get(P, 'dit.time_embed.0.weight'),
          get(P, 'dit.time_embed.0.bias'),
        ),
      ),
      get(P, 'dit.time_embed.2.weight'),
      get(P, 'dit.time_embed.2.bias'),
    );
    let vid = linear(
      patchify(inp.video, d),
      get(P, 'dit.patch_embedding.vid_proj.weight'),
      get(P, 'dit.patch_embedding.vid_proj.bias'),
    );
    let txt = linear(
      inp.text.reshape([B!, n! * L!, d.textDim]),
      get(P, 'dit.patch_embedding.text_proj.weight'),
      get(P, 'dit.patch_embedding.text_proj.bias'),
    );
    const g = d.remat.layerGroup;
    for (let i = 0; i < d.layers; i += Math.max(1, g)) {
      if (g > 0) {
        // Recompute this group of blocks in the backward pass; [text | video] travel as one tensor.
        const layers = Array.from({ length: Math.min(g, d.layers - i) }, (_, j) => i + j);
        const nL = txt.shape[1]!;
        const Nv = vid.shape[1]!;
        const both = recomputed(
          P,
          layers.map((l) => `dit.layers.${l}.`),
          [vid, txt, temb],
          (Q, [v, t, e]) => {
            let s = { vid: v!, txt: t! };
            for (const l of layers) s = ditBlock(Q, l, s.vid, s.txt, e!, d, rope);
            return tf.concat([s.txt, s.vid], 1);
          },
        );
        txt = sliceAxis(both, 1, 0, nL);
        vid = sliceAxis(both, 1, nL, Nv);
      } else ({ vid, txt } = ditBlock(P, i, vid, txt, temb, d, rope));
    }
    vid = layerNorm(vid, get(P, 'dit.transformer_norm.weight'), get(P, 'dit.transformer_norm.bias'), LN_EPS);
    const [shift, scale] = adaLN(P, 'dit.final_layer.adaLN_modulation.1', temb, 2, d.width) as [tf.Tensor, tf.Tensor];
    vid = layerNorm(vid, get(P, 'dit.final_layer.norm.weight'), get(P, 'dit.final_layer.norm.bias'), LN_EPS)
      .mul(scale.add(1))
      .add(shift);
    const out = linear(vid, get(P, 'dit.final_layer.linear.weight'), get(P, 'dit.final_layer.linear.bias'));
    return unpatchify(out, d, B!, F!);
  });
}
