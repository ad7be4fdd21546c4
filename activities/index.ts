/**
 * Activities: thin adapters that put Temporal's context (heartbeats, cancellation, retries)
 * around the library in src/. Errors a user must fix become non-retryable failures.
 */
import * as path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isUserError } from '../src/errors';
import { type AllowedRoots, allowedRoots, confinePath } from '../src/allowed-paths';
import { checkJobDir, checkShardInput, inspectStage, planCurriculum, promoteStage, shardEngine } from '../src/job';
import { EngineCatalog } from '../src/engine/preset';
import { type Logger, logger } from '../src/log';
import { withoutTemporalSettings } from '../src/temporal/connection';
import { trainingMetrics } from '../src/temporal/metrics';
import { searchAttributesExist } from '../src/temporal/search-attributes';
import { launcherFor } from '../src/train/launch';
import { convertDiffusers } from '../src/convert/convert';
import type {
  ShardProgress,
  ConvertInitInput,
  ConvertInitResult,
  CurriculumInput,
  Plan,
  ShardSummary,
  StageFinal,
  StageStatus,
  TrainShardInput,
} from '../src/shared/types';
import { type Activities, type StageRef, shardProgressSignal } from '../workflows/definitions';

export type { Activities };

async function userErrorsAreFinal<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isUserError(e)) throw ApplicationFailure.create({ message: e.message, type: e.kind, nonRetryable: true });
    throw e;
  }
}

export interface ActivitiesOptions {
  /** The folders that job inputs may reach (default: allowedRoots(): the working directory, configs/ read-only). */
  allowed?: AllowedRoots;
  /** Where engine presets are found (default: the package's configs/engine/; a worker adds its --engine-dir folders). */
  engines?: EngineCatalog;
}

export function createActivities(opts: ActivitiesOptions = {}): Activities {
  const allowed = opts.allowed ?? allowedRoots();
  const engines = opts.engines ?? new EngineCatalog();
  return {
    async planCurriculum(input: CurriculumInput): Promise<Plan> {
      const plan = await userErrorsAreFinal(() => planCurriculum(input, allowed, engines));
      const ctx = Context.current();
      const ns = ctx.info.workflowNamespace ?? ctx.client.options.namespace;
      return { ...plan, searchAttributes: await searchAttributesExist(ctx.client.connection.operatorService, ns) };
    },

    async inspectStage(req: StageRef): Promise<StageStatus> {
      return userErrorsAreFinal(() => {
        checkJobDir(allowed, req.jobDir, 'read');
        return inspectStage(req.jobDir, req.stage, req.steps);
      });
    },

    async promoteStage(req: StageRef): Promise<StageFinal> {
      return userErrorsAreFinal(() => {
        checkJobDir(allowed, req.jobDir, 'write');
        return promoteStage(req.jobDir, req.stage, req.steps);
      });
    },

    /**
     * Converts stage 1's CogVideoX diffusers weights (checkpoint.init_state_dir) into
     * TTT-Video-DiT weights in <job>/init; reuses an earlier conversion of the same input.
     * Streams 16 MiB chunks with async I/O, so the worker's event loop stays free;
     * heartbeats the bytes done; cancellation leaves nothing behind.
     */
    async convertInit(input: ConvertInitInput): Promise<ConvertInitResult> {
      const ctx = Context.current();
      const log = logger.child({
        job: ctx.info.workflowExecution?.workflowId,
        activity: 'convertInit',
        attempt: ctx.info.attempt,
      });
      let last = { phase: 'reading', bytesDone: 0, bytesTotal: 0 };
      ctx.heartbeat(last);
      const beat = setInterval(() => ctx.heartbeat(last), 2000);
      try {
        await userErrorsAreFinal(() => {
          confinePath(allowed, input.from, 'read', { file: 'input', field: 'checkpoint.init_state_dir' });
          confinePath(allowed, input.out, 'write', { file: 'input', field: 'job folder (job.dump_folder/<job>)/init' });
        });
        const r = await userErrorsAreFinal(() =>
          convertDiffusers({
            from: input.from,
            out: input.out,
            ssmLayer: input.ssmLayer,
            seed: input.seed,
            dtype: 'float32',
            signal: ctx.cancellationSignal,
            onProgress: (p) => {
              last = { phase: p.phase, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal };
            },
          }),
        );
        log.info(
          { out: r.out, reused: r.reused, seconds: r.seconds },
          r.reused ? 'init weights: kept the earlier conversion' : 'init weights converted from CogVideoX',
        );
        return { out: r.out, reused: r.reused, inputHash: r.inputHash, seconds: r.seconds };
      } finally {
        clearInterval(beat);
      }
    },

    /**
     * Trains one shard where the plan says (a child process, or a Slurm job it submits or
     * re-attaches to) with the stage's engine (the built-in trainer, or an external one from the
     * worker's preset); heartbeats progress, reports it to the workflow every shard.progress_seconds
     * and records it in the worker's metrics; on cancellation the shard stops as its engine can
     * (a checkpoint first where it can), then the cancellation is reported.
     */
    async trainShard(input: TrainShardInput): Promise<ShardSummary> {
      const ctx = Context.current();
      const info = ctx.info;
      const wf = info.workflowExecution;
      const job = wf?.workflowId ?? path.basename(input.jobDir);
      const log = logger.child({ job, stage: input.stage.name, attempt: info.attempt });
      const metrics = trainingMetrics(ctx.metricMeter, { job, stage: input.stage.name });
      const launcher = launcherFor(input.stage.launcher);
      let last: ShardProgress = {
        stage: input.stage.name,
        step: 0,
        totalSteps: input.stage.steps,
        loss: null,
        gradNorm: null,
        stepSeconds: null,
        ...(launcher.kind === 'slurm' ? { launcher: { kind: 'slurm', jobId: null, state: null } } : {}),
      };
      const command = await userErrorsAreFinal(() => {
        const stage = checkShardInput(
          allowed,
          { jobDir: input.jobDir, initFrom: input.initFrom, configFile: input.stage.configFile, set: input.set },
          engines,
        );
        return shardEngine(stage, {
          jobDir: input.jobDir,
          initFrom: input.initFrom,
          expectedConfigHash: input.stage.configHash,
        });
      });
      ctx.heartbeat(last);
      const beat = setInterval(() => ctx.heartbeat(last), 2000);
      const report = progressReporter(ctx, input.stage.progressSeconds, log);
      const { stop, detach } = stopOrDetach(ctx);
      try {
        const result = await userErrorsAreFinal(() =>
          launcher.run(
            {
              jobName: path.basename(input.jobDir),
              stage: input.stage.name,
              totalSteps: input.stage.steps,
              request: {
                configFile: input.stage.configFile,
                overrides: input.set,
                jobDir: input.jobDir,
                initFrom: input.initFrom,
                maxSeconds: input.stage.shardMaxSeconds,
                maxSteps: input.stage.shardMaxSteps,
                expectedConfigHash: input.stage.configHash,
                who: `workflow ${info.workflowExecution?.workflowId} activity attempt ${info.attempt}`,
                logContext: { job, attempt: info.attempt },
              },
              ...(command ? { command } : {}),
            },
            {
              // The trainer (a child, or a Slurm job) never talks to Temporal: it gets none of the connection secrets.
              env: withoutTemporalSettings(),
              stop,
              detach,
              log,
              onProgress: (p) => {
                last = p;
                ctx.heartbeat(p);
                metrics.step(p);
                report(p);
              },
              onState: (s) => {
                last = { ...last, launcher: s };
                ctx.heartbeat(last);
              },
              onCheckpoint: (c) => {
                metrics.checkpoint(c);
                log.debug({ step: c.step, dir: c.dir, seconds: c.seconds, bytes: c.bytes }, 'checkpoint');
              },
            },
          ),
        );
        log.info(
          {
            step: result.step,
            stepsRun: result.stepsRun,
            reason: result.reason,
            seconds: result.seconds,
            ...(last.launcher?.jobId ? { slurmJob: last.launcher.jobId } : {}),
          },
          'shard finished',
        );
        if (ctx.cancellationSignal.aborted) {
          // The shard saved a checkpoint on the way out; now report the cancellation itself.
          await ctx.cancelled;
        }
        return result;
      } catch (e) {
        // Asked to stop (pause, cancel), the shard ended without a result (a Slurm job cancelled while
        // pending, or killed before it saved): report the cancellation itself. A user error still fails.
        if (stop.aborted && !(e instanceof ApplicationFailure && e.nonRetryable)) await ctx.cancelled;
        throw e;
      } finally {
        clearInterval(beat);
      }
    },
  };
}

