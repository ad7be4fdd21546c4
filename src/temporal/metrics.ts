/**
 * Our Prometheus metrics. They are created on the Temporal SDK's own metric meter, so the
 * worker exposes them on the same endpoint as Temporal's metrics (`worker --metrics-port`):
 * one scrape target, no second HTTP server. The training child reports steps and checkpoints
 * over the line protocol; the trainShard activity records them here.
 *
 *   ttt_steps_total{job,stage}                 optimizer steps trained
 *   ttt_step{job,stage}                        current step of the stage
 *   ttt_loss{job,stage}                        loss of the last step
 *   ttt_grad_norm{job,stage}                   gradient norm (before clipping) of the last step
 *   ttt_val_loss{job,stage}                    validation loss last measured (validation.*)
 *   ttt_step_seconds{job,stage}                histogram of step times
 *   ttt_checkpoints_total{job,stage}           checkpoints saved
 *   ttt_checkpoint_save_seconds{job,stage}     histogram of checkpoint save times
 *   ttt_checkpoint_bytes_total{job,stage}      bytes written by checkpoint saves
 *   ttt_checkpoint_size_bytes{job,stage}       size of the last checkpoint
 *
 * Step metrics also carry the shard's backend as labels: backend ("tensorflow", "wasm", "cpu")
 * and device (describeBackend's one line: "cpu: <processor>, N threads" or "gpu: <GPU model>").
 */
import type { MetricMeter, MetricTags } from '@temporalio/common';
import type { ShardProgress } from '../shared/types';
import type { CheckpointSaved } from '../train/shard-types';

/** Histogram buckets (seconds): a tiny model steps in milliseconds, the 5B model in minutes. */
export const HISTOGRAM_BUCKETS: Record<string, number[]> = {
  ttt_step_seconds: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
  ttt_checkpoint_save_seconds: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
};

export interface TrainingMetrics {
  step(p: ShardProgress): void;
  checkpoint(c: CheckpointSaved): void;
}

export function trainingMetrics(meter: MetricMeter, tags: { job: string; stage: string }): TrainingMetrics {
  const m = meter.withTags(tags);
  const steps = m.createCounter('ttt_steps', 'steps', 'Optimizer steps trained');
  const step = m.createGauge('ttt_step', 'int', 'steps', 'Current step of the stage');
  const loss = m.createGauge('ttt_loss', 'float', '', 'Loss of the last step');
  const gradNorm = m.createGauge('ttt_grad_norm', 'float', '', 'Gradient norm (before clipping) of the last step');
  const valLoss = m.createGauge(
    'ttt_val_loss',
    'float',
    '',
    'Validation loss last measured (fixed samples and timesteps)',
  );
  const stepSeconds = m.createHistogram('ttt_step_seconds', 'float', 's', 'Time of one optimizer step');
  const checkpoints = m.createCounter('ttt_checkpoints', 'checkpoints', 'Checkpoints saved');
  const saveSeconds = m.createHistogram(
    'ttt_checkpoint_save_seconds',
    'float',
    's',
    'Time to save one checkpoint (write, fsync, rename)',
  );
  const bytes = m.createCounter('ttt_checkpoint_bytes', 'bytes', 'Bytes written by checkpoint saves');
  const size = m.createGauge('ttt_checkpoint_size_bytes', 'int', 'bytes', 'Size of the last checkpoint');
  return {
    step(p) {
      const b: MetricTags = p.backend ? { backend: p.backend, device: p.device ?? '' } : {};
      steps.add(1, b);
      step.set(p.step, b);
      if (p.loss !== null) loss.set(p.loss, b);
      if (p.gradNorm !== null) gradNorm.set(p.gradNorm, b);
      if (p.valLoss !== undefined) valLoss.set(p.valLoss, b);
      if (p.stepSeconds !== null) stepSeconds.record(p.stepSeconds, b);
    },
    checkpoint(c) {
      checkpoints.add(1);
      saveSeconds.record(c.seconds);
      bytes.add(c.bytes);
      size.set(c.bytes);
    },
  };
}
