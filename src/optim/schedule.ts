export type DecayKind = 'linear' | 'cosine' | 'constant';

/**
 * Learning rate for optimizer step `step` (1-based: the step being applied): linear warmup
 * from peak/warmup to peak over `warmup` steps, then decay to `end` at step `total`.
 */
export function learningRate(step: number, opts: { peak: number; end: number; warmup: number; total: number; decay: DecayKind }): number {
  const { peak, end, warmup, total, decay } = opts;
  if (warmup > 0 && step <= warmup) return (peak * step) / warmup;
  if (decay === 'constant' || total <= warmup) return peak;
  const p = Math.min(1, Math.max(0, (step - warmup) / (total - warmup)));
  if (decay === 'linear') return end + (peak - end) * (1 - p);
  return end + (peak - end) * 0.5 * (1 + Math.cos(Math.PI * p));
}
