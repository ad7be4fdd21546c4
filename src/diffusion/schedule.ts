/**
 * The diffusion objective: v-prediction on a 1000-step DDPM schedule whose betas are linear
 * in sqrt from 0.00085 to 0.012, rescaled to zero terminal SNR (Lin et al. 2024, as in
 * CogVideoX). Computed in float64.
 */
export const NUM_TRAIN_TIMESTEPS = 1000;
export const BETA_START = 0.00085;
export const BETA_END = 0.012;

/** Betas linear in sqrt ("scaled_linear"). */
export function scaledLinearBetas(n = NUM_TRAIN_TIMESTEPS, start = BETA_START, end = BETA_END): Float64Array {
  const out = new Float64Array(n);
  const a = Math.sqrt(start);
  const b = Math.sqrt(end);
  for (let i = 0; i < n; i++) {
    const s = a + ((b - a) * i) / (n - 1);
    out[i] = s * s;
  }
  return out;
}

/** Cumulative products of (1 - beta), rescaled so that the last one is exactly 0. */
export function alphasCumprodZeroSnr(betas: Float64Array = scaledLinearBetas()): Float64Array {
  const n = betas.length;
  const sqrtAc = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    prod *= 1 - betas[i]!;
    sqrtAc[i] = Math.sqrt(prod);
  }
  const s0 = sqrtAc[0]!;
  const sT = sqrtAc[n - 1]!;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = ((sqrtAc[i]! - sT) * s0) / (s0 - sT);
    out[i] = s * s;
  }
  return out;
}

export const ALPHAS_CUMPROD: Float64Array = alphasCumprodZeroSnr();

/** Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at timestep t. */
export function snr(t: number, ac: Float64Array = ALPHAS_CUMPROD): number {
  return ac[t]! / (1 - ac[t]!);
}
