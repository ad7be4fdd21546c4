import type { RematConfig } from './remat';

/** Every size the model needs, as plain numbers (src/config/dims.ts derives them from a stage config). */
export interface ModelDims {
  layers: number;
  heads: number;
  headDim: number;
  /** Model width D = heads * headDim. */
  width: number;
  inChannels: number;
  outChannels: number;
  patch: number;
  textDim: number;
  timeEmbedDim: number;
  latentHeight: number;
  latentWidth: number;
  /** Token grid of one frame: (latentHeight/patch) x (latentWidth/patch). */
  gridH: number;
  gridW: number;
  tokensPerFrame: number;
  latentFrames: number;
  segments: number;
  textLength: number;
  miniBatch: number;
  ssmLayer: 'ttt_mlp' | 'ttt_linear';
  tttBaseLr: number;
  ropeTheta: number;
  /** Whole sequence: segments * textLength + latentFrames * tokensPerFrame. */
  seqLen: number;
  /** Activation recomputation (remat.*). */
  remat: RematConfig;
}

/** The sizes that fix the parameter shapes, under CogVideoX's names: `[model]` and diffusers' config.json both use them. */
export interface SizeFields {
  num_layers: number;
  num_attention_heads: number;
  attention_head_dim: number;
  in_channels: number;
  out_channels: number;
  patch_size: number;
  text_embed_dim: number;
  time_embed_dim: number;
}

export type ParamDims = Pick<
  ModelDims,
  | 'layers'
  | 'heads'
  | 'headDim'
  | 'width'
  | 'inChannels'
  | 'outChannels'
  | 'patch'
  | 'textDim'
  | 'timeEmbedDim'
  | 'ssmLayer'
>;

/** The dimensions of the parameters (paramSpecs) from a config's sizes. */
export function paramDims(c: SizeFields, ssmLayer: 'ttt_mlp' | 'ttt_linear'): ParamDims {
  return {
    layers: c.num_layers,
    heads: c.num_attention_heads,
    headDim: c.attention_head_dim,
    width: c.num_attention_heads * c.attention_head_dim,
    inChannels: c.in_channels,
    outChannels: c.out_channels,
    patch: c.patch_size,
    textDim: c.text_embed_dim,
    timeEmbedDim: c.time_embed_dim,
    ssmLayer,
  };
}

/** Sequence length of the whole TTT scan: each segment's text chunk plus every latent frame's patches. */
export function sequenceLength(
  segments: number,
  textLength: number,
  latentFrames: number,
  tokensPerFrame: number,
): number {
  return segments * textLength + latentFrames * tokensPerFrame;
}
