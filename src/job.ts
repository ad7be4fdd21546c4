/**
 * Job-level operations behind the activities and `ttt-curriculum train`, callable without
 * Temporal: plan a curriculum, decide and prepare stage 1's init weights, inspect a stage,
 * promote its final checkpoint.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  latestCompleteCheckpoint,
  promoteCheckpoint,
  verifyCheckpoint,
  type VerifiedCheckpoint,
} from './checkpoint/store';
import {
  type LoadedStage,
  loadCurriculum,
  loadStageConfig,
  resolveConfigPath,
  resolveUntil,
  type Overrides,
} from './config/load';
import type { StageConfig } from './config/schema';
import { workerOnlyProblems } from './config/worker-only';
import { type AllowedRoots, allowedRoots, confinePath } from './allowed-paths';
import { ConfigError, UserError } from './errors';
import { validateJobName } from './jobname';
import { checkpointsDir, convertedInitDir, finalDir, jobDir, metricsFile, stageDir } from './paths';
import { isDiffusersFolder } from './convert/config';
import { convertDiffusers, type ConvertResult } from './convert/convert';
import type { CurriculumInput, LauncherSettings, Plan, StageFinal, StageStatus } from './shared/types';
import { type CommandShard, prepareCommandShard } from './engine/command';
import { StageEngineFiles } from './engine/files';
import { externalInitProblems } from './engine/init';
import type { EngineCatalog } from './engine/preset';
import { externalFinal, latestComplete } from './engine/summary';
import { readMetricsFile, stageValidation } from './train/metrics';

/** Where a workflow input's own fields are named in errors. */
const INPUT = 'input';
const INPUT_SET = 'input.set';

/**
 * Validates a job input and the curriculum it names; returns the plan (small JSON). Every path
 * the input reaches must lie inside `allowed` (default: the working directory, plus the package's
 * configs/ read-only), and `set` may name no worker-only field (src/config/worker-only.ts).
 * `engines`: where engine presets are found (the worker's --engine-dir folders, then configs/engine/).
 */
