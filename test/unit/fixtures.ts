/** Shared fixtures of the unit tests: the tiny model's sizes as a CogVideoX diffusers config. */
import * as path from 'node:path';
import { loadStageConfig } from '../../src/config/load';
import type { DiffusersConfig } from '../../src/convert/diffusers';
import { ROOT } from '../helpers';

const m = loadStageConfig(path.join(ROOT, 'configs/train/tiny/3s.toml')).config.model;

/** configs/train/tiny's [model] sizes as the fields of a diffusers config.json. */
export const TINY: DiffusersConfig = {
  num_layers: m.num_layers,
  num_attention_heads: m.num_attention_heads,
  attention_head_dim: m.attention_head_dim,
  in_channels: m.in_channels,
  out_channels: m.out_channels,
  patch_size: m.patch_size,
  text_embed_dim: m.text_embed_dim,
  time_embed_dim: m.time_embed_dim,
};
