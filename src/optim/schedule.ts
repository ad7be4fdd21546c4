export type DecayKind = 'linear' | 'cosine' | 'constant';

/**
 * Learning rate for optimizer step `step` (1-based: the step being applied), as TTT-Video-DiT's
 * schedule computes it from the 0-based index i = step - 1: linear warmup peak*(i+1)/warmup for
 * i < warmup, then with p = (i - warmup)/(total - warmup) linear decay peak - p*(peak - end) or
 * cosine decay end + (peak - end)*(1 + cos(pi p))/2.
 */
export function learningRate(
  step: number,
  opts: { peak: number; end: number; warmup: number; total: number; decay: DecayKind },
): number {
  const { peak, end, warmup, total, decay } = opts;
  const i = step - 1;
  if (i < warmup) return (peak * (i + 1)) / warmup;
  if (decay === 'constant' || total <= warmup) return peak;
  const p = Math.min(1, Math.max(0, (i - warmup) / (total - warmup)));
  if (decay === 'linear') return end + (peak - end) * (1 - p);
  return end + (peak - end) * 0.5 * (1 + Math.cos(Math.PI * p));
}
