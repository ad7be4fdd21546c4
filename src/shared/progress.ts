/**
 * The one-line texts that Temporal shows for a job: the workflow's current details and the
 * activity summaries in the UI and CLI, e.g. "stage 18s, step 420/1000, loss 0.183".
 * Pure functions, the one home of that text: used by the workflow (deterministic), the
 * activities, `status`, `watch` and `train`.
 */
import type { Progress } from './types';

/** Loss with three significant digits ("0.183", "1.02", "0.00412"); "-" when unknown. */
export function formatLoss(loss: number | null | undefined): string {
  if (loss === null || loss === undefined || !Number.isFinite(loss)) return '-';
  return String(Number(loss.toPrecision(3)));
}

/** "stage 18s, step 420/1000, loss 0.183" */
export function stepText(stage: string, step: number, totalSteps: number, loss: number | null): string {
  return `stage ${stage}, step ${step}/${totalSteps}, loss ${formatLoss(loss)}`;
}

/** The workflow's current details: where the job is and, when not simply running, its state. */
export function currentDetails(p: Progress): string {
  if (p.state === 'planning' || p.stage === null) return `${p.state}`;
  const done = p.completed.length;
  if (p.state === 'completed') {
    const last = p.completed[done - 1];
    return `completed ${done} stage${done === 1 ? '' : 's'} through ${last?.stage ?? p.stage}, last loss ${formatLoss(last?.lastLoss ?? null)}`;
  }
  const text = stepText(p.stage, p.step, p.totalSteps, p.lastLoss);
  const stageNo = `(stage ${p.stageIndex + 1} of ${p.stages.length})`;
  return p.state === 'running' ? `${text} ${stageNo}` : `${text} ${stageNo} [${p.state}]`;
}
