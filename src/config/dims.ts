/** The model's dimensions from a stage config: the one place where [model] and [remat] meet the model's plain numbers. */
import { paramDims, sequenceLength, type ModelDims } from '../model/dims';
import { videoLengthInfo } from '../shared/stages';
import type { StageConfig } from './schema';

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
    seqLen: sequenceLength(v.segments, m.text_length, v.latentFrames, tokensPerFrame),
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
