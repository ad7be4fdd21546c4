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
  patched,
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
  Plan,
  PlannedStage,
  Progress,
  ShardProgress,
  StageFinal,
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

/**
 * Patch: the job upserts its search attributes only after planning, and only if the plan says
 * the namespace has them (a bare server or a hosted namespace may lack them). Replayed
 * histories of older workers keep upserting from the workflow's first task.
 */
const SEARCH_ATTRIBUTES_FROM_PLAN = 'search-attributes-from-plan';

export async function trainCurriculum(input: CurriculumInput, carried?: Carried): Promise<CurriculumResult> {
  const job = new CurriculumJob(input, carried);
  job.show();
  const plan = await quick(`plan ${input?.curriculum ?? '(no curriculum)'}`).planCurriculum(input);
  job.planned(plan);
  job.show();
  for (let i = job.results.length; i < plan.stages.length; i++) {
    if (job.stageNames.indexOf(job.until) < i) break;
    await job.trainStage(plan, i);
  }
  job.setState('completed');
  return { jobName: plan.jobName, curriculum: plan.curriculum, until: job.until, stages: job.results };
}

/** The state of one run of the workflow, what it shows, and how it reacts to signals and updates. */
class CurriculumJob {
  readonly root = CancellationScope.current();
  readonly progress: Progress;
  results: StageResult[];
  until = '';
  stageNames: string[] = [];
  private paused: boolean;
  private shardScope: CancellationScope | undefined;
  // What Temporal shows without opening the history: current details (UI "Current Details", the
  // `__temporal_workflow_metadata` query) and the search attributes TrainingJob/TrainingStage/TrainingStep.
  // Search attributes are upserted only when they change: every upsert is a history event.
  private shown = { job: '', stage: '', step: -1 };
  /**
   * Whether search attributes are upserted. Since SEARCH_ATTRIBUTES_FROM_PLAN, only once the plan
   * says that the namespace has them; histories of older workers upserted from the start.
   */
  private upserts: boolean;

  constructor(
    private readonly input: CurriculumInput,
    private carried: Carried | undefined,
  ) {
    this.upserts = !patched(SEARCH_ATTRIBUTES_FROM_PLAN);
    this.results = carried?.results ?? [];
    this.paused = carried?.paused ?? false;
    this.progress = {
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
      valLoss: null,
      valStep: null,
      lastCheckpoint: null,
      completed: this.results,
    };
    setHandler(progressQuery, () => this.progress);
    setHandler(shardProgressSignal, (r) => this.onShardProgress(r));
    setHandler(pauseSignal, () => this.pause());
    setHandler(resumeSignal, () => this.resume());
  }

  show(): void {
    const p = this.progress;
    setCurrentDetails(currentDetails(p));
    if (!this.upserts) return;
    const next = { job: p.jobName, stage: p.stage ?? '', step: p.step };
    const pairs: SearchAttributeUpdatePair[] = [];
    if (next.job !== this.shown.job && next.job) pairs.push({ key: TRAINING_JOB, value: next.job });
    if (next.stage !== this.shown.stage && next.stage) pairs.push({ key: TRAINING_STAGE, value: next.stage });
    if (next.step !== this.shown.step && next.stage) pairs.push({ key: TRAINING_STEP, value: next.step });
    if (pairs.length > 0) upsertSearchAttributes(pairs);
    this.shown = next;
  }

  setState(s: JobState): void {
    this.progress.state = s;
    this.show();
  }

  /** The plan is known: its stages, `until`, and the setUntil update that moves it. */
  planned(plan: Plan): void {
    if (patched(SEARCH_ATTRIBUTES_FROM_PLAN)) this.upserts = plan.searchAttributes !== false;
    this.stageNames = plan.stages.map((s) => s.name);
    this.until = this.carried?.until ?? plan.until;
    Object.assign(this.progress, {
      stages: this.stageNames,
      stageSteps: plan.stages.map((s) => s.steps),
      until: this.until,
      jobDir: plan.jobDir,
      completed: this.results,
    });
    setHandler(setUntilUpdate, (value: string) => this.setUntil(value), {
      validator: (value: string) => this.validateUntil(value),
    });
  }

