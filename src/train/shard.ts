/**
 * One training shard of one stage, without Temporal: resume from the stage's latest complete
 * checkpoint (or start from the init weights), train up to a step or wall-time bound,
 * checkpoint every `checkpoint.interval` steps and at the end. Used in-process by
 * `ttt-curriculum train`, and in a child process by the trainShard activity.
 *
 *   load and check the stage config -> open the run (lease, resume or init, step-0 validation
 *   loss and checkpoint) -> step until done or a bound: commit it (validation loss when due), or
 *   roll back after a non-finite loss -> save the last step
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeBackend, initBackend } from '../backend';
import { modelDims } from '../config/dims';
import { type LoadedStage, loadStageConfig } from '../config/load';
import type { StageConfig } from '../config/schema';
import type { SkipPolicy } from '../data/batch';
import { type BatchPrefetcher, openPrefetcher } from '../data/prefetch';
import { UserError } from '../errors';
import { type Logger, logger } from '../log';
import type { ModelDims } from '../model/dims';
import { disposeRopeTables, ropeForModel } from '../model/dit';
import { stageDir } from '../paths';
import { ModelState } from './model-state';
import { ShardRun } from './shard-run';
import type { ShardControl, ShardRequest, ShardResult } from './shard-types';
import { applyStep, disposeGradients, isFiniteStep, learningRates, stepGradients } from './step';
import { Validation } from './validation';

export type { CheckpointSaved, ShardControl, ShardProgress, ShardRequest, ShardResult } from './shard-types';
export { checkWeights } from './model-state';

/** The disk of the job folder is full. Retryable: the shard runs again once there is space. */
export class DiskFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskFullError';
  }
}

/**
 * Runs one shard. Resolves with where the stage stands; throws UserError for problems a user
 * must fix, DiskFullError when the job folder's disk fills up (nothing half-written is left:
 * checkpoints are written aside and renamed, and the previous ones stay intact).
 */
export async function runShard(req: ShardRequest, ctl: ShardControl = {}): Promise<ShardResult> {
  try {
    return await trainShard(req, ctl);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw e;
    throw new DiskFullError(
      `disk full: ${(e as Error).message} (${freeMegabytes(req.jobDir)} under ${req.jobDir}). Checkpoints are written aside and renamed, so the previous ones are intact; the shard is retried and continues from the last checkpoint once space is freed`,
    );
  }
}

