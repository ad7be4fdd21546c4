/**
 * `convert`: a CogVideoX transformer in Hugging Face diffusers format into TTT-Video-DiT weights
 * for checkpoint.init_state_dir.
 */
import { Option } from 'commander';
import {
  type ConvertProgress,
  type ConvertResult,
  convertDiffusers,
  DEFAULT_MAX_PART_BYTES,
  type OutputDtype,
} from '../../convert/convert';
import { UserError } from '../../errors';
import { fmtBytes, parseSize, progressBar, type Register, toNumber } from '../common';

interface ConvertFlags {
  from: string;
  out: string;
  ssmLayer: 'ttt_mlp' | 'ttt_linear';
  dtype: OutputDtype;
  seed: number;
  maxFileSize: number;
  /** The same, under diffusers' name. */
  maxShardSize?: number;
}

/** One progress bar per phase on a TTY (stderr); without one the library logs one line per file. */
function progressDisplay(): { onProgress: (p: ConvertProgress) => void; stop: () => void } {
  const tty = process.stderr.isTTY;
  const bar = progressBar(
    ' {phase} |{bar}| {percentage}% | {doneGB}/{totalGB} GB | {duration_formatted} (ETA {eta_formatted})',
    process.stderr,
  );
  let phase = '';
  return {
    onProgress: (p) => {
      if (!tty) return;
      const gb = { doneGB: (p.bytesDone / 1e9).toFixed(2), totalGB: (p.bytesTotal / 1e9).toFixed(2) };
      if (p.phase !== phase) {
        if (phase) bar.stop();
        phase = p.phase;
        bar.start(p.bytesTotal, 0, { phase: phase.padEnd(10), ...gb });
      }
      bar.update(p.bytesDone, gb);
    },
    stop: () => {
      if (phase) bar.stop();
    },
  };
}

/** What was converted (or kept), and the override that uses it. */
export function convertSummary(r: ConvertResult, dtype: OutputDtype): string {
  const files =
    r.weightFiles.length === 1 ? r.weightFiles[0] : `${r.weightFiles.length} files + model.safetensors.index.json`;
  const did = r.reused
    ? `${r.out} already holds this conversion (input sha256 ${r.inputHash.slice(0, 16)}..., same options): kept it (${r.seconds.toFixed(1)} s to check)\n`
    : `converted ${r.tensors.mapped} tensors and added ${r.tensors.added} TTT parameters: ${fmtBytes(r.bytesIn)} -> ${fmtBytes(r.bytesOut)} (${dtype}) in ${r.seconds.toFixed(1)} s\n${r.out}: ${files}, config.json, convert.json\n`;
  const model = Object.entries(r.model)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${did}use: --checkpoint.init_state_dir=${r.out} (model: ${model})\n`;
}

async function convert(o: ConvertFlags): Promise<void> {
  if (!Number.isSafeInteger(o.seed) || o.seed < 0)
    throw new UserError(`--seed ${o.seed} is not a non-negative integer`, {
      kind: 'InvalidInput',
      fix: 'e.g. --seed 0',
    });
  const display = progressDisplay();
  const ac = new AbortController();
  process.once('SIGINT', () =>
    ac.abort(
      new UserError('conversion interrupted; nothing was written to --out', {
        kind: 'Interrupted',
        fix: 'run the command again',
      }),
    ),
  );
  const r = await convertDiffusers({
    from: o.from,
    out: o.out,
    ssmLayer: o.ssmLayer,
    dtype: o.dtype,
    seed: o.seed,
    maxPartBytes: o.maxShardSize ?? o.maxFileSize,
    signal: ac.signal,
    onProgress: display.onProgress,
  });
  display.stop();
  process.stdout.write(convertSummary(r, o.dtype));
}

export const register: Register = (program) => {
  program
    .command('convert')
    .description(
      'convert a CogVideoX transformer in Hugging Face diffusers format into TTT-Video-DiT weights for checkpoint.init_state_dir',
    )
    .requiredOption(
      '--from <dir>',
      'the diffusers `transformer` folder: config.json and diffusion_pytorch_model*.safetensors (BF16, F16 or F32)',
    )
    .requiredOption(
      '--out <dir>',
      'output folder: model.safetensors (or several files and model.safetensors.index.json), config.json, convert.json',
    )
    .addOption(
      new Option('--ssm-layer <layer>', 'TTT layer whose parameters are added')
        .choices(['ttt_mlp', 'ttt_linear'])
        .default('ttt_mlp'),
    )
    .addOption(new Option('--dtype <dtype>', 'output dtype').choices(['float32', 'bfloat16']).default('float32'))
    .option('--seed <n>', "seed of the added TTT parameters (the stage config's training.seed)", toNumber, 0)
    .option('--max-file-size <size>', 'largest output file, e.g. 5GB or 500MB', parseSize, DEFAULT_MAX_PART_BYTES)
    // diffusers/transformers call it max_shard_size; "shard" means a time slice of training here.
    .addOption(new Option('--max-shard-size <size>', 'alias of --max-file-size').argParser(parseSize).hideHelp())
    .action(convert);
};
