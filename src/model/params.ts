/**
 * The parameter set: TTT-Video-DiT state-dict names and PyTorch shapes, how each is stored
 * inside this project (linear weights transposed to [in, out] so matMuls stay untransposed),
 * how it is initialised, whether it is trained under sft/qkvo, and its optimizer group.
 */
import { tf } from '../backend';
import type { FloatTensor } from '../io/safetensors';
import { normals, rngFor, STREAM, hash32 } from '../rng';
import type { ModelDims, ParamDims } from './dims';

/** How the PyTorch tensor maps to ours: same layout, linear [out,in] -> [in,out], conv [D,C,p,p] -> [C*p*p, D]. */
export type Layout = 'same' | 'linear' | 'conv';
export type Init =
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; bound: number }
  | { kind: 'const'; value: number };

export interface ParamSpec {
  name: string;
  torchShape: number[];
  layout: Layout;
  init: Init;
}

function lin(
  specs: ParamSpec[],
  name: string,
  inDim: number,
  outDim: number,
  weightInit?: Init,
  biasInit?: Init,
): void {
  const bound = 1 / Math.sqrt(inDim);
  specs.push({
    name: `${name}.weight`,
    torchShape: [outDim, inDim],
    layout: 'linear',
    init: weightInit ?? { kind: 'uniform', bound },
  });
  specs.push({
    name: `${name}.bias`,
    torchShape: [outDim],
    layout: 'same',
    init: biasInit ?? { kind: 'uniform', bound },
  });
}

function norm(specs: ParamSpec[], name: string, dim: number): void {
  specs.push({ name: `${name}.weight`, torchShape: [dim], layout: 'same', init: { kind: 'const', value: 1 } });
  specs.push({ name: `${name}.bias`, torchShape: [dim], layout: 'same', init: { kind: 'const', value: 0 } });
}

const N002: Init = { kind: 'normal', std: 0.02 };
const ZERO: Init = { kind: 'const', value: 0 };

/** The sizes that decide the parameter set (a converter knows these from a diffusers config.json alone). */
export type { ParamDims };

/** Every parameter of the model, in a stable order. */
export function paramSpecs(d: ParamDims): ParamSpec[] {
  const s: ParamSpec[] = [];
  const D = d.width;
  const hd = d.headDim;
  const Fi = d.ssmLayer === 'ttt_mlp' ? 4 * hd : hd;
  lin(s, 'dit.time_embed.0', D, d.timeEmbedDim);
  lin(s, 'dit.time_embed.2', d.timeEmbedDim, d.timeEmbedDim);
  const pp = d.inChannels * d.patch * d.patch;
  s.push({
    name: 'dit.patch_embedding.vid_proj.weight',
    torchShape: [D, d.inChannels, d.patch, d.patch],
    layout: 'conv',
    init: { kind: 'uniform', bound: 1 / Math.sqrt(pp) },
  });
  s.push({
    name: 'dit.patch_embedding.vid_proj.bias',
    torchShape: [D],
    layout: 'same',
    init: { kind: 'uniform', bound: 1 / Math.sqrt(pp) },
  });
  lin(s, 'dit.patch_embedding.text_proj', d.textDim, D);
  for (let i = 0; i < d.layers; i++) {
    const p = `dit.layers.${i}`;
    norm(s, `${p}.pre_seq_layernorm`, D);
    lin(s, `${p}.pre_seq_adaLN_modulation.1`, d.timeEmbedDim, 6 * D);
    norm(s, `${p}.pre_mlp_layernorm`, D);
    lin(s, `${p}.pre_mlp_adaLN_modulation.1`, d.timeEmbedDim, 6 * D);
    lin(s, `${p}.mlp.layer1`, D, 4 * D);
    lin(s, `${p}.mlp.layer2`, 4 * D, D);
    const b = `${p}.seq_modeling_block`;
    norm(s, `${b}.q_norm`, hd);
    norm(s, `${b}.k_norm`, hd);
    for (const x of ['q', 'k', 'v', 'o']) lin(s, `${b}.${x}`, D, D);
    for (const g of [
      'forward_ssm_gating_video',
      'forward_ssm_gating_text',
      'backward_ssm_gating_video',
      'backward_ssm_gating_text',
    ]) {
      s.push({ name: `${b}.${g}.gating_alpha`, torchShape: [D], layout: 'same', init: { kind: 'const', value: 0.1 } });
    }
    const t = `${b}.ssm.ttt`;
    for (const x of ['wq', 'wk', 'wv', 'wo']) lin(s, `${t}.${x}`, D, D, N002, ZERO);
    s.push({ name: `${t}.learnable_ttt_lr_weight`, torchShape: [d.heads, 1, D], layout: 'same', init: N002 });
    s.push({ name: `${t}.learnable_ttt_lr_bias`, torchShape: [d.heads, 1], layout: 'same', init: ZERO });
    s.push({
      name: `${t}.ttt_norm_weight`,
      torchShape: [d.heads, hd],
      layout: 'same',
      init: { kind: 'const', value: 1 },
    });
    s.push({ name: `${t}.ttt_norm_bias`, torchShape: [d.heads, hd], layout: 'same', init: ZERO });
    norm(s, `${t}.post_norm`, D);
    s.push({ name: `${t}.W1`, torchShape: [d.heads, hd, Fi], layout: 'same', init: N002 });
    s.push({ name: `${t}.b1`, torchShape: [d.heads, 1, Fi], layout: 'same', init: ZERO });
    if (d.ssmLayer === 'ttt_mlp') {
      s.push({ name: `${t}.W2`, torchShape: [d.heads, Fi, hd], layout: 'same', init: N002 });
      s.push({ name: `${t}.b2`, torchShape: [d.heads, 1, hd], layout: 'same', init: ZERO });
    }
  }
  norm(s, 'dit.transformer_norm', D);
  lin(s, 'dit.final_layer.adaLN_modulation.1', d.timeEmbedDim, 2 * D);
  norm(s, 'dit.final_layer.norm', D);
  lin(s, 'dit.final_layer.linear', D, d.patch * d.patch * d.outChannels);
  return s;
}