  /** Stage i: init weights, conversion if needed, shards until its steps are done, then promotion. */
  async trainStage(plan: Plan, i: number): Promise<void> {
    const stage = plan.stages[i]!;
    const initFrom = i === 0 ? stage.initStateDir : this.results[i - 1]!.finalCheckpoint;
    Object.assign(this.progress, {
      stage: stage.name,
      stageIndex: i,
      step: 0,
      totalSteps: stage.steps,
      lastLoss: null,
      valLoss: null,
      valStep: null,
    });
    this.setState(this.paused ? 'paused' : 'running');
    const startedAt = this.carried?.stageStartedAt ?? Date.now();
    this.carried = undefined;
    const ref = { jobDir: plan.jobDir, stage: stage.name, steps: stage.steps };
    const status = await quick(`inspect stage ${stage.name}`).inspectStage(ref);
    this.progress.step = status.step;
    if (stage.convertFrom && initFrom && !status.final && status.step === 0) {
      // Stage 1 from CogVideoX diffusers weights: convert them first (kept if already converted).
      await converter.convertInit({
        from: stage.convertFrom,
        out: initFrom,
        ssmLayer: stage.ssmLayer,
        seed: stage.seed,
      });
    }
    this.show();
    if (!status.final) await this.trainShards(plan, stage, initFrom, startedAt);
    const final = await quick(`promote stage ${stage.name} (${stage.steps} steps)`).promoteStage(ref);
    this.results.push(stageResult(final, (Date.now() - startedAt) / 1000));
    Object.assign(this.progress, {
      step: final.steps,
      lastCheckpoint: final.finalCheckpoint,
      lastLoss: final.lastLoss,
      ...(typeof final.valLossEnd === 'number' ? { valLoss: final.valLossEnd, valStep: final.steps } : {}),
    });
    this.show();
  }

  /** trainShard attempts until the stage is done; waits while paused; continues as new when the history is long. */
  private async trainShards(
    plan: Plan,
    stage: PlannedStage,
    initFrom: string | null,
    startedAt: number,
  ): Promise<void> {
    for (;;) {
      if (this.paused) {
        this.setState('paused');
        await condition(() => !this.paused);
        this.setState('running');
      }
      try {
        this.shardScope = new CancellationScope();
        const p = this.progress;
        const acts = training(stage, stepText(stage.name, p.step, stage.steps, p.lastLoss));
        const r = await this.shardScope.run(() =>
          acts.trainShard({ jobDir: plan.jobDir, stage, set: this.input.set ?? {}, initFrom }),
        );
        Object.assign(p, { step: r.step, lastLoss: r.lastLoss, lastCheckpoint: r.checkpoint });
        if (typeof r.valLoss === 'number') Object.assign(p, { valLoss: r.valLoss, valStep: r.valStep ?? null });
        this.show();
        if (r.done) return;
      } catch (err) {
        // Paused: the shard checkpointed and stopped.
        if (isCancellation(err) && this.paused && !this.root.consideredCancelled) continue;
        throw err;
      } finally {
        this.shardScope = undefined;
      }
      if (workflowInfo().continueAsNewSuggested) {
        const next: Carried = {
          results: this.results,
          until: this.until,
          paused: this.paused,
          stageStartedAt: startedAt,
        };
        await continueAsNew<typeof trainCurriculum>(this.input, next);
      }
    }
  }

  /** Reports of another stage, or older than what is known (a late signal of an earlier attempt), change nothing. */
  private onShardProgress(r: ShardProgress): void {
    const p = this.progress;
    if (r.stage !== p.stage || r.step <= p.step || p.state === 'completed') return;
    Object.assign(p, { step: r.step, lastLoss: r.loss });
    if (typeof r.valLoss === 'number') Object.assign(p, { valLoss: r.valLoss, valStep: r.valStep ?? null });
    this.show();
  }

  /** The running shard saves a checkpoint and stops; no shard starts until resume. */
  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    if (this.shardScope) {
      this.setState('pausing');
      this.shardScope.cancel();
    } else if (this.progress.state === 'running') this.setState('paused');
  }

  private resume(): void {
    this.paused = false;
    if (this.progress.state === 'paused' || this.progress.state === 'pausing') this.setState('running');
  }

  private setUntil(value: string): string {
    this.until = normaliseStageName(value)!;
    this.progress.until = this.until;
    return this.until;
  }

  private validateUntil(value: string): void {
    const names = this.stageNames;
    const norm = typeof value === 'string' ? normaliseStageName(value) : undefined;
    if (norm === undefined || !names.includes(norm))
      throw new Error(
        `setUntil: ${JSON.stringify(value)} is not a stage of this curriculum; use one of ${names.join(', ')}`,
      );
    const current = Math.max(this.results.length, this.progress.stageIndex);
    if (names.indexOf(norm) < current) {
      throw new Error(
        `setUntil: stage ${norm} is already finished or running; use ${names.slice(current).join(', ') || '(none left)'}`,
      );
    }
  }
}

/**
 * A finished stage for the job's result; only these fields (histories of older workers carry
 * more). The validation loss at the stage's start and end is null where the promoting worker
 * did not report it (validation off, or an older worker).
 */
function stageResult(f: StageFinal, wallSeconds: number): StageResult {
  const { stage, steps, finalCheckpoint, modelSha256, firstLoss, lastLoss } = f;
  const valLossStart = f.valLossStart ?? null;
  const valLossEnd = f.valLossEnd ?? null;
  return { stage, steps, finalCheckpoint, modelSha256, firstLoss, lastLoss, valLossStart, valLossEnd, wallSeconds };
}
