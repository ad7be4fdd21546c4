import type { StageConfig } from '../config/schema';
import { FRAMES_PER_SEGMENT, videoLengthInfo } from '../config/video';
import type { RematConfig } from './remat';

/** Every size the model needs, derived from a stage config. */
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

export function modelDims(c: StageConfig): ModelDims {
  const m = c.model;
  const v = videoLengthInfo(m.video_length);
  const gridH = m.latent_height / m.patch_size;
  const gridW = m.latent_width / m.patch_size;
  const tokensPerFrame = gridH * gridW;
  return {
    ...paramDims(m, m.ssm_layer),
    latentHeight: m.latent_height,
    latentWidth: m.latent_width,
    gridH,
    gridW,
    tokensPerFrame,
    latentFrames: v.latentFrames,
    segments: v.segments,
    textLength: m.text_length,
    miniBatch: m.mini_batch_size,
    tttBaseLr: m.ttt_base_lr,
    ropeTheta: m.rope_theta,
    seqLen: v.segments * m.text_length + v.latentFrames * tokensPerFrame,
    remat: {
      layerGroup: c.remat.transformer_checkpoint_layer_group_size,
      attention: c.remat.attention,
      mlp: c.remat.mlp,
      forwardSsm: c.remat.forward_ssm,
      reverseSsm: c.remat.reverse_ssm,
      seqBlock: c.remat.seq_modeling_block,
      scanGroup: c.remat.scan_checkpoint_group_size,
    },
  };
}

/** Sequence length of the whole TTT scan for given sizes (used by config validation too). */
export function sequenceLength(
  segments: number,
  textLength: number,
  latentFrames: number,
  tokensPerFrame: number,
): number {
  return segments * textLength + latentFrames * tokensPerFrame;
}

export { FRAMES_PER_SEGMENT };
