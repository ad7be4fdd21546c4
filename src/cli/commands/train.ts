/**
 * `train <config>`: one stage locally, without Temporal; resumes from the latest checkpoint of
 * job.exp_name under job.dump_folder. Stage 1's init weights are decided as the plan decides them.
 */
import { loadStageConfig, type Overrides } from '../../config/load';
import { UserError } from '../../errors';
import { jobDir } from '../../paths';
import { prepareInit, stageInit } from '../../job';
import { formatLoss, stepText } from '../../shared/progress';
import type { ShardProgress } from '../../shared/types';
import { runShard, type ShardResult } from '../../train/shard';
import { type CliContext, progressBar, type Register, toNumber } from '../common';

interface TrainFlags {
  init?: string;
  maxSteps?: number;
}

/** Progress on stderr as a bar on a TTY, else one line per step on stdout. */
function progressDisplay(stage: string): { onProgress: (p: ShardProgress) => void; stop: () => void } {
  const bar = progressBar(
    ` ${stage} |{bar}| {value}/{total} steps | loss {loss} | {duration_formatted} (ETA {eta_formatted})`,
  );
  const tty = process.stderr.isTTY;
  let started = false;
  return {
    onProgress: (p) => {
      if (tty) {
        if (!started) bar.start(p.totalSteps, p.step - 1, { loss: '-' });
        started = true;
        bar.update(p.step, { loss: formatLoss(p.loss) });
      } else process.stdout.write(`${stepText(p.stage, p.step, p.totalSteps, p.loss)}\n`);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/**
 * "3s: steps 0->3 of 6, first loss ..., last loss ..., val loss ... at step 3, 1.2s on tensorflow
 * (cpu: <processor>, 2 threads)" and the checkpoint; the validation loss is the last this run measured.
 */
export function trainSummary(r: ShardResult): string {
  const val = typeof r.valLoss === 'number' ? `, val loss ${r.valLoss.toFixed(4)} at step ${r.valStep}` : '';
  const losses = `first loss ${r.firstLoss?.toFixed(4) ?? '-'}, last loss ${r.lastLoss?.toFixed(4) ?? '-'}${val}`;
  return (
    `${r.stage}: steps ${r.startStep}->${r.step} of ${r.totalSteps}${r.done ? ' (stage complete)' : ''}, ` +
    `${losses}, ${r.seconds.toFixed(1)}s on ${r.backend} (${r.device})\ncheckpoint: ${r.checkpoint}\n`
  );
}

/**
 * The stage config file: the positional argument or TTT-Video-DiT's `--job.config_file <file>`
 * (taken out of the overrides: it names the file, it is not a field of it).
 */
export function trainConfigFile(
  positional: string | undefined,
  overrides: Overrides,
): { file: string; overrides: Overrides } {
  const { 'job.config_file': named, ...rest } = overrides;
  const flag = named === undefined ? undefined : String(named);
  if (positional !== undefined && flag !== undefined && positional !== flag)
    throw new UserError(`two stage configs: ${positional} and --job.config_file ${flag}`, {
      kind: 'InvalidInput',
      fix: 'name the stage config once, as the argument or as --job.config_file',
    });
  const file = positional ?? flag;
  if (file === undefined)
    throw new UserError('no stage config', {
      kind: 'InvalidInput',
      fix: 'write `train configs/train/tiny/3s.toml` or `train --job.config_file configs/train/tiny/3s.toml`',
    });
  return { file, overrides: rest };
}

async function train(positional: string | undefined, o: TrainFlags, ctx: CliContext): Promise<void> {
  const { file: config, overrides } = trainConfigFile(positional, ctx.overrides);
  // `train` is the built-in trainer, whatever engine.preset says.
  const stage = loadStageConfig(config, overrides, { overrideSource: 'command line', builtinEngine: true });
  const c = stage.config;
  const dir = jobDir(c.job.dump_folder, c.job.exp_name);
  const display = progressDisplay(stage.video.stage);
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  // SIGUSR1 (an engine preset's stop_signal, Slurm's time-limit warning): save a checkpoint and end, exit code 0.
  let stopRequested = false;
  process.on('SIGUSR1', () => {
    stopRequested = true;
  });
  const init = stageInit(o.init || c.checkpoint.init_state_dir, dir);
  const { initFrom, conversion } = await prepareInit(
    init,
    { jobDir: dir, stage: stage.video.stage },
    { ssmLayer: c.model.ssm_layer, seed: c.training.seed, signal: ac.signal },
  );
  if (conversion)
    process.stdout.write(
      `init weights: ${conversion.reused ? 'kept the earlier conversion in' : 'converted CogVideoX weights into'} ${initFrom}\n`,
    );
  const request = {
    configFile: stage.file,
    overrides,
    jobDir: dir,
    initFrom,
    maxSteps: o.maxSteps ?? 0,
    maxSeconds: Number.POSITIVE_INFINITY,
    who: 'ttt-curriculum train',
  };
  const r = await runShard(request, {
    shouldStop: () => stopRequested || ac.signal.aborted,
    onProgress: display.onProgress,
  });
  display.stop();
  process.stdout.write(trainSummary(r));
}

export const register: Register = (program, ctx) => {
  program
    .command('train [config]')
    .description(
      'train one stage locally, without Temporal; resumes from the latest checkpoint of job.exp_name under job.dump_folder (the config may also be given as --job.config_file, as in TTT-Video-DiT); SIGINT or SIGUSR1 saves a checkpoint and ends',
    )
    .option('--init <dir>', 'initial weights folder (default: checkpoint.init_state_dir, else fresh)')
    .option('--max-steps <n>', 'stop after this many steps (the stage resumes next time)', toNumber)
    .action((config: string | undefined, o: TrainFlags) => train(config, o, ctx));
};
