/**
 * Parameter names: CogVideoX in Hugging Face diffusers -> TTT-Video-DiT. Every entry keeps its
 * `.weight` / `.bias` suffix and its shape (linear [out, in], patch conv [D, C, p, p] in both).
 * Parameters TTT-Video-DiT adds (the TTT layer and its gates) have no diffusers name.
 */
import type { ParamSpec } from '../model/params';

/** Top-level modules. */
export const TOP_LEVEL: readonly (readonly [string, string])[] = [
  ['patch_embed.proj', 'dit.patch_embedding.vid_proj'],
  ['patch_embed.text_proj', 'dit.patch_embedding.text_proj'],
  ['norm_final', 'dit.transformer_norm'],
  ['norm_out.norm', 'dit.final_layer.norm'],
  ['norm_out.linear', 'dit.final_layer.adaLN_modulation.1'],
  ['proj_out', 'dit.final_layer.linear'],
  ['time_embedding.linear_1', 'dit.time_embed.0'],
  ['time_embedding.linear_2', 'dit.time_embed.2'],
];

/** Per block: transformer_blocks.{i}.X -> dit.layers.{i}.Y. */
export const PER_BLOCK: readonly (readonly [string, string])[] = [
  ['attn1.norm_q', 'seq_modeling_block.q_norm'],
  ['attn1.norm_k', 'seq_modeling_block.k_norm'],
  ['attn1.to_q', 'seq_modeling_block.q'],
  ['attn1.to_k', 'seq_modeling_block.k'],
  ['attn1.to_v', 'seq_modeling_block.v'],
  ['attn1.to_out.0', 'seq_modeling_block.o'],
  ['ff.net.0.proj', 'mlp.layer1'],
  ['ff.net.2', 'mlp.layer2'],
  ['norm1.linear', 'pre_seq_adaLN_modulation.1'],
  ['norm1.norm', 'pre_seq_layernorm'],
  ['norm2.linear', 'pre_mlp_adaLN_modulation.1'],
  ['norm2.norm', 'pre_mlp_layernorm'],
];

const top = new Map(TOP_LEVEL);
const topBack = new Map(TOP_LEVEL.map(([a, b]) => [b, a]));
const block = new Map(PER_BLOCK);
const blockBack = new Map(PER_BLOCK.map(([a, b]) => [b, a]));
const SUFFIX = /^(.+)\.(weight|bias)$/;

/** The TTT-Video-DiT name of a diffusers parameter, or undefined when it has none. */
export function tttName(diffusersName: string): string | undefined {
  const m = SUFFIX.exec(diffusersName);
  if (!m) return undefined;
  const [, stem, suffix] = m as unknown as [string, string, string];
  const t = top.get(stem);
  if (t) return `${t}.${suffix}`;
  const b = /^transformer_blocks\.(0|[1-9]\d*)\.(.+)$/.exec(stem);
  const y = b ? block.get(b[2]!) : undefined;
  return y ? `dit.layers.${b![1]}.${y}.${suffix}` : undefined;
}

/** The diffusers name of a TTT-Video-DiT parameter, or undefined for parameters that TTT-Video-DiT adds. */
export function diffusersName(name: string): string | undefined {
  const m = SUFFIX.exec(name);
  if (!m) return undefined;
  const [, stem, suffix] = m as unknown as [string, string, string];
  const t = topBack.get(stem);
  if (t) return `${t}.${suffix}`;
  const b = /^dit\.layers\.(\d+)\.(.+)$/.exec(stem);
  const x = b ? blockBack.get(b[2]!) : undefined;
  return x ? `transformer_blocks.${b![1]}.${x}.${suffix}` : undefined;
}

/** The parameters of a model split into those taken from diffusers (with their source name) and those TTT-Video-DiT adds. */
export function splitSpecs(specs: ParamSpec[]): { mapped: { spec: ParamSpec; source: string }[]; added: ParamSpec[] } {
  const mapped: { spec: ParamSpec; source: string }[] = [];
  const added: ParamSpec[] = [];
  for (const spec of specs) {
    const source = diffusersName(spec.name);
    if (source) mapped.push({ spec, source });
    else added.push(spec);
  }
  return { mapped, added };
}
