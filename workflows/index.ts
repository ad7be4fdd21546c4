/**
 * trainCurriculum: the five-stage curriculum as one durable job. Deterministic orchestration
 * only; every file and tensor is touched by activities.
 *
 *   plan -> for each stage up to `until`:
 *             init weights = stage 1: checkpoint.init_state_dir (converted first if it is CogVideoX
 *                            in diffusers format) or fresh; stage k: stage k-1's final
 *             trainShard ... until the stage's steps are done (each resumes from the latest checkpoint)
 *             promote the final checkpoint
 */
import {
  ActivityCancellationType,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { USER_ERROR_KINDS } from '../src/shared/error-kinds';
import { normaliseStageName } from '../src/shared/stages';
import type {
  Carried,
  CurriculumInput,
  CurriculumResult,
  JobState,
  PlannedStage,
  Progress,
  StageResult,
} from '../src/shared/types';
import {
  pauseSignal,
  progressQuery,
  resumeSignal,
  setUntilUpdate,
  shardProgressSignal,
  TRAINING_JOB,
  TRAINING_STAGE,
  TRAINING_STEP,
  type Activities,
} from './definitions';
import { currentDetails, stepText } from '../src/shared/progress';

export * from './definitions';

const QUICK: ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  retry: {
    initialInterval: '1s',
    maximumInterval: '30s',
    maximumAttempts: 20,
    nonRetryableErrorTypes: [...USER_ERROR_KINDS],
  },
};

/** Stage 1's conversion from CogVideoX: streams GBs, heartbeating the bytes done. */
const converter = proxyActivities<Activities>({
  summary: 'convert the CogVideoX weights of stage 1',
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '5s',
    backoffCoefficient: 2,
    maximumInterval: '60s',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [...USER_ERROR_KINDS],
  },
});

/** Bookkeeping activities, each with a one-line summary for the UI ("promote stage 18s"). */
function quick(summary: string): Activities {
  return proxyActivities<Activities>({ ...QUICK, summary });
}

/** The trainShard activity of a stage; its summary says where the shard starts ("stage 18s, step 420/1000, loss 0.183"). */
function training(stage: PlannedStage, summary: string): Activities {
  return proxyActivities<Activities>({
    summary,
    // A shard ends after shard.max_seconds; loading and saving get generous room on top.
    startToCloseTimeout: `${Math.ceil(stage.shardMaxSeconds * 3 + 600)}s`,
    heartbeatTimeout: `${stage.heartbeatTimeoutSeconds}s`,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '60s',
      maximumAttempts: 50,
      nonRetryableErrorTypes: [...USER_ERROR_KINDS],
    },
  });
}

