/**
 * One training shard of one stage, without Temporal: resume from the stage's latest complete
 * checkpoint (or start from the init weights), train up to a step or wall-time bound,
 * checkpoint every `checkpoint.interval` steps and at the end. Used in-process by
 * `ttt-curriculum train`, and in a child process by the trainShard activity.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, tf } from '../backend';
import { Lease } from '../checkpoint/lease';
import {
  latestCompleteCheckpoint,
  loadCheckpoint,
  loadModelWeights,
  pruneCheckpoints,
  saveCheckpoint,
  tensorsHash,
  type NonFiniteEvent,
  type SaveHooks,
  type VerifiedCheckpoint,
} from '../checkpoint/store';
import type { FloatTensor } from '../io/safetensors';
import { loadStageConfig, type LoadedStage, type Overrides } from '../config/load';
import { UserError } from '../errors';
import { disposeBatch, makeBatch, openDataSource } from '../data/batch';
import { logger } from '../log';
import { modelDims } from '../config/dims';
import type { ModelDims } from '../model/dims';
import { disposeRopeTables, ditForward, ropeForModel, type Params } from '../model/dit';
import {
  hasWeightDecay,
  initialValue,
  isTrainable,
  isTttParam,
  paramSpecs,
  toInternal,
  toTorch,
  type ParamSpec,
} from '../model/params';
import { AdamW, clipGlobalNorm } from '../optim/adamw';
import { learningRate } from '../optim/schedule';
import { checkpointsDir, metricsFile, stageDir } from '../paths';
import type { ShardProgress, ShardSummary } from '../shared/types';

export type { ShardProgress };

export interface ShardRequest {
  /** Stage config file and overrides (the same ones the workflow validated). */
  configFile: string;
  overrides: Overrides;
  /** Absolute job folder: dump_folder/<job name>. */
  jobDir: string;
  /** Weights for step 0 when the stage has no checkpoint yet: a weights folder, or null for a fresh initialisation. */
  initFrom: string | null;
  /** Bounds of this shard (default: the config's shard.max_steps / shard.max_seconds). */
  maxSteps?: number;
  maxSeconds?: number;
  /** Refuse to run if the config no longer has this hash (edited under a running job). */
  expectedConfigHash?: string;
  /** Who writes, for the stage's lease (e.g. the workflow and activity attempt). */
  who?: string;
  /** Bound into every log line of the shard (default job: the job folder's name). */
  logContext?: { job?: string; attempt?: number };
}

/** A shard's outcome: the summary that goes to the workflow, plus the hash of the stage's init weights. */
export interface ShardResult extends ShardSummary {
  initHash: string | null;
}

/** A saved checkpoint: where, which step, how long the save took and how many bytes it wrote. */
export interface CheckpointSaved {
  dir: string;
  step: number;
  seconds: number;
  bytes: number;
}

export interface ShardControl {
  onProgress?: (p: ShardProgress) => void;
  onCheckpoint?: (c: CheckpointSaved) => void;
  /** Checked between steps: true = save a checkpoint and return now. */
  shouldStop?: () => boolean;
  /** Called right before each write of the shard (metrics line, checkpoint); may end the process. */
  beforeWrite?: () => void;
  saveHooks?: SaveHooks;
}

/** Checks a weights map against the parameter specs; lists every missing, unexpected or mis-shaped tensor. */
export function checkWeights(specs: ParamSpec[], weights: Map<string, FloatTensor>, where: string): void {
  const expected = new Map(specs.map((s) => [s.name, s.torchShape]));
  const missing = [...expected.keys()].filter((k) => !weights.has(k));
  const unexpected = [...weights.keys()].filter((k) => !expected.has(k));
  const misshaped = [...weights.entries()]
    .filter(([k, t]) => expected.has(k) && JSON.stringify(t.shape) !== JSON.stringify(expected.get(k)))
    .map(([k, t]) => `${k} is [${t.shape.join(',')}], expected [${expected.get(k)!.join(',')}]`);
  if (missing.length + unexpected.length + misshaped.length > 0) {
    const list = (title: string, xs: string[]): string =>
      xs.length ? `${title} (${xs.length}): ${xs.slice(0, 20).join(', ')}${xs.length > 20 ? ', ...' : ''}` : '';
    throw new UserError(
      [
        'weights do not match the model config',
        list('missing', missing),
        list('unexpected', unexpected),
        list('wrong shape', misshaped),
      ]
        .filter(Boolean)
        .join('; '),
      {
        where,
        kind: 'CheckpointError',
        fix: 'use weights converted for this model size (model.* dimensions and model.ssm_layer must match)',
      },
    );
  }
}

