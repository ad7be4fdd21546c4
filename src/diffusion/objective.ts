/**
 * The training objective: v-prediction on the zero-terminal-SNR schedule (schedule.ts). A clean
 * latent x0 at timestep t with noise eps becomes x_t = a·x0 + s·eps, with a = sqrt(alphā_t) and
 * s = sqrt(1 - alphā_t); the model predicts v = a·eps - s·x0, and the loss is the mean squared
 * error of that prediction.
 */
import type { tf } from '../backend';
import { rngFor, STREAM } from '../rng';
import { ALPHAS_CUMPROD, NUM_TRAIN_TIMESTEPS } from './schedule';

/** The timestep of batch slot `slot` at optimizer step `step`: uniform over the schedule, seeded. */
export function sampleTimestep(seed: number, step: number, slot: number): number {
  return Math.floor(rngFor(seed, STREAM.timestep, step, slot)() * NUM_TRAIN_TIMESTEPS);
}

/**
 * Writes x_t into `noisy` and the v-target into `target` (float32, as the model sees them), with
 * the noise drawn from `noise` (rng.ts normalSource) in element order, in the same pass: no noise
 * array (for a 63 s latent, 22 M values) is written or read back. `noisy` may be `x0` itself.
 */
export function noiseAndTarget(
  x0: Float32Array,
  noise: () => number,
  t: number,
  noisy: Float32Array,
  target: Float32Array,
): void {
  const a = Math.fround(Math.sqrt(ALPHAS_CUMPROD[t]!));
  const s = Math.fround(Math.sqrt(1 - a * a));
  for (let i = 0; i < x0.length; i++) {
    const eps = Math.fround(noise());
    const x = x0[i]!;
    noisy[i] = a * x + s * eps;
    target[i] = a * eps - s * x;
  }
}

/** Mean squared error of the predicted v against the target. */
export function vPredictionLoss(pred: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return pred.sub(target).square().mean() as tf.Scalar;
}
