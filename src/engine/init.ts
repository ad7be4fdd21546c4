/**
 * Stage 1's init weights for an external engine. The job converts CogVideoX weights, and reads
 * init folders, in this project's format (model.safetensors with TTT-Video-DiT's names); a trainer
 * of another layout reads its own format. TTT-Video-DiT's train.py loads checkpoint.init_state_dir
 * with torch.distributed.checkpoint (a DCP folder: .metadata and *.distcp files).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDiffusersFolder } from '../convert/config';
import type { ConfigProblem } from '../errors';
import type { EnginePreset } from './preset';

/** Problems of stage 1's init_state_dir (already checked to exist) for its engine. */
export function externalInitProblems(engine: EnginePreset, initStateDir: string, file: string): ConfigProblem[] {
  if (engine.kind !== 'command' || engine.checkpoint_layout !== 'ttt-video-dit' || initStateDir === '') return [];
  const dir = path.resolve(initStateDir);
  if (fs.existsSync(path.join(dir, '.metadata'))) return [];
  const what = isDiffusersFolder(dir)
    ? 'a CogVideoX folder in diffusers format, which the job would convert into safetensors'
    : 'not a torch.distributed.checkpoint (DCP) folder (no .metadata)';
  return [
    {
      file,
      field: 'checkpoint.init_state_dir',
      value: initStateDir,
      message: `engine ${engine.name} (TTT-Video-DiT's train.py) loads its init weights with torch.distributed.checkpoint; this folder is ${what}`,
      fix: 'point it at a DCP folder: the output of TTT-Video-DiT\'s scripts/convert_weights_from_hf.sh, or `ttt-curriculum convert` output saved as DCP (README, "Training the real model on a GPU cluster")',
    },
  ];
}