/** Model state of a trainer: parameters (internal layout) and the optimizer. */
class ModelState {
  readonly params = new Map<string, tf.Tensor>();
  readonly specs: ParamSpec[];
  readonly bySpec: Map<string, ParamSpec>;
  readonly trainable: string[];
  optimizer: AdamW;

  constructor(
    readonly stage: LoadedStage,
    readonly dims: ModelDims,
  ) {
    this.specs = paramSpecs(dims);
    this.bySpec = new Map(this.specs.map((s) => [s.name, s]));
    const adapter = stage.config.model.adapter_method;
    this.trainable = this.specs.filter((s) => isTrainable(s.name, adapter)).map((s) => s.name);
    const o = stage.config.optimizer;
    this.optimizer = new AdamW(
      new Map(this.trainable.map((n) => [n, { group: isTttParam(n) ? 'ttt' : 'base', decay: hasWeightDecay(n) }])),
      {
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weightDecay: o.weight_decay,
      },
    );
  }

  loadWeights(weights: Map<string, FloatTensor>, where: string): void {
    checkWeights(this.specs, weights, where);
    for (const s of this.specs) {
      this.params.get(s.name)?.dispose();
      this.params.set(s.name, toInternal(s, weights.get(s.name)!.data));
    }
  }

  freshWeights(seed: number): Map<string, FloatTensor> {
    return new Map(this.specs.map((s) => [s.name, { shape: s.torchShape, data: initialValue(s, seed) }]));
  }

  loadOptimizer(opt: Map<string, FloatTensor>, step: number): void {
    for (const n of this.trainable) {
      const s = this.bySpec.get(n)!;
      const m = opt.get(`${n}.exp_avg`);
      const v = opt.get(`${n}.exp_avg_sq`);
      if (!m || !v) throw new Error(`optimizer state lacks ${n}`);
      this.optimizer.m.get(n)?.dispose();
      this.optimizer.v.get(n)?.dispose();
      this.optimizer.m.set(n, toInternal(s, m.data));
      this.optimizer.v.set(n, toInternal(s, v.data));
    }
    this.optimizer.step = step;
  }

  modelTensors(): Map<string, FloatTensor> {
    return new Map(this.specs.map((s) => [s.name, toTorch(s, this.params.get(s.name)!)]));
  }

  optimizerTensors(): Map<string, FloatTensor> {
    const out = new Map<string, FloatTensor>();
    for (const n of this.trainable) {
      const s = this.bySpec.get(n)!;
      // A moment the optimizer has not created yet (no step taken) is zero.
      const moment = (t: tf.Tensor | undefined): FloatTensor =>
        t ? toTorch(s, t) : { shape: s.torchShape, data: new Float32Array(s.torchShape.reduce((a, b) => a * b, 1)) };
      out.set(`${n}.exp_avg`, moment(this.optimizer.m.get(n)));
      out.set(`${n}.exp_avg_sq`, moment(this.optimizer.v.get(n)));
    }
    return out;
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
    this.optimizer.dispose();
  }
}

/** The disk of the job folder is full. Retryable: the shard runs again once there is space. */
export class DiskFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskFullError';
  }
}

function freeMegabytes(dir: string): string {
  try {
    const st = fs.statfsSync(dir);
    return `${((st.bavail * st.bsize) / 1e6).toFixed(1)} MB free`;
  } catch {
    return 'free space unknown';
  }
}