export async function trainCurriculum(input: CurriculumInput, carried?: Carried): Promise<CurriculumResult> {
  const root = CancellationScope.current();
  const progress: Progress = {
    jobName: input?.jobName ?? '',
    jobDir: null,
    state: 'planning',
    stage: null,
    stageIndex: -1,
    stages: [],
    stageSteps: [],
    until: null,
    step: 0,
    totalSteps: 0,
    lastLoss: null,
    lastCheckpoint: null,
    completed: carried?.results ?? [],
  };
  let paused = carried?.paused ?? false;
  let shardScope: CancellationScope | undefined;
  // What Temporal shows without opening the history: current details (UI "Current Details", the
  // `__temporal_workflow_metadata` query) and the search attributes TrainingJob/TrainingStage/TrainingStep.
  // Search attributes are upserted only when they change: every upsert is a history event.
  let shown = { job: '', stage: '', step: -1 };
  const show = (): void => {
    setCurrentDetails(currentDetails(progress));
    const next = { job: progress.jobName, stage: progress.stage ?? '', step: progress.step };
    const pairs: SearchAttributeUpdatePair[] = [];
    if (next.job !== shown.job && next.job) pairs.push({ key: TRAINING_JOB, value: next.job });
    if (next.stage !== shown.stage && next.stage) pairs.push({ key: TRAINING_STAGE, value: next.stage });
    if (next.step !== shown.step && next.stage) pairs.push({ key: TRAINING_STEP, value: next.step });
    if (pairs.length > 0) upsertSearchAttributes(pairs);
    shown = next;
  };
  const setState = (s: JobState): void => {
    progress.state = s;
    show();
  };
  setHandler(progressQuery, () => progress);
  setHandler(shardProgressSignal, (r) => {
    // Reports of another stage, or older than what is known (a late signal of an earlier attempt), change nothing.
    if (r.stage !== progress.stage || r.step <= progress.step || progress.state === 'completed') return;
    Object.assign(progress, { step: r.step, lastLoss: r.loss });
    show();
  });
  setHandler(pauseSignal, () => {
    if (paused) return;
    paused = true;
    if (shardScope) {
      setState('pausing');
      shardScope.cancel();
    } else if (progress.state === 'running') setState('paused');
  });
  setHandler(resumeSignal, () => {
    paused = false;
    if (progress.state === 'paused' || progress.state === 'pausing') setState('running');
  });

  show();
  const plan = await quick(`plan ${input?.curriculum ?? '(no curriculum)'}`).planCurriculum(input);
  const names = plan.stages.map((s) => s.name);
  let until = carried?.until ?? plan.until;
  progress.stages = names;
  progress.stageSteps = plan.stages.map((s) => s.steps);
  progress.until = until;
  progress.jobDir = plan.jobDir;
  const results: StageResult[] = carried?.results ?? [];
  progress.completed = results;

  setHandler(
    setUntilUpdate,
    (value: string) => {
      until = normaliseStageName(value)!;
      progress.until = until;
      return until;
    },
    {
      validator: (value: string) => {
        const norm = typeof value === 'string' ? normaliseStageName(value) : undefined;
        if (norm === undefined || !names.includes(norm))
          throw new Error(
            `setUntil: ${JSON.stringify(value)} is not a stage of this curriculum; use one of ${names.join(', ')}`,
          );
        const current = Math.max(results.length, progress.stageIndex);
        if (names.indexOf(norm) < current) {
          throw new Error(
            `setUntil: stage ${norm} is already finished or running; use ${names.slice(current).join(', ') || '(none left)'}`,
          );
        }
      },
    },
  );

  for (let i = results.length; i < plan.stages.length; i++) {
    if (names.indexOf(until) < i) break;
    const stage = plan.stages[i]!;
    const initFrom = i === 0 ? stage.initStateDir : results[i - 1]!.finalCheckpoint;
    Object.assign(progress, { stage: stage.name, stageIndex: i, step: 0, totalSteps: stage.steps, lastLoss: null });
    setState(paused ? 'paused' : 'running');
    const startedAt = carried?.stageStartedAt ?? Date.now();
    carried = undefined;
    const status = await quick(`inspect stage ${stage.name}`).inspectStage({
      jobDir: plan.jobDir,
      stage: stage.name,
      steps: stage.steps,
    });
    progress.step = status.step;
    if (stage.convertFrom && initFrom && !status.final && status.step === 0) {
      // Stage 1 from CogVideoX diffusers weights: convert them first (kept if already converted).
      await converter.convertInit({
        from: stage.convertFrom,
        out: initFrom,
        ssmLayer: stage.ssmLayer,
        seed: stage.seed,
      });
    }
    show();
    if (!status.final) {
      for (;;) {
        if (paused) {
          setState('paused');
          await condition(() => !paused);
          setState('running');
        }
        try {
          shardScope = new CancellationScope();
          const acts = training(stage, stepText(stage.name, progress.step, stage.steps, progress.lastLoss));
          const r = await shardScope.run(() =>
            acts.trainShard({ jobDir: plan.jobDir, stage, set: input.set ?? {}, initFrom }),
          );
          Object.assign(progress, { step: r.step, lastLoss: r.lastLoss, lastCheckpoint: r.checkpoint });
          show();
          if (r.done) break;
        } catch (err) {
          if (isCancellation(err) && paused && !root.consideredCancelled) continue; // paused: the shard checkpointed and stopped
          throw err;
        } finally {
          shardScope = undefined;
        }
        if (workflowInfo().continueAsNewSuggested) {
          await continueAsNew<typeof trainCurriculum>(input, { results, until, paused, stageStartedAt: startedAt });
        }
      }
    }
    const { initHash: _initHash, ...final } = await quick(
      `promote stage ${stage.name} (${stage.steps} steps)`,
    ).promoteStage({ jobDir: plan.jobDir, stage: stage.name, steps: stage.steps });
    results.push({ ...final, wallSeconds: (Date.now() - startedAt) / 1000 });
    Object.assign(progress, { step: final.steps, lastCheckpoint: final.finalCheckpoint, lastLoss: final.lastLoss });
    show();
  }
  setState('completed');
  return { jobName: plan.jobName, curriculum: plan.curriculum, until, stages: results };
}
