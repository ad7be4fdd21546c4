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
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { NON_RETRYABLE } from './nonretryable';
import { normaliseStageName } from '../src/config/video';
import type { Carried, CurriculumInput, CurriculumResult, JobState, PlannedStage, Progress, StageResult } from '../src/types';
import { pauseSignal, progressQuery, resumeSignal, setUntilUpdate } from './definitions';

export * from './definitions';

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 20, nonRetryableErrorTypes: NON_RETRYABLE },
});

/** Stage 1's conversion from CogVideoX: streams GBs, heartbeating the bytes done. */
const converter = proxyActivities<Activities>({
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 10, nonRetryableErrorTypes: NON_RETRYABLE },
});

function trainer(stage: PlannedStage): Activities {
  return proxyActivities<Activities>({
    // A shard ends after shard.max_seconds; loading and saving get generous room on top.
    startToCloseTimeout: `${Math.ceil(stage.shardMaxSeconds * 3 + 600)}s`,
    heartbeatTimeout: `${stage.heartbeatTimeoutSeconds}s`,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 50, nonRetryableErrorTypes: NON_RETRYABLE },
  });
}

export async function trainCurriculum(input: CurriculumInput, carried?: Carried): Promise<CurriculumResult> {
  const root = CancellationScope.current();
  const progress: Progress = {
    jobName: input?.jobName ?? '',
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
  const setState = (s: JobState): void => {
    progress.state = s;
  };
  setHandler(progressQuery, () => progress);
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

  const plan = await quick.planCurriculum(input);
  const names = plan.stages.map((s) => s.name);
  let until = carried?.until ?? plan.until;
  progress.stages = names;
  progress.stageSteps = plan.stages.map((s) => s.steps);
  progress.until = until;
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
        if (norm === undefined || !names.includes(norm)) throw new Error(`setUntil: ${JSON.stringify(value)} is not a stage of this curriculum; use one of ${names.join(', ')}`);
        const current = Math.max(results.length, progress.stageIndex);
        if (names.indexOf(norm) < current) {
          throw new Error(`setUntil: stage ${norm} is already finished or running; use ${names.slice(current).join(', ') || '(none left)'}`);
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
    const status = await quick.inspectStage({ jobDir: plan.jobDir, stage: stage.name, steps: stage.steps });
    progress.step = status.step;
    if (stage.convertFrom && initFrom && !status.final && status.step === 0) {
      // Stage 1 from CogVideoX diffusers weights: convert them first (kept if already converted).
      await converter.convertInit({ from: stage.convertFrom, out: initFrom, ssmLayer: stage.ssmLayer, seed: stage.seed });
    }
    if (!status.final) {
      const acts = trainer(stage);
      for (;;) {
        if (paused) {
          setState('paused');
          await condition(() => !paused);
          setState('running');
        }
        try {
          shardScope = new CancellationScope();
          const r = await shardScope.run(() => acts.trainShard({ jobDir: plan.jobDir, stage, set: input.set ?? {}, initFrom }));
          Object.assign(progress, { step: r.step, lastLoss: r.lastLoss, lastCheckpoint: r.checkpoint });
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
    const { initHash: _initHash, ...final } = await quick.promoteStage({ jobDir: plan.jobDir, stage: stage.name, steps: stage.steps });
    results.push({ ...final, wallSeconds: (Date.now() - startedAt) / 1000 });
    Object.assign(progress, { step: final.steps, lastCheckpoint: final.finalCheckpoint, lastLoss: final.lastLoss });
  }
  setState('completed');
  return { jobName: plan.jobName, curriculum: plan.curriculum, until, stages: results };
}
