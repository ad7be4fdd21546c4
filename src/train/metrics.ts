/**
 * The stage's metrics.jsonl: one JSON object per line, appended by the training shard.
 *
 *   step line        {"stage","step","loss","grad_norm","lr","lr_ssm","step_time","data_time","tokens_per_s","samples","backend","device","time"}
 *                    one per trained step (a step redone after a crash or a retry has a line again);
 *                    backend and device are what training ran on (describeBackend), so that a
 *                    trainer watched only through this file (a Slurm job) shows them too
 *   validation line  {"stage","step","val_loss","val_time","time"}
 *                    the validation loss of the weights after `step` steps (0: the stage's start
 *                    weights); written before the checkpoint of that step, so a resumed stage
 *                    never misses one (a step redone writes it again, with the same value)
 *
 * A step line has `loss`; a validation line has `val_loss` (null when it was not finite) and no `loss`.
 */
import * as fs from 'node:fs';
import { UserError } from '../errors';

/** A step line of the stage's metrics.jsonl. */
export interface MetricsLine {
  stage: string;
  step: number;
  loss: number;
  grad_norm: number;
  lr: number;
  lr_ssm: number;
  step_time: number;
  data_time: number;
  tokens_per_s: number;
  /** Samples the step trained on (the built-in engine: training.global_batch_size). */
  samples?: number;
  /** The backend the step ran on ("tensorflow", "wasm", "cpu"). */
  backend?: string;
  /** Its device: "cpu: <model>, N threads" or "gpu: <model>". */
  device?: string;
  time: string;
}

/** A validation line of the stage's metrics.jsonl (see src/train/validation.ts). */
export interface ValidationLine {
  stage: string;
  step: number;
  /** null when not finite (JSON has no NaN or Infinity). */
  val_loss: number | null;
  /** Seconds the measurement took. */
  val_time: number;
  time: string;
}

export type MetricsFileLine = MetricsLine | ValidationLine;

export function isValidationLine(l: unknown): l is ValidationLine {
  const o = l as Partial<ValidationLine> & { loss?: unknown };
  return o !== null && typeof o === 'object' && 'val_loss' in o && o.loss === undefined;
}

export interface StageMetrics {
  steps: MetricsLine[];
  validation: ValidationLine[];
}

/**
 * The lines of a metrics.jsonl file, step lines and validation lines apart, in file order; none
 * when there is no file. A last line cut short by a crash in the middle of a write is skipped;
 * any other line that is not JSON is a UserError naming it.
 */
export function readMetricsFile(file: string): StageMetrics {
  const out: StageMetrics = { steps: [], validation: [] };
  if (!fs.existsSync(file)) return out;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let r: MetricsFileLine;
    try {
      r = JSON.parse(line) as MetricsFileLine;
    } catch {
      if (i >= lines.length - 2) return;
      throw new UserError(`line ${i + 1} is not JSON`, {
        where: file,
        kind: 'DataError',
        fix: 'remove or repair the line',
      });
    }
    if (isValidationLine(r)) out.validation.push(r);
    else out.steps.push(r);
  });
  return out;
}

/** The validation loss at the stage's start (step 0) and after `steps` steps, from its validation lines (the last of each step). */
export function stageValidation(
  validation: ValidationLine[],
  steps: number,
): { valLossStart: number | null; valLossEnd: number | null } {
  const at = (s: number): number | null => {
    const found = validation.filter((v) => v.step === s);
    return found.length > 0 ? (found[found.length - 1]!.val_loss ?? null) : null;
  };
  return { valLossStart: at(0), valLossEnd: at(steps) };
}
