/**
 * A job's status in one stable JSON shape, from the workflow's `progress` query, its
 * description (live step and loss from the running shard's heartbeat) and the task queue's
 * pollers ("waiting for a worker").
 */
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { connectionOf, jobHandle, progressQuery } from './client';
import type { ConnectionSummary } from './connection';
import { stepText } from '../shared/progress';
import type { CurriculumResult, LauncherState, Progress, ShardProgress, StageResult } from '../shared/types';

export interface StageStatusLine {
  stage: string;
  step: number;
  totalSteps: number;
  done: boolean;
  loss: number | null;
  /**
   * Validation loss (fixed samples, timesteps and noise; validation.*): the latest known and the
   * step it was measured after (of a finished stage: its end), and the stage's start value where
   * known (always for a finished stage that measured it); null when not measured.
   */
  valLoss: number | null;
  valStep: number | null;
  valLossStart: number | null;
  /** Of the running stage: 1 / the last step time reported by the shard's heartbeat; else null. */
  stepsPerSecond: number | null;
  /** Of the running stage: remaining steps / stepsPerSecond; else null. */
  etaSeconds: number | null;
  finalCheckpoint: string | null;
}

export interface JobStatus {
  job: string;
  /** Temporal execution status: RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, CONTINUED_AS_NEW, TIMED_OUT. */
  status: string;
  /** Workflow state: planning, running, pausing, paused, completed (null when the query could not be answered). */
  state: string | null;
  stage: string | null;
  step: number;
  totalSteps: number;
  loss: number | null;
  /** The current stage's latest validation loss and the step it was measured after (see StageStatusLine). */
  valLoss: number | null;
  valStep: number | null;
  stepsPerSecond: number | null;
  etaSeconds: number | null;
  lastCheckpoint: string | null;
  /** The job folder on the workers (checkpoints, metrics.jsonl); null when not known yet. */
  jobDir: string | null;
  until: string | null;
  /** "polling", "none" (no worker: the job waits) or "unknown". */
  worker: 'polling' | 'none' | 'unknown';
  stages: StageStatusLine[];
  /** Activity retry attempt of the running shard (1 = first). */
  attempt: number | null;
  /** Backend of the running shard ("tensorflow", "wasm", "cpu") and its device ("cpu: <processor>, N threads", "gpu: <model>"), from its heartbeat; null before its first step. */
  backend: string | null;
  device: string | null;
  /** Where the running shard runs, from its heartbeat: a Slurm shard's job id and state; null when unknown. */
  launcher: LauncherState | null;
  lastFailure: string | null;
  result: CurriculumResult | null;
  /** Where and how the asking client connected: address, namespace, TLS, client certificate, API key (never the secrets); null when not known. */
  connection: ConnectionSummary | null;
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([p.catch(() => undefined), t]);
  } finally {
    clearTimeout(timer);
  }
}

export async function jobStatus(client: Client, job: string): Promise<JobStatus> {
  const handle = jobHandle(client, job);
  const desc = await handle.describe();
  const status = desc.status.name;
  const running = status === 'RUNNING';
  const progress = running ? await withTimeout(handle.query(progressQuery), 3000) : undefined;
  let result: CurriculumResult | null = null;
  if (status === 'COMPLETED')
    result = ((await withTimeout(handle.result(), 3000)) as CurriculumResult | undefined) ?? null;
  let hb: ShardProgress | undefined;
  let attempt: number | null = null;
  let lastFailure: string | null = null;
  for (const a of desc.raw.pendingActivities ?? []) {
    if (a.activityType?.name !== 'trainShard') continue;
    attempt = a.attempt ?? null;
    lastFailure = a.lastFailure?.message ?? null;
    const p = a.heartbeatDetails?.payloads?.[0];
    if (p) hb = defaultPayloadConverter.fromPayload<ShardProgress>(p as never);
  }
  let worker: JobStatus['worker'] = 'unknown';
  if (running) {
    try {
      const tq = await client.workflowService.describeTaskQueue({
        namespace: client.options.namespace,
        taskQueue: { name: desc.taskQueue },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
      });
      worker = (tq.pollers ?? []).length > 0 ? 'polling' : 'none';
    } catch {
      worker = 'unknown';
    }
  }
  return {
    ...summarise(job, status, progress, hb, result, worker, attempt, lastFailure),
    connection: connectionOf(client),
  };
}

