/**
 * Job-level operations behind the activities, callable without Temporal: plan a curriculum,
 * inspect a stage, promote its final checkpoint.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  latestCompleteCheckpoint,
  promoteCheckpoint,
  verifyCheckpoint,
  type VerifiedCheckpoint,
} from './checkpoint/store';
import { loadCurriculum, resolveUntil, type Overrides } from './config/load';
import { ConfigError, type ConfigProblem, UserError } from './errors';
import type { StageConfig } from './config/schema';
import { validateJobName } from './jobname';
import { checkpointsDir, convertedInitDir, finalDir, jobDir, stageDir } from './paths';
import { isDiffusersFolder } from './convert/config';
import type { CurriculumInput, LauncherSettings, Plan, StageFinal, StageStatus } from './shared/types';

/** Validates a job input and the curriculum it names; returns the plan (small JSON). */
export function planCurriculum(input: CurriculumInput): Plan {
  if (input === null || typeof input !== 'object')
    throw new UserError('workflow input must be a JSON object', {
      kind: 'InvalidInput',
      fix: 'pass {"jobName": "...", "curriculum": "configs/curriculum/tiny.toml"}',
    });
  const jobName = validateJobName(input.jobName);
  if (typeof input.curriculum !== 'string' || input.curriculum === '') {
    throw new UserError('curriculum is missing', {
      where: 'curriculum',
      kind: 'InvalidInput',
      fix: 'name a curriculum file, e.g. "configs/curriculum/tiny.toml"',
    });
  }
  const set = (input.set ?? {}) as Overrides;
  if (set === null || typeof set !== 'object' || Array.isArray(set)) {
    throw new UserError('set must be an object of {"section.field": value}', {
      where: 'set',
      kind: 'InvalidInput',
      fix: 'e.g. {"job.dump_folder": "runs"}',
    });
  }
  refuseWorkerSideFields(set);
  const cur = loadCurriculum(input.curriculum, set, { overrideSource: 'input.set' });
  const until = resolveUntil(input.until, cur.stages);
  const dump = cur.stages[0]!.config.job.dump_folder;
  return {
    jobName,
    jobDir: jobDir(dump, jobName),
    curriculum: cur.file,
    until,
    stages: cur.stages.map((s, index) => {
      const init =
        index === 0 && s.config.checkpoint.init_state_dir !== ''
          ? path.resolve(s.config.checkpoint.init_state_dir)
          : null;
      const convertFrom = init && isDiffusersFolder(init) ? init : null;
      return {
        name: s.video.stage,
        configFile: s.file,
        configHash: s.hash,
        steps: s.config.training.steps,
        initStateDir: convertFrom ? convertedInitDir(jobDir(dump, jobName)) : init,
        convertFrom,
        ssmLayer: s.config.model.ssm_layer,
        seed: s.config.training.seed,
        shardMaxSeconds: s.config.shard.max_seconds,
        shardMaxSteps: s.config.shard.max_steps,
        heartbeatTimeoutSeconds: s.config.shard.heartbeat_timeout_seconds,
        progressSeconds: s.config.shard.progress_seconds,
        launcher: launcherSettings(s.config.launcher),
      };
    }),
  };
}

/**
 * Fields that put programs or scheduler options into a job: they come from worker-side configs
 * (stage TOML files, curricula shipped with the worker), never from a workflow input's `set`.
 */
export const WORKER_SIDE_FIELDS = ['launcher.setup', 'launcher.sbatch_args'] as const;

function refuseWorkerSideFields(set: Overrides): void {
  const problems: ConfigProblem[] = [];
  for (const [key, value] of Object.entries(set)) {
    const field = WORKER_SIDE_FIELDS.find((f) => key === f || key.startsWith(`${f}.`));
    if (!field) continue;
    problems.push({
      file: 'input.set',
      field: key,
      value,
      message: `${field} runs on the cluster as shell lines or scheduler options, so a workflow input cannot set it`,
      fix: `put ${field} into the stage TOML files (or a curriculum) on the worker, and leave it out of "set"`,
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

function launcherSettings(l: StageConfig['launcher']): LauncherSettings {
  return {
    kind: l.kind,
    partition: l.partition,
    account: l.account,
    nodes: l.nodes,
    gpusPerNode: l.gpus_per_node,
    cpusPerTask: l.cpus_per_task,
    mem: l.mem,
    timeLimit: l.time_limit,
    signalSeconds: l.signal_seconds,
    sbatchArgs: l.sbatch_args,
    setup: l.setup,
    pollSeconds: l.poll_seconds,
    maxFailedStarts: l.max_failed_starts,
  };
}

function stageFinal(stage: string, ck: VerifiedCheckpoint): StageFinal {
  return {
    stage,
    steps: ck.state.step,
    finalCheckpoint: ck.dir,
    modelSha256: ck.state.files['model.safetensors']!.sha256,
    firstLoss: ck.state.firstLoss,
    lastLoss: ck.state.lastLoss,
  };
}

/** The stage's promoted final checkpoint, if it verifies and holds all `steps`. */
function existingFinal(sDir: string, stage: string, steps: number): StageFinal | null {
  const fDir = finalDir(sDir);
  if (!fs.existsSync(fDir)) return null;
  const v = verifyCheckpoint(fDir);
  return v.ok && v.state.step === steps ? stageFinal(stage, { dir: fDir, state: v.state }) : null;
}

/** Where a stage stands on disk. */
export function inspectStage(jobDirPath: string, stage: string, steps: number): StageStatus {
  const sDir = stageDir(jobDirPath, stage);
  const final = existingFinal(sDir, stage, steps);
  if (final) return { stage, final, step: steps };
  return { stage, final: null, step: latestCompleteCheckpoint(checkpointsDir(sDir))?.state.step ?? 0 };
}

/** Promotes the stage's completed checkpoint to <stage>/final. */
export function promoteStage(jobDirPath: string, stage: string, steps: number): StageFinal {
  const sDir = stageDir(jobDirPath, stage);
  const latest = latestCompleteCheckpoint(checkpointsDir(sDir));
  if (!latest || latest.state.step !== steps) {
    const existing = existingFinal(sDir, stage, steps);
    if (existing) return existing;
    throw new Error(
      `stage ${stage} has no complete checkpoint at step ${steps} (latest: ${latest?.state.step ?? 'none'})`,
    );
  }
  return stageFinal(stage, promoteCheckpoint(latest, finalDir(sDir)));
}