/**
 * Progress reports to the workflow (signal shardProgress): at the first step, then at most every
 * progressSeconds; one in flight at a time. A lost report only delays the workflow's view.
 */
function progressReporter(ctx: Context, progressSeconds: number | undefined, log: Logger): (p: ShardProgress) => void {
  const wf = ctx.info.workflowExecution;
  const everyMs = (progressSeconds ?? 10) * 1000;
  let lastReport = 0;
  let reporting = false;
  return (r) => {
    if (!wf || reporting || Date.now() - lastReport < everyMs) return;
    reporting = true;
    lastReport = Date.now();
    ctx.client.workflow
      .getHandle(wf.workflowId, wf.runId)
      .signal(shardProgressSignal, r)
      .catch((e: unknown) => log.debug({ err: e, step: r.step }, 'progress report to the workflow failed'))
      .finally(() => (reporting = false));
  };
}

/**
 * The activity's cancellation, split by its reason. Pause and cancel (and an activity pause or
 * reset) stop the shard: it saves a checkpoint and ends. Anything else (the worker shuts down,
 * Temporal gave this attempt up) only detaches: a local shard stops with its worker, a Slurm job
 * runs on and the next attempt re-attaches to it.
 */
function stopOrDetach(ctx: Context): { stop: AbortSignal; detach: AbortSignal } {
  const stop = new AbortController();
  const detach = new AbortController();
  const onCancel = (): void => {
    const d = ctx.cancellationDetails;
    (d?.cancelRequested || d?.paused || d?.reset ? stop : detach).abort();
  };
  if (ctx.cancellationSignal.aborted) onCancel();
  else ctx.cancellationSignal.addEventListener('abort', onCancel, { once: true });
  return { stop: stop.signal, detach: detach.signal };
}
