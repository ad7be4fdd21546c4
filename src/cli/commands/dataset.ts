/**
 * `dataset`: datasets of precomputed embeddings. `dataset synth` (here): the synthetic source as
 * a JSONL dataset (latents .npy, text chunks .safetensors); `dataset import`: dataset-import.ts.
 */
import * as path from 'node:path';
import { modelDims } from '../../config/dims';
import { loadStageConfig } from '../../config/load';
import { writeSynthDataset } from '../../data/synthfiles';
import { UserError } from '../../errors';
import { normaliseStageName } from '../../shared/stages';
import { type CliContext, type Register, toNumber } from '../common';
import { registerImport } from './dataset-import';

interface SynthFlags {
  out: string;
  videoLength?: string;
  config?: string;
  samples?: number;
}

function synth(o: SynthFlags, ctx: CliContext): void {
  const stageName = o.videoLength ? normaliseStageName(o.videoLength.replace(/sec$/, 's')) : undefined;
  if (!o.config && !stageName)
    throw new UserError('give --video-length (3sec, 9sec, 18sec, 30sec, 63sec) or --config', {
      kind: 'InvalidInput',
    });
  const file = o.config ?? `configs/train/tiny/${stageName}.toml`;
  const overrides = {
    ...ctx.overrides,
    ...(o.videoLength ? { 'model.video_length': `${stageName!.replace(/s$/, 'sec')}` } : {}),
    'training.dataset_path': 'synthetic',
  };
  const stage = loadStageConfig(file, overrides, { overrideSource: 'command line' });
  const n = o.samples ?? stage.config.training.synthetic_samples;
  const out = path.resolve(o.out);
  const jsonl = writeSynthDataset(out, stage.config, modelDims(stage.config), n);
  process.stdout.write(
    `wrote ${n} ${stage.config.model.video_length} samples: ${jsonl}\nuse: --training.dataset_path=${out} --training.jsonl_paths='["${path.basename(jsonl)}"]'\n`,
  );
}

export const register: Register = (program, ctx) => {
  const dataset = program.command('dataset').description('datasets of precomputed embeddings');
  dataset
    .command('synth')
    .description(
      'write the synthetic source as a JSONL dataset (latents .npy, text chunks .safetensors) that the real reader takes',
    )
    .requiredOption('--out <dir>', 'output folder')
    .option('--video-length <len>', 'stage video length (3sec .. 63sec); picks configs/train/tiny/<stage>.toml')
    .option('--config <file>', 'stage config giving the sizes and seed (default: the tiny config of --video-length)')
    .option('--samples <n>', 'number of samples (default: training.synthetic_samples)', toNumber)
    .action((o: SynthFlags) => synth(o, ctx));
  registerImport(dataset);
};