export function summarise(
  job: string,
  status: string,
  progress: Progress | undefined,
  hb: ShardProgress | undefined,
  result: CurriculumResult | null,
  worker: JobStatus['worker'],
  attempt: number | null,
  lastFailure: string | null,
): Omit<JobStatus, 'connection'> {
  const stages: StageStatusLine[] = [];
  const running = status === 'RUNNING';
  if (progress) {
    progress.stages.forEach((name, i) => {
      const done = progress.completed.find((c) => c.stage === name);
      const total = progress.stageSteps[i] ?? 0;
      let step = done ? done.steps : 0;
      let loss = done ? done.lastLoss : null;
      let val = done ? finishedVal(done) : noVal;
      let stepsPerSecond: number | null = null;
      if (!done && name === progress.stage) {
        step = progress.step;
        loss = progress.lastLoss;
        val = runningVal(progress.valLoss ?? null, progress.valStep ?? null);
        if (hb && hb.stage === name && hb.step >= step) {
          step = hb.step;
          loss = hb.loss;
          if (hb.stepSeconds && hb.stepSeconds > 0) stepsPerSecond = 1 / hb.stepSeconds;
          if (hb.valLoss !== undefined && (hb.valStep ?? 0) >= (val.valStep ?? -1))
            val = runningVal(hb.valLoss, hb.valStep ?? null);
        }
      }
      const etaSeconds = stepsPerSecond ? (total - step) / stepsPerSecond : null;
      stages.push({
        stage: name,
        step,
        totalSteps: total,
        done: !!done,
        loss,
        ...val,
        stepsPerSecond,
        etaSeconds,
        finalCheckpoint: done?.finalCheckpoint ?? null,
      });
    });
  } else if (result) {
    for (const s of result.stages)
      stages.push({
        stage: s.stage,
        step: s.steps,
        totalSteps: s.steps,
        done: true,
        loss: s.lastLoss,
        ...finishedVal(s),
        stepsPerSecond: null,
        etaSeconds: null,
        finalCheckpoint: s.finalCheckpoint,
      });
  }
  const current = stages.find((s) => !s.done && s.stage === progress?.stage) ?? stages[stages.length - 1];
  return {
    job,
    status,
    state: progress?.state ?? (result ? 'completed' : null),
    stage: progress?.stage ?? current?.stage ?? null,
    step: current?.step ?? 0,
    totalSteps: current?.totalSteps ?? 0,
    loss: current?.loss ?? null,
    valLoss: current?.valLoss ?? null,
    valStep: current?.valStep ?? null,
    stepsPerSecond: current?.stepsPerSecond ?? null,
    etaSeconds: current?.etaSeconds ?? null,
    lastCheckpoint: progress?.lastCheckpoint ?? current?.finalCheckpoint ?? null,
    jobDir:
      progress?.jobDir ?? (result?.stages[0] ? path.dirname(path.dirname(result.stages[0].finalCheckpoint)) : null),
    until: progress?.until ?? result?.until ?? null,
    worker,
    stages,
    attempt,
    backend: hb?.backend ?? null,
    device: hb?.device ?? null,
    launcher: (running && hb?.launcher) || null,
    lastFailure,
    result,
  };
}

type ValFields = Pick<StageStatusLine, 'valLoss' | 'valStep' | 'valLossStart'>;
const noVal: ValFields = { valLoss: null, valStep: null, valLossStart: null };

/** A finished stage's validation loss: start and end (null in results of older workers or with validation off). */
function finishedVal(r: StageResult): ValFields {
  const end = r.valLossEnd ?? null;
  return { valLoss: end, valStep: end === null ? null : r.steps, valLossStart: r.valLossStart ?? null };
}

/** The running stage's latest validation loss; its start value is known when that is the latest. */
function runningVal(valLoss: number | null, valStep: number | null): ValFields {
  if (valLoss === null) return noVal;
  return { valLoss, valStep, valLossStart: valStep === 0 ? valLoss : null };
}

/**
 * "val loss 0.9684 -> 0.4986" (a finished stage: start -> end), "val loss 0.4946 at step 10"
 * (the latest of a running stage); "" when not measured.
 */
export function valText(st: ValFields & { done: boolean }): string {
  if (st.valLoss === null) return '';
  if (st.done && st.valLossStart !== null) return `val loss ${st.valLossStart.toFixed(4)} -> ${st.valLoss.toFixed(4)}`;
  return `val loss ${st.valLoss.toFixed(4)} at step ${st.valStep}`;
}

/** "12s", "14m", "3.2h"; "-" when unknown. */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  return `${(seconds / 3600).toFixed(1)}h`;
}

/**
 * One line: "job: stage 18s, step 420/1000, loss 0.183" plus the state when not simply running,
 * then the stage's validation loss when measured ("; val loss 0.1520 at step 400").
 */
export function statusLine(s: JobStatus): string {
  const extra =
    s.status !== 'RUNNING'
      ? ` [${s.status.toLowerCase()}]`
      : s.worker === 'none'
        ? ' [waiting for a worker]'
        : s.state && s.state !== 'running'
          ? ` [${s.state}]`
          : '';
  const cur = s.stages.find((st) => st.stage === s.stage);
  const val = valText(cur ?? { ...s, done: false, valLossStart: null });
  return `${s.job}: ${stepText(s.stage ?? '-', s.step, s.totalSteps, s.loss)}${extra}${launcherText(s.launcher)}${val ? `; ${val}` : ''}`;
}

/** " (slurm job 1234 RUNNING)" for a shard on Slurm; "" otherwise. */
export function launcherText(l: LauncherState | null): string {
  if (l?.kind !== 'slurm') return '';
  return l.jobId ? ` (slurm job ${l.jobId} ${l.state ?? ''})`.replace(' )', ')') : ' (slurm: submitting)';
}