/** TTT optimizer group: names containing "ttt" or "ssm" (TTT parameters and the gates). */
export function isTttParam(name: string): boolean {
  const n = name.toLowerCase();
  return n.includes('ttt') || n.includes('ssm');
}

/** No weight decay for biases, norms, b1 and b2. */
export function hasWeightDecay(name: string): boolean {
  const n = name.toLowerCase();
  return !(n.includes('bias') || n.includes('norm') || n.includes('b1') || n.includes('b2'));
}

const QKVO = /\.seq_modeling_block\.(q|k|v|o|q_norm|k_norm)\.(weight|bias)$/;

/** Trainable under an adapter method: sft = everything; qkvo = TTT, gates, q/k/v/o and q/k norms. */
export function isTrainable(name: string, adapter: 'sft' | 'qkvo'): boolean {
  if (adapter === 'sft') return true;
  return name.includes('.ssm.ttt.') || name.includes('_ssm_gating_') || QKVO.test(name);
}

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Deterministic fresh initialisation of one parameter (PyTorch shape, row-major). */
export function initialValue(spec: ParamSpec, seed: number): Float32Array {
  const n = size(spec.torchShape);
  const key = hash32(...Array.from(spec.name, (ch) => ch.charCodeAt(0)));
  switch (spec.init.kind) {
    case 'const':
      return new Float32Array(n).fill(spec.init.value);
    case 'normal': {
      const z = normals(n, seed, STREAM.init, key);
      for (let i = 0; i < n; i++) z[i]! *= spec.init.std;
      return z;
    }
    case 'uniform': {
      const r = rngFor(seed, STREAM.init, key);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = (2 * r() - 1) * spec.init.bound;
      return out;
    }
  }
}

/** PyTorch layout -> ours. */
export function toInternal(spec: ParamSpec, data: Float32Array): tf.Tensor {
  const t = spec.torchShape;
  return tf.tidy(() => {
    if (spec.layout === 'linear') return tf.tensor2d(data, [t[0]!, t[1]!]).transpose();
    if (spec.layout === 'conv') return tf.tensor2d(data, [t[0]!, t[1]! * t[2]! * t[3]!]).transpose();
    return tf.tensor(data, t);
  });
}

/** Ours -> PyTorch layout. */
export function toTorch(spec: ParamSpec, x: tf.Tensor): FloatTensor {
  const data = tf.tidy(() => (spec.layout === 'same' ? x.clone() : x.transpose()));
  const out = { shape: spec.torchShape, data: data.dataSync() as Float32Array };
  data.dispose();
  return out;
}

/** A freshly initialised parameter map in our layouts (as the trainer builds it for step 0). */
export function initialParams(d: ModelDims, seed: number): Record<string, tf.Tensor> {
  return Object.fromEntries(paramSpecs(d).map((s) => [s.name, toInternal(s, initialValue(s, seed))]));
}
