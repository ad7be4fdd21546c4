/**
 * The mutable state of one shard of a stage: where training stands (step, losses, skipped
 * batches, the last checkpoint) and the operations that move it: open (resume or start),
 * commit a step (metrics line, validation loss when due, progress, periodic checkpoint), roll
 * back after a non-finite loss, save. Every write first checks the stage's lease, so a superseded writer (a zombie
 * attempt) stops before it writes anything.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lease } from '../checkpoint/lease';
import {
  latestCompleteCheckpoint,
  loadCheckpoint,
  loadModelWeights,
  type NonFiniteEvent,
  pruneCheckpoints,
  saveCheckpoint,
  tensorsHash,
  type VerifiedCheckpoint,
} from '../checkpoint/store';
import type { LoadedStage } from '../config/load';
import { UserError } from '../errors';
import type { Logger } from '../log';
import { checkpointsDir, metricsFile } from '../paths';
import type { MetricsFileLine, MetricsLine, ValidationLine } from './metrics';
import type { ModelState } from './model-state';
import type { CheckpointSaved, ShardControl } from './shard-types';
import type { StepGradients } from './step';
import type { Validation } from './validation';

export type { MetricsLine, ValidationLine } from './metrics';

export class ShardRun {
  step = 0;
  firstLoss: number | null = null;
  lastLoss: number | null = null;
  initHash: string | null = null;
  /** The checkpoint holding `step`. */
  checkpoint = '';
  /** Step of the last checkpoint this shard saved (or resumed from). */
  lastSaved = 0;
  /** Data steps whose batch gave a non-finite loss (stepped over), and those events. */
  skippedBatches: number[] = [];
  nonFinite: NonFiniteEvent[] = [];
  /** The last validation loss this shard measured, and the step it was measured after. */
  val: { step: number; loss: number } | null = null;
  readonly ckDir: string;
  private readonly lease: Lease;
  private metricsFd: number | undefined;

  constructor(
    readonly stage: LoadedStage,
    readonly model: ModelState,
    readonly stageDir: string,
    who: string,
    private readonly log: Logger,
    private readonly ctl: ShardControl,
    private readonly validation: Validation | null = null,
    /** The backend and device training runs on, in every step line and progress report. */
    private readonly runsOn: { backend: string; device: string } | null = null,
  ) {
    this.ckDir = checkpointsDir(stageDir);
    fs.mkdirSync(this.ckDir, { recursive: true });
    this.lease = Lease.acquire(stageDir, who);
  }

  get name(): string {
    return this.stage.video.stage;
  }

  get total(): number {
    return this.stage.config.training.steps;
  }

  /**
   * Resumes from the stage's latest complete checkpoint, or starts the stage from `initFrom`
   * (a weights folder; null = fresh seeded init), measures its validation loss and saves step 0
   * (auditable and resumable).
   */
  open(initFrom: string | null): void {
    try {
      this.openAt(initFrom);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private openAt(initFrom: string | null): void {
    const latest = this.latestValid();
    if (latest) {
      this.restore(latest);
      this.log.info(
        { step: this.step, checkpoint: this.checkpoint, lease: this.lease.epoch },
        'resuming from checkpoint',
      );
    } else {
      const weights = initFrom ? loadModelWeights(initFrom) : this.model.freshWeights(this.stage.config.training.seed);
      this.model.loadWeights(weights, initFrom ?? '(fresh initialisation)');
      this.initHash = tensorsHash(weights);
      this.log.info(
        { initFrom: initFrom ?? 'fresh', initHash: this.initHash, lease: this.lease.epoch },
        'starting stage',
      );
      this.validate(0);
      this.save();
    }
    this.lastSaved = this.step;
  }

  /** Opens the stage's metrics.jsonl for appending (closed by finish or close). */
  openMetrics(): void {
    if (this.metricsFd === undefined) this.metricsFd = fs.openSync(metricsFile(this.stageDir), 'a');
  }

  private writeMetrics(line: MetricsFileLine): void {
    this.openMetrics();
    fs.writeSync(this.metricsFd!, `${JSON.stringify(line)}\n`);
  }

  /** The data step (batch position) of training step s: skipped batches are stepped over. */
  dataStep(s: number): number {
    let d = s;
    for (const x of [...this.skippedBatches].sort((a, b) => a - b)) if (x <= d) d++;
    return d;
  }

  /**
   * Records trained step `step`: the metrics line, the validation loss when due, progress, and a
   * checkpoint every checkpoint.interval steps (after the validation line of its step).
   */
  commit(step: number, g: StepGradients, lr: { base: number; ttt: number }, stepTime: number): void {
    this.step = step;
    if (this.firstLoss === null) this.firstLoss = g.loss;
    this.lastLoss = g.loss;
    this.ctl.beforeWrite?.();
    this.lease.check(`writing step ${step}`);
    const line: MetricsLine = {
      stage: this.name,
      step,
      loss: g.loss,
      grad_norm: g.gradNorm,
      lr: lr.base,
      lr_ssm: lr.ttt,
      step_time: stepTime,
      data_time: g.dataSeconds,
      tokens_per_s: (g.samples.length * this.model.dims.seqLen) / stepTime,
      samples: g.samples.length,
      ...this.runsOn,
      time: new Date().toISOString(),
    };
    this.writeMetrics(line);
    this.validate(step);
    this.ctl.onProgress?.({
      stage: this.name,
      step,
      totalSteps: this.total,
      loss: g.loss,
      gradNorm: g.gradNorm,
      stepSeconds: stepTime,
      ...(this.val ? { valLoss: this.val.loss, valStep: this.val.step } : {}),
      ...this.runsOn,
    });
    if (step % this.stage.config.checkpoint.interval === 0 || step === this.total) this.save();
  }

  /**
   * Measures the validation loss of the current weights when it is due after `step`, and writes
   * its line. A function of the weights only: a step redone after a resume measures the same value.
   */
  private validate(step: number): void {
    if (!this.validation?.due(step, this.total)) return;
    const v = this.validation.measure(this.model.params);
    this.ctl.beforeWrite?.();
    this.lease.check(`writing the validation loss of step ${step}`);
    const finite = Number.isFinite(v.loss);
    const line: ValidationLine = {
      stage: this.name,
      step,
      val_loss: finite ? v.loss : null,
      val_time: v.seconds,
      time: new Date().toISOString(),
    };
    this.writeMetrics(line);
    if (finite) this.val = { step, loss: v.loss };
    this.log.info({ step, valLoss: finite ? v.loss : String(v.loss), seconds: v.seconds }, 'validation loss');
  }

  /**
   * After a non-finite loss at step s (data step d): fails the stage once there were more such
   * events than training.max_nonfinite_losses; otherwise restores the last good checkpoint and
   * steps over batch d from now on.
   */
  rollBack(event: NonFiniteEvent): void {
    this.lease.check(`rolling back step ${event.step}`);
    const events = [...this.nonFinite, event];
    const limit = this.stage.config.training.max_nonfinite_losses;
    if (events.length > limit) throw nonFiniteLimitError(this.name, events, limit);
    const good = this.latestValid();
    if (!good)
      throw new Error(`non-finite loss at step ${event.step} of stage ${this.name}, and no checkpoint to roll back to`);
    const skipped = [...this.skippedBatches, event.dataStep];
    this.restore(good);
    this.nonFinite = events;
    this.skippedBatches = skipped;
    this.log.warn(
      {
        step: event.step,
        dataStep: event.dataStep,
        samples: event.samples,
        loss: event.loss,
        gradNorm: event.gradNorm,
        rolledBackTo: this.step,
        events: events.length,
      },
      'non-finite loss: rolled back to the last good checkpoint; this batch is skipped',
    );
  }

  /** Saves the current step unless it is already the last checkpoint; closes the metrics file. */
  finish(): void {
    this.close();
    if (this.lastSaved !== this.step || !this.checkpoint) this.save();
  }

  close(): void {
    if (this.metricsFd !== undefined) fs.closeSync(this.metricsFd);
    this.metricsFd = undefined;
  }

  /** Writes a checkpoint of the current step (written aside, renamed into place) and prunes old ones. */
  save(): void {
    const ts = process.hrtime.bigint();
    const c = this.stage.config;
    const step = this.step;
    const dir = saveCheckpoint(
      this.ckDir,
      {
        model: this.model.modelTensors(),
        optimizer: this.model.optimizerTensors(),
        state: {
          step,
          stage: this.name,
          totalSteps: this.total,
          samplesSeen: (step === 0 ? 0 : this.dataStep(step)) * c.training.global_batch_size,
          seed: c.training.seed,
          firstLoss: this.firstLoss,
          lastLoss: this.lastLoss,
          initHash: this.initHash,
          configHash: this.stage.hash,
          lease: this.lease.epoch,
          skippedBatches: this.skippedBatches,
          nonFinite: this.nonFinite,
        },
      },
      {
        beforeRename: (tmp) => {
          this.lease.check(`saving the step-${step} checkpoint`);
          this.ctl.saveHooks?.beforeRename?.(tmp);
        },
      },
    );
    const saved: CheckpointSaved = {
      dir,
      step,
      seconds: Number(process.hrtime.bigint() - ts) / 1e9,
      bytes: fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0),
    };
    this.checkpoint = dir;
    this.lastSaved = step;
    pruneCheckpoints(this.ckDir, c.checkpoint.keep);
    this.ctl.onCheckpoint?.(saved);
    this.log.info({ step, checkpoint: dir, seconds: saved.seconds, bytes: saved.bytes }, 'checkpoint saved');
  }

  private restore(ck: VerifiedCheckpoint): void {
    const loaded = loadCheckpoint(ck);
    this.model.loadWeights(loaded.model, ck.dir);
    if (loaded.optimizer) this.model.loadOptimizer(loaded.optimizer, loaded.state.step);
    this.step = loaded.state.step;
    this.firstLoss = loaded.state.firstLoss;
    this.lastLoss = loaded.state.lastLoss;
    this.initHash = loaded.state.initHash;
    this.skippedBatches = loaded.state.skippedBatches ?? [];
    this.nonFinite = loaded.state.nonFinite ?? [];
    this.checkpoint = ck.dir;
  }

  private latestValid(): VerifiedCheckpoint | undefined {
    return latestCompleteCheckpoint(this.ckDir, (dir, reason) =>
      this.log.warn({ dir, reason }, 'skipping unusable checkpoint (falling back to an earlier one)'),
    );
  }
}

function nonFiniteLimitError(stage: string, events: NonFiniteEvent[], limit: number): UserError {
  const list = events
    .map((e) => `step ${e.step} (loss ${e.loss}, grad norm ${e.gradNorm}, samples ${e.samples.join(', ')})`)
    .join('; ');
  return new UserError(
    `non-finite loss or gradient ${events.length} times in stage ${stage}, more than training.max_nonfinite_losses = ${limit}: ${list}`,
    {
      kind: 'NonFiniteLoss',
      where: `stage ${stage}`,
      fix: 'check those samples for NaN/Inf values, lower the learning rate or the gradient clipping norm, or resume from an earlier checkpoint',
    },
  );
}