export function planCurriculum(
  input: CurriculumInput,
  allowed: AllowedRoots = allowedRoots(),
  engines?: EngineCatalog,
): Plan {
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
  const workerOnly = workerOnlyProblems(set, INPUT_SET);
  if (workerOnly.length > 0) throw new ConfigError(workerOnly);
  // Before the file is read: an error about its contents would show a file the job may not see.
  confinePath(allowed, resolveConfigPath(input.curriculum), 'read', { file: INPUT, field: 'curriculum' });
  const cur = loadCurriculum(input.curriculum, set, { overrideSource: INPUT_SET, allowed, engines });
  const until = resolveUntil(input.until, cur.stages);
  const dump = cur.stages[0]!.config.job.dump_folder;
  const first = cur.stages[0]!;
  const initProblems = externalInitProblems(first.engine, first.config.checkpoint.init_state_dir, first.file);
  if (initProblems.length > 0) throw new ConfigError(initProblems);
  return {
    jobName,
    jobDir: jobDir(dump, jobName),
    curriculum: cur.file,
    until,
    stages: cur.stages.map((s, index) => {
      const init = index === 0 ? stageInit(s.config.checkpoint.init_state_dir, jobDir(dump, jobName)) : noInit();
      return {
        name: s.video.stage,
        configFile: s.file,
        configHash: s.hash,
        steps: s.config.training.steps,
        initStateDir: init.initStateDir,
        convertFrom: init.convertFrom,
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

/** Where stage 1 starts from. */
export interface StageInit {
  /** The weights folder of step 0 (absolute), or null for a fresh initialisation. */
  initStateDir: string | null;
  /** A CogVideoX diffusers folder to convert into initStateDir (<job>/init) first; else null. */
  convertFrom: string | null;
}

const noInit = (): StageInit => ({ initStateDir: null, convertFrom: null });

/**
 * Stage 1's init weights, for the plan and for `ttt-curriculum train`: the folder that
 * checkpoint.init_state_dir (or `train --init`) names, used as is; a CogVideoX diffusers folder,
 * converted into <job>/init first; nothing ('') for a fresh initialisation.
 */
export function stageInit(initStateDir: string, jobDirPath: string): StageInit {
  if (initStateDir === '') return noInit();
  const dir = path.resolve(initStateDir);
  if (!isDiffusersFolder(dir)) return { initStateDir: dir, convertFrom: null };
  return { initStateDir: convertedInitDir(jobDirPath), convertFrom: dir };
}

export interface PreparedInit {
  /** The folder to pass to the shard as its init weights, or null (fresh). */
  initFrom: string | null;
  /** The conversion run (or found already done) for it; null when none was needed. */
  conversion: ConvertResult | null;
}

/**
 * Makes a stage's init weights ready outside the workflow (`ttt-curriculum train`): converts
 * `init.convertFrom` into `init.initStateDir` (kept if already converted) unless the stage
 * already has a complete checkpoint to resume from. The workflow does the same through its
 * convertInit activity.
 */
export async function prepareInit(
  init: StageInit,
  at: { jobDir: string; stage: string },
  opts: { ssmLayer: 'ttt_mlp' | 'ttt_linear'; seed: number; signal?: AbortSignal },
): Promise<PreparedInit> {
  const { initStateDir, convertFrom } = init;
  if (!convertFrom || !initStateDir) return { initFrom: initStateDir, conversion: null };
  if (latestCompleteCheckpoint(checkpointsDir(stageDir(at.jobDir, at.stage))))
    return { initFrom: initStateDir, conversion: null };
  const conversion = await convertDiffusers({ from: convertFrom, out: initStateDir, ...opts });
  return { initFrom: initStateDir, conversion };
}

/** The [launcher] section as the plan carries it (camelCase, small JSON). */
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

/** A stage's final checkpoint for the workflow, with the validation loss at its start and end (from its metrics.jsonl). */
function stageFinal(stage: string, ck: VerifiedCheckpoint, sDir: string): StageFinal {
  let validation = { valLossStart: null as number | null, valLossEnd: null as number | null };
  try {
    validation = stageValidation(readMetricsFile(metricsFile(sDir)).validation, ck.state.step);
  } catch {
    /* a damaged metrics file costs the validation figures, not the stage */
  }
  return {
    stage,
    steps: ck.state.step,
    finalCheckpoint: ck.dir,
    modelSha256: ck.state.files['model.safetensors']!.sha256,
    firstLoss: ck.state.firstLoss,
    lastLoss: ck.state.lastLoss,
    ...validation,
  };
}

/** The stage's promoted final checkpoint, if it verifies and holds all `steps`. */
function existingFinal(sDir: string, stage: string, steps: number): StageFinal | null {
  const fDir = finalDir(sDir);
  if (!fs.existsSync(fDir)) return null;
  const v = verifyCheckpoint(fDir);
  return v.ok && v.state.step === steps ? stageFinal(stage, { dir: fDir, state: v.state }, sDir) : null;
}

/**
 * The external layout that trained the stage (its engine record, written when a shard of an
 * external engine starts), or undefined: the stage's checkpoints are ours, where the built-in
 * engine keeps them (also those of the "ours" layout).
 */
function externalLayout(sDir: string): { layout: 'ttt-video-dit'; runDir: string } | undefined {
  const r = new StageEngineFiles(sDir).readRecord();
  return r && r.layout !== 'ours' ? { layout: r.layout, runDir: r.runDir } : undefined;
}

/** Where a stage stands on disk. */
export function inspectStage(jobDirPath: string, stage: string, steps: number): StageStatus {
  const sDir = stageDir(jobDirPath, stage);
  const ext = externalLayout(sDir);
  if (ext) {
    const final = externalFinal(ext.layout, ext.runDir, sDir, stage, steps);
    return { stage, final, step: final ? steps : (latestComplete(ext.layout, ext.runDir)?.step ?? 0) };
  }
  const final = existingFinal(sDir, stage, steps);
  if (final) return { stage, final, step: steps };
  return { stage, final: null, step: latestCompleteCheckpoint(checkpointsDir(sDir))?.state.step ?? 0 };
}

/**
 * Promotes the stage's completed checkpoint to <stage>/final. A stage of an external layout keeps
 * its last complete checkpoint where it is: that folder is its final (the next stage's init).
 */
export function promoteStage(jobDirPath: string, stage: string, steps: number): StageFinal {
  const sDir = stageDir(jobDirPath, stage);
  const ext = externalLayout(sDir);
  if (ext) {
    const final = externalFinal(ext.layout, ext.runDir, sDir, stage, steps);
    if (final) return final;
    throw new Error(
      `stage ${stage} has no complete checkpoint at step ${steps} in ${ext.runDir} (latest: ${latestComplete(ext.layout, ext.runDir)?.step ?? 'none'})`,
    );
  }
  const latest = latestCompleteCheckpoint(checkpointsDir(sDir));
  if (!latest || latest.state.step !== steps) {
    const existing = existingFinal(sDir, stage, steps);
    if (existing) return existing;
    throw new Error(
      `stage ${stage} has no complete checkpoint at step ${steps} (latest: ${latest?.state.step ?? 'none'})`,
    );
  }
  return stageFinal(stage, promoteCheckpoint(latest, finalDir(sDir)), sDir);
}

/**
 * The activities check the paths they are handed again (the worker may have been restarted with
 * other roots since the job was planned, and a path may have changed under it): a shard's job
 * folder, init weights, stage config with the job's overrides, and no worker-only field in `set`.
 */
export function checkShardInput(
  allowed: AllowedRoots,
  input: { jobDir: string; initFrom: string | null; configFile: string; set: Overrides },
  engines?: EngineCatalog,
): LoadedStage {
  const workerOnly = workerOnlyProblems(input.set, INPUT_SET);
  if (workerOnly.length > 0) throw new ConfigError(workerOnly);
  checkJobDir(allowed, input.jobDir, 'write');
  if (input.initFrom !== null) confinePath(allowed, input.initFrom, 'read', { file: INPUT, field: 'initFrom' });
  return loadStageConfig(input.configFile, input.set, {
    overrideSource: INPUT_SET,
    allowed,
    checkPaths: false,
    engines,
  });
}

/**
 * The engine of a shard: for an external one, the trainer made ready (stage config written out,
 * argv filled from the worker's preset) and refused if the stage config changed since planning; for
 * the built-in one undefined (its child checks the config itself), and the stage's engine record
 * removed, so that its own checkpoints decide where the stage stands.
 */
export function shardEngine(
  stage: LoadedStage,
  at: { jobDir: string; initFrom: string | null; expectedConfigHash?: string },
): CommandShard | undefined {
  const files = new StageEngineFiles(stageDir(at.jobDir, stage.video.stage));
  if (stage.engine.kind !== 'command') {
    files.clearRecord();
    return undefined;
  }
  if (at.expectedConfigHash && at.expectedConfigHash !== stage.hash)
    throw new UserError('the stage config changed since the job was planned', {
      where: stage.file,
      kind: 'ConfigChanged',
      fix: 'restore the config, or start the job again so that it is planned with the new config',
    });
  return prepareCommandShard({ stage, jobDir: at.jobDir, initFrom: at.initFrom });
}

/** A job folder handed to an activity must lie where job inputs may `access`. */
export function checkJobDir(allowed: AllowedRoots, dir: string, access: 'read' | 'write'): void {
  confinePath(allowed, dir, access, { file: INPUT, field: 'job folder (job.dump_folder/<job>)' });
}
