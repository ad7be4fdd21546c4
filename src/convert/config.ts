/**
 * The config.json of a CogVideoX transformer in diffusers format, and the file names of such a
 * folder. Light on purpose (no model code): config validation reads it to compare the sizes
 * with the stage config before anything is converted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';

export const DIFFUSERS_CONFIG = 'config.json';
export const DIFFUSERS_SINGLE = 'diffusion_pytorch_model.safetensors';
export const DIFFUSERS_INDEX = 'diffusion_pytorch_model.safetensors.index.json';
/** The hyperparameters read from config.json; the same names as the stage config's [model] fields. */
export const CONFIG_FIELDS = [
  'num_layers',
  'num_attention_heads',
  'attention_head_dim',
  'in_channels',
  'out_channels',
  'patch_size',
  'text_embed_dim',
  'time_embed_dim',
] as const;
export type DiffusersConfig = Record<(typeof CONFIG_FIELDS)[number], number>;

export class ConvertError extends UserError {
  constructor(where: string, message: string, fix: string) {
    super(message, { where, kind: 'ConvertError', fix });
    this.name = 'ConvertError';
  }
}

/** True when a folder looks like a diffusers transformer (and not like one of our weights folders). */
export function isDiffusersFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, DIFFUSERS_INDEX)) || fs.existsSync(path.join(dir, DIFFUSERS_SINGLE));
}

/** Reads and checks config.json: the eight hyperparameters, and no CogVideoX variant this converter does not know. */
export function readDiffusersConfig(dir: string): DiffusersConfig {
  const file = path.join(dir, DIFFUSERS_CONFIG);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new ConvertError(
      file,
      `cannot read the model config (${(e as Error).message})`,
      'point --from (or checkpoint.init_state_dir) at the `transformer` folder of a CogVideoX diffusers checkpoint, which holds config.json',
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new ConvertError(file, 'is not a JSON object', 'restore config.json from the diffusers checkpoint');
  const problems: string[] = [];
  const out: Partial<DiffusersConfig> = {};
  for (const f of CONFIG_FIELDS) {
    const v = raw[f];
    if (!Number.isSafeInteger(v) || (v as number) <= 0)
      problems.push(`${f} = ${JSON.stringify(v)} (expected a positive integer)`);
    else out[f] = v as number;
  }
  if (raw._class_name !== undefined && raw._class_name !== 'CogVideoXTransformer3DModel')
    problems.push(`_class_name = ${JSON.stringify(raw._class_name)} (expected "CogVideoXTransformer3DModel")`);
  if (raw.patch_size_t !== undefined && raw.patch_size_t !== null)
    problems.push(
      `patch_size_t = ${JSON.stringify(raw.patch_size_t)}: CogVideoX 1.5 (temporal patches) is not supported; TTT-Video-DiT starts from CogVideoX-5B (patch_size_t null)`,
    );
  if (problems.length > 0)
    throw new ConvertError(
      file,
      `not a CogVideoX transformer config: ${problems.join('; ')}`,
      'use the config.json of CogVideoX-5B (the `transformer` folder of the diffusers checkpoint)',
    );
  return out as DiffusersConfig;
}
