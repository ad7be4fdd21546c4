/**
 * Activities: thin adapters that put Temporal's context (heartbeats, cancellation, retries)
 * around the library in src/. Errors a user must fix become non-retryable failures.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isUserError } from '../src/errors';
import { type AllowedRoots, allowedRoots, confinePath } from '../src/allowed-paths';
import { checkJobDir, checkShardInput, inspectStage, planCurriculum, promoteStage } from '../src/job';
import { logger } from '../src/log';
import { withoutTemporalSettings } from '../src/temporal/connection';
import { trainingMetrics } from '../src/temporal/metrics';
import { searchAttributesExist } from '../src/temporal/search-attributes';
import { superviseShard } from '../src/train/supervise';
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
}

export function createActivities(opts: ActivitiesOptions = {}): Activities {
  const allowed = opts.allowed ?? allowedRoots();
  return {
    async planCurriculum(input: CurriculumInput): Promise<Plan> {
      const plan = await userErrorsAreFinal(() => planCurriculum(input, allowed));
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
     * Trains one shard in a child process; heartbeats progress, reports it to the workflow every
     * shard.progress_seconds and records it in the worker's metrics; on cancellation checkpoints,
     * then reports the cancellation.
     */
    async trainShard(input: TrainShardInput): Promise<ShardSummary> {
      const ctx = Context.current();
      const info = ctx.info;
      const wf = info.workflowExecution;
      const job = wf?.workflowId ?? input.jobDir.split(/[\\/]/).pop() ?? '';
      const log = logger.child({ job, stage: input.stage.name, attempt: info.attempt });
      const metrics = trainingMetrics(ctx.metricMeter, { job, stage: input.stage.name });
      let last: ShardProgress = {
        stage: input.stage.name,
        step: 0,
        totalSteps: input.stage.steps,
        loss: null,
        gradNorm: null,
        stepSeconds: null,
      };
      await userErrorsAreFinal(() =>
        checkShardInput(allowed, {
          jobDir: input.jobDir,
          initFrom: input.initFrom,
          configFile: input.stage.configFile,
          set: input.set,
        }),
      );
      ctx.heartbeat(last);
      const beat = setInterval(() => ctx.heartbeat(last), 2000);
      // Progress reports to the workflow (signal shardProgress): at the first step, then at most every
      // progressSeconds; one in flight at a time. A lost report only delays the workflow's view.
      const everyMs = (input.stage.progressSeconds ?? 10) * 1000;
      let lastReport = 0;
      let reporting = false;
      const report = (r: ShardProgress): void => {
        if (!wf || reporting || Date.now() - lastReport < everyMs) return;
        reporting = true;
        lastReport = Date.now();
        ctx.client.workflow
          .getHandle(wf.workflowId, wf.runId)
          .signal(shardProgressSignal, r)
          .catch((e: unknown) => log.debug({ err: e, step: r.step }, 'progress report to the workflow failed'))
          .finally(() => (reporting = false));
      };
      try {
        const result = await userErrorsAreFinal(() =>
          superviseShard(
            {
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
            {
              // The child trains and never talks to Temporal: it gets none of the connection secrets.
              env: withoutTemporalSettings(),
              signal: ctx.cancellationSignal,
              onProgress: (p) => {
                last = p;
                ctx.heartbeat(p);
                metrics.step(p);
                report(p);
              },
              onCheckpoint: (c) => {
                metrics.checkpoint(c);
                log.debug({ step: c.step, dir: c.dir, seconds: c.seconds, bytes: c.bytes }, 'checkpoint');
              },
            },
          ),
        );
        log.info(
          { step: result.step, stepsRun: result.stepsRun, reason: result.reason, seconds: result.seconds },
          'shard finished',
        );
        if (ctx.cancellationSignal.aborted) {
          // The child saved a checkpoint on the way out; now report the cancellation itself.
          await ctx.cancelled;
        }
        return result;
      } finally {
        clearInterval(beat);
      }
    },
  };
}