async function trainShard(req: ShardRequest, ctl: ShardControl): Promise<ShardResult> {
  const t0 = Date.now();
  const stage = loadCheckedStage(req);
  const c = stage.config;
  const name = stage.video.stage;
  const backend = await initBackend(c.runtime.backend);
  const { deviceText: device } = describeBackend(); // "cpu: <model>, N threads" / "gpu: <model>"
  const dims = modelDims(c);
  const log = logger.child({
    job: req.logContext?.job ?? path.basename(req.jobDir),
    stage: name,
    ...(req.logContext?.attempt ? { attempt: req.logContext.attempt } : {}),
    backend,
    device,
    ...(req.logContext?.slurmJob ? { slurmJob: req.logContext.slurmJob } : {}),
  });
  const model = new ModelState(stage, dims);
  const rope = ropeForModel(dims);
  try {
    const validation = c.validation.samples > 0 ? new Validation(c, dims, rope) : null;
    const run = new ShardRun(
      stage,
      model,
      stageDir(req.jobDir, name),
      req.who ?? `pid ${process.pid}`,
      log,
      ctl,
      validation,
      // In every step line and progress report (status, heartbeats, metric labels).
      { backend, device },
    );
    run.open(req.initFrom);
    const startStep = run.step;
    const batches = stageBatches(c, dims, log, () => run.step);
    const bound = shardBound(req, c, t0, startStep, ctl);
    const accum = c.training.grad_accum_steps;
    let frozen = model.frozenParams();
    let reason: ShardResult['reason'] = 'done';
    run.openMetrics();
    try {
      while (run.step < run.total) {
        const ended = bound(run.step);
        if (ended) {
          reason = ended;
          break;
        }
        const ts = Date.now();
        const s = run.step + 1;
        const d = run.dataStep(s);
        const g = await stepGradients({ model, frozen, dims, rope }, accum, c.optimizer.gradient_clipping_norm, (a) =>
          batches.take(d, a),
        );
        if (!isFiniteStep(g)) {
          disposeGradients(g);
          const [loss, gradNorm] = [String(g.loss), String(g.gradNorm)];
          run.rollBack({ step: s, dataStep: d, samples: g.samples, loss, gradNorm });
          frozen = model.frozenParams();
          continue;
        }
        const lr = learningRates(s, run.total, c.optimizer);
        applyStep(model, g, lr);
        run.commit(s, g, lr, (Date.now() - ts) / 1000);
        // Let I/O (stop requests, parent liveness) through between steps.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      run.close();
      await batches.close();
    }
    run.finish();
    const done = run.step >= run.total;
    return {
      stage: name,
      step: run.step,
      totalSteps: run.total,
      done,
      startStep,
      stepsRun: run.step - startStep,
      firstLoss: run.firstLoss,
      lastLoss: run.lastLoss,
      valLoss: run.val?.loss ?? null,
      valStep: run.val?.step ?? null,
      checkpoint: run.checkpoint,
      seconds: (Date.now() - t0) / 1000,
      backend,
      device,
      reason: done ? 'done' : reason,
    };
  } finally {
    model.dispose();
    disposeRopeTables(rope);
  }
}

/** The stage config, refused if it changed since the job was planned. */
function loadCheckedStage(req: ShardRequest): LoadedStage {
  // This process is the built-in engine, whatever engine.preset says.
  const stage = loadStageConfig(req.configFile, req.overrides, { checkPaths: true, builtinEngine: true });
  if (req.expectedConfigHash && req.expectedConfigHash !== stage.hash) {
    throw new UserError('the stage config changed since the job was planned', {
      where: stage.file,
      kind: 'ConfigChanged',
      fix: 'restore the config, or start the job again so that it is planned with the new config',
    });
  }
  return stage;
}

/** Why the shard ends before the next step ("steps", "time", "stop"), or undefined to go on. */
function shardBound(
  req: ShardRequest,
  c: StageConfig,
  t0: number,
  startStep: number,
  ctl: ShardControl,
): (step: number) => ShardResult['reason'] | undefined {
  const maxSteps = req.maxSteps ?? c.shard.max_steps;
  const maxSeconds = req.maxSeconds ?? c.shard.max_seconds;
  return (step) => {
    if (maxSteps > 0 && step - startStep >= maxSteps) return 'steps';
    if (step > startStep && (Date.now() - t0) / 1000 >= maxSeconds) return 'time';
    if (ctl.shouldStop?.()) return 'stop';
    return undefined;
  };
}

/**
 * The stage's micro-batches, `take(dataStep, micro)`, read ahead on the prefetch thread while a step
 * runs. Each holds global_batch_size / grad_accum_steps samples: a step trains on the whole global
 * batch whatever the mesh says (the mesh describes devices; on one device it never changes the
 * math). Bad samples are skipped with a warning up to training.max_bad_samples.
 */
function stageBatches(c: StageConfig, dims: ModelDims, log: Logger, currentStep: () => number): BatchPrefetcher {
  const skip: SkipPolicy = {
    maxBad: c.training.max_bad_samples,
    bad: new Map<number, string>(),
    onSkip: (id, reason) => log.warn({ step: currentStep() + 1, sample: id, reason }, 'skipping a bad sample'),
  };
  return openPrefetcher({ config: c, dims, microSize: microBatchSize(c), accum: c.training.grad_accum_steps, skip });
}

/** Samples per micro-batch of the built-in engine: global_batch_size / grad_accum_steps, whatever the mesh. */
export function microBatchSize(c: Pick<StageConfig, 'training'>): number {
  return c.training.global_batch_size / c.training.grad_accum_steps;
}

function freeMegabytes(dir: string): string {
  try {
    const st = fs.statfsSync(dir);
    return `${((st.bavail * st.bsize) / 1e6).toFixed(1)} MB free`;
  } catch {
    return 'free space unknown';
  }
}