/**
 * Runs one shard. Resolves with where the stage stands; throws UserError for problems a user
 * must fix, DiskFullError when the job folder's disk fills up (nothing half-written is left:
 * checkpoints are written aside and renamed, and the previous ones stay intact).
 */
export async function runShard(req: ShardRequest, ctl: ShardControl = {}): Promise<ShardResult> {
  try {
    return await runShardUnguarded(req, ctl);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw e;
    throw new DiskFullError(
      `disk full: ${(e as Error).message} (${freeMegabytes(req.jobDir)} under ${req.jobDir}). Checkpoints are written aside and renamed, so the previous ones are intact; the shard is retried and continues from the last checkpoint once space is freed`,
    );
  }
}

async function runShardUnguarded(req: ShardRequest, ctl: ShardControl): Promise<ShardResult> {
  const t0 = Date.now();
  const stage = loadStageConfig(req.configFile, req.overrides, { checkPaths: true });
  if (req.expectedConfigHash && req.expectedConfigHash !== stage.hash) {
    throw new UserError('the stage config changed since the job was planned', {
      where: stage.file,
      kind: 'ConfigChanged',
      fix: 'restore the config, or start the job again so that it is planned with the new config',
    });
  }
  const c = stage.config;
  const backend = await initBackend(c.runtime.backend);
  const dims = modelDims(c);
  const name = stage.video.stage;
  const sDir = stageDir(req.jobDir, name);
  const ckDir = checkpointsDir(sDir);
  fs.mkdirSync(ckDir, { recursive: true });
  const log = logger.child({
    job: req.logContext?.job ?? path.basename(req.jobDir),
    stage: name,
    ...(req.logContext?.attempt ? { attempt: req.logContext.attempt } : {}),
  });
  const total = c.training.steps;
  const model = new ModelState(stage, dims);
  const rope = ropeForModel(dims);
  try {
    let step = 0;
    let firstLoss: number | null = null;
    let lastLoss: number | null = null;
    let initHash: string | null = null;
    let checkpoint = '';
    // Data steps whose batch gave a non-finite loss (skipped), and those events.
    let skippedBatches: number[] = [];
    let nonFinite: NonFiniteEvent[] = [];
    // The newest writer of the stage: an older attempt still alive (a zombie) stops at its next write.
    const lease = Lease.acquire(sDir, req.who ?? `pid ${process.pid}`);
    const restore = (ck: VerifiedCheckpoint): void => {
      const loaded = loadCheckpoint(ck);
      model.loadWeights(loaded.model, ck.dir);
      if (loaded.optimizer) model.loadOptimizer(loaded.optimizer, loaded.state.step);
      step = loaded.state.step;
      firstLoss = loaded.state.firstLoss;
      lastLoss = loaded.state.lastLoss;
      initHash = loaded.state.initHash;
      skippedBatches = loaded.state.skippedBatches ?? [];
      nonFinite = loaded.state.nonFinite ?? [];
      checkpoint = ck.dir;
    };
    const latestValid = (): VerifiedCheckpoint | undefined =>
      latestCompleteCheckpoint(ckDir, (dir, reason) =>
        log.warn({ dir, reason }, 'skipping unusable checkpoint (falling back to an earlier one)'),
      );
    const latest = latestValid();
    if (latest) {
      restore(latest);
      log.info({ step, checkpoint, lease: lease.epoch }, 'resuming from checkpoint');
    } else {
      const weights = req.initFrom ? loadModelWeights(req.initFrom) : model.freshWeights(c.training.seed);
      model.loadWeights(weights, req.initFrom ?? '(fresh initialisation)');
      initHash = tensorsHash(weights);
      log.info({ initFrom: req.initFrom ?? 'fresh', initHash, lease: lease.epoch }, 'starting stage');
    }
    const startStep = step;
    /** The data step (batch position) of training step s: skipped batches are stepped over. */
    const dataStep = (s: number): number => {
      let d = s;
      for (const x of [...skippedBatches].sort((a, b) => a - b)) if (x <= d) d++;
      return d;
    };
    const save = (): void => {
      const ts = process.hrtime.bigint();
      const dir = saveCheckpoint(
        ckDir,
        {
          model: model.modelTensors(),
          optimizer: model.optimizerTensors(),
          state: {
            step,
            stage: name,
            totalSteps: total,
            samplesSeen: (step === 0 ? 0 : dataStep(step)) * c.training.global_batch_size,
            seed: c.training.seed,
            firstLoss,
            lastLoss,
            initHash,
            configHash: stage.hash,
            lease: lease.epoch,
            skippedBatches,
            nonFinite,
          },
        },
        {
          beforeRename: (tmp) => {
            lease.check(`saving the step-${step} checkpoint`);
            ctl.saveHooks?.beforeRename?.(tmp);
          },
        },
      );
      const seconds = Number(process.hrtime.bigint() - ts) / 1e9;
      checkpoint = dir;
      const bytes = fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
      pruneCheckpoints(ckDir, c.checkpoint.keep);
      ctl.onCheckpoint?.({ dir, step, seconds, bytes });
      log.info({ step, checkpoint: dir, seconds, bytes }, 'checkpoint saved');
    };
    if (step === 0 && !latest) save(); // step-0 checkpoint: the stage's init weights, auditable and resumable
    const maxSteps = req.maxSteps ?? c.shard.max_steps;
    const maxSeconds = req.maxSeconds ?? c.shard.max_seconds;
    const src = openDataSource(c, dims);
    const permCache = new Map<number, number[]>();
    const skip = {
      maxBad: c.training.max_bad_samples,
      bad: new Map<number, string>(),
      onSkip: (id: number, reason: string) => log.warn({ step: step + 1, sample: id, reason }, 'skipping a bad sample'),
    };
    const accum = c.training.grad_accum_steps;
    const micro = c.training.global_batch_size / (c.parallelism.dp_replicate * c.parallelism.dp_sharding) / accum;
    const trainableSet = new Set(model.trainable);
    // Frozen parameters never change during the shard: one map for every step (rebuilt after a rollback).
    const frozenParams = (): Params => Object.fromEntries([...model.params].filter(([n]) => !trainableSet.has(n)));
    let frozen = frozenParams();
    const o = c.optimizer;
    const metrics = fs.openSync(metricsFile(sDir), 'a');
    let reason: ShardResult['reason'] = 'done';
    let lastSaved = step;
    try {
      while (step < total) {
        if (maxSteps > 0 && step - startStep >= maxSteps) {
          reason = 'steps';
          break;
        }
        if (step > startStep && (Date.now() - t0) / 1000 >= maxSeconds) {
          reason = 'time';
          break;
        }
        if (ctl.shouldStop?.()) {
          reason = 'stop';
          break;
        }
        const ts = Date.now();
        const s = step + 1;
        const d = dataStep(s);
        let dataMs = 0;
        let lossSum = 0;
        const samples: number[] = [];
        const gradSum = new Map<string, tf.Tensor>();
        for (let a = 0; a < accum; a++) {
          const td = Date.now();
          const batch = makeBatch(
            src,
            dims,
            c.training.seed,
            d,
            c.training.global_batch_size,
            a,
            micro,
            permCache,
            skip,
          );
          samples.push(...batch.sampleIds);
          dataMs += Date.now() - td;
          const names = model.trainable;
          const f = (...xs: tf.Tensor[]): tf.Scalar => {
            const P: Params = { ...frozen };
            names.forEach((n, i) => (P[n] = xs[i]!));
            const pred = ditForward(
              P,
              dims,
              { video: batch.noisy, text: batch.text, timesteps: batch.timesteps },
              rope,
            );
            return pred.sub(batch.target).square().mean() as tf.Scalar;
          };
          const { value, grads } = tf.valueAndGrads(f)(names.map((n) => model.params.get(n)!));
          lossSum += value.dataSync()[0]! / accum;
          value.dispose();
          names.forEach((n, i) => {
            const g = grads[i]!;
            const scaled = accum === 1 ? g : tf.tidy(() => g.mul(1 / accum));
            if (scaled !== g) g.dispose();
            const prev = gradSum.get(n);
            if (prev) {
              gradSum.set(n, prev.add(scaled));
              prev.dispose();
              scaled.dispose();
            } else gradSum.set(n, scaled);
          });
          disposeBatch(batch);
        }
        const gradNorm = clipGlobalNorm(gradSum, o.gradient_clipping_norm);
        if (!Number.isFinite(lossSum) || !Number.isFinite(gradNorm)) {
          for (const g of gradSum.values()) g.dispose();
          lease.check(`rolling back step ${s}`);
          const event: NonFiniteEvent = {
            step: s,
            dataStep: d,
            samples,
            loss: String(lossSum),
            gradNorm: String(gradNorm),
          };
          const events = [...nonFinite, event];
          if (events.length > c.training.max_nonfinite_losses) {
            throw new UserError(
              `non-finite loss or gradient ${events.length} times in stage ${name}, more than training.max_nonfinite_losses = ${c.training.max_nonfinite_losses}: ${events.map((e) => `step ${e.step} (loss ${e.loss}, grad norm ${e.gradNorm}, samples ${e.samples.join(', ')})`).join('; ')}`,
              {
                kind: 'NonFiniteLoss',
                where: `stage ${name}`,
                fix: 'check those samples for NaN/Inf values, lower the learning rate or the gradient clipping norm, or resume from an earlier checkpoint',
              },
            );
          }
          // Roll back to the last good checkpoint and step over this batch from now on.
          const good = latestValid();
          if (!good)
            throw new Error(`non-finite loss at step ${s} of stage ${name}, and no checkpoint to roll back to`);
          const skipped = [...skippedBatches, d];
          restore(good);
          frozen = frozenParams();
          nonFinite = events;
          skippedBatches = skipped;
          log.warn(
            {
              step: s,
              dataStep: d,
              samples,
              loss: event.loss,
              gradNorm: event.gradNorm,
              rolledBackTo: step,
              events: events.length,
            },
            'non-finite loss: rolled back to the last good checkpoint; this batch is skipped',
          );
          continue;
        }
        const lr = {
          base: learningRate(s, { peak: o.lr, end: o.lr_end, warmup: o.warmup_steps, total, decay: o.lr_schedule }),
          ttt: learningRate(s, {
            peak: o.lr_ssm,
            end: o.lr_end,
            warmup: o.warmup_steps,
            total,
            decay: o.lr_ssm_schedule,
          }),
        };
        model.optimizer.apply(model.params, gradSum, lr);
        for (const g of gradSum.values()) g.dispose();
        step = s;
        if (firstLoss === null) firstLoss = lossSum;
        lastLoss = lossSum;
        const stepSeconds = (Date.now() - ts) / 1000;
        ctl.beforeWrite?.();
        lease.check(`writing step ${step}`);
        const tokens = c.training.global_batch_size * dims.seqLen;
        fs.writeSync(
          metrics,
          `${JSON.stringify({
            stage: name,
            step,
            loss: lossSum,
            grad_norm: gradNorm,
            lr: lr.base,
            lr_ssm: lr.ttt,
            step_time: stepSeconds,
            data_time: dataMs / 1000,
            tokens_per_s: tokens / stepSeconds,
            time: new Date().toISOString(),
          })}\n`,
        );
        ctl.onProgress?.({ stage: name, step, totalSteps: total, loss: lossSum, gradNorm, stepSeconds });
        if (step % c.checkpoint.interval === 0 || step === total) {
          save();
          lastSaved = step;
        }
        // Let I/O (stop requests, parent liveness) through between steps.
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      fs.closeSync(metrics);
    }
    if (lastSaved !== step || !checkpoint) save();
    return {
      stage: name,
      step,
      totalSteps: total,
      done: step >= total,
      startStep,
      stepsRun: step - startStep,
      firstLoss,
      lastLoss,
      checkpoint,
      initHash,
      seconds: (Date.now() - t0) / 1000,
      backend,
      reason: step >= total ? 'done' : reason,
    };
  } finally {
    model.dispose();
    disposeRopeTables(rope);
  }
}
