/**
 * A shard of a command engine, made ready on the worker: the stage config written out in the
 * trainer's format (the preset's config_format), the preset's argv template filled, where the
 * trainer keeps its checkpoints (its checkpoint_layout).
 * The result (CommandShard) is what a launcher runs (src/train/launch: a local child, or a Slurm
 * batch job), through the engine runner (runner.ts).
 *
 * Where the trainer writes ({dump_folder}/{exp_name} is its experiment folder):
 *
 *   layout "ours"  {dump_folder} = job.dump_folder, {exp_name} = the job name: `ttt-curriculum
 *                  train` then keeps the stage's checkpoints and metrics.jsonl exactly where the
 *                  built-in engine does (<job>/<stage>/checkpoints, <job>/<stage>/metrics.jsonl)
 *   others         {dump_folder} = the stage folder <job>/<stage>, {exp_name} = the job name: one
 *                  experiment folder per stage, <job>/<stage>/<job>
 */
import * as path from 'node:path';
import type { LoadedStage } from '../config/load';
import { UserError } from '../errors';
import { stageDir } from '../paths';
import { StageEngineFiles } from './files';
import { engineDevices, type EngineDevices } from './mesh';
import {
  type CommandPreset,
  fillTemplate,
  HEAD_NODE_MARK,
  isTttVideoDitTrainer,
  type Placeholder,
  THIS_CLI,
  trainerTakesLease,
} from './preset';
import { CONFIG_WRITERS, type LayoutName, layoutSupport } from './registry';
import { writeAtomically } from '../train/launch/slurm-files';

/** How a running trainer is stopped (the preset's stop, stop_signal, stop_grace_seconds). */
export interface StopPolicy {
  how: 'signal' | 'checkpoint' | 'kill';
  signal: string;
  graceSeconds: number;
}

/** Small JSON: what a launcher needs to run the trainer of one shard. */
export interface CommandShard {
  preset: string;
  layout: LayoutName;
  /** The filled argv ({head_node} is filled where the trainer starts). */
  argv: string[];
  /** Absolute working directory of the trainer. */
  cwd: string;
  /** Set for the trainer on top of the environment it inherits. */
  env: Record<string, string>;
  /** The trainer's experiment folder as the layout reads it (ours: the stage folder). */
  runDir: string;
  /**
   * Whether the trainer takes the stage's lease itself (this package's CLI); else the runner takes
   * it and kills the trainer once a newer writer takes the stage (preset.ts: trainerTakesLease).
   * Absent in a spec written before it existed (the runner then applies the old rule).
   */
  trainerTakesLease?: boolean;
  /** The regular expression of its progress lines; null: it writes metrics.jsonl itself (ours). */
  progressPattern: string | null;
  stop: StopPolicy;
  devices: EngineDevices;
  /** The stage config written for it ({config}). */
  configFile: string;
}

/** This package's CLI, for a command whose program is THIS_CLI ("ttt-curriculum"). */
export const CLI_JS = path.join(__dirname, '..', 'cli', 'main.js');

/** The experiment folder arguments of a trainer of `layout`, and where the layout then reads it. */
export function trainerFolders(
  layout: LayoutName,
  jobDirPath: string,
  stage: string,
): { dumpFolder: string; expName: string; runDir: string } {
  const expName = path.basename(jobDirPath);
  if (layout === 'ours') return { dumpFolder: path.dirname(jobDirPath), expName, runDir: stageDir(jobDirPath, stage) };
  const dumpFolder = stageDir(jobDirPath, stage);
  return { dumpFolder, expName, runDir: path.join(dumpFolder, expName) };
}

/**
 * Makes a command shard ready: writes the stage config for the trainer and the stage's engine
 * record, fills the argv. `env` fills {env.NAME} (the worker's environment).
 */
export function prepareCommandShard(o: {
  stage: LoadedStage;
  jobDir: string;
  initFrom: string | null;
  env?: NodeJS.ProcessEnv;
}): CommandShard {
  const preset = o.stage.engine;
  if (preset.kind !== 'command') throw new Error(`engine ${preset.name} is not a command preset`);
  const name = o.stage.video.stage;
  const support = layoutSupport(preset.checkpoint_layout, { file: preset.file, field: 'checkpoint_layout' });
  const files = new StageEngineFiles(stageDir(o.jobDir, name));
  files.ensure();
  const configFile = files.config(preset.config_format);
  const write = CONFIG_WRITERS[preset.config_format];
  writeAtomically(
    configFile,
    write(o.stage.config, { stageFile: o.stage.file, tttVideoDitTrainer: isTttVideoDitTrainer(preset) }),
  );
  const folders = trainerFolders(preset.checkpoint_layout, o.jobDir, name);
  const devices = engineDevices(o.stage.config, preset);
  const values: Record<Placeholder, string> = {
    config: configFile,
    exp_name: folders.expName,
    dump_folder: folders.dumpFolder,
    init: o.initFrom ?? '',
    nodes: String(devices.nodes),
    gpus_per_node: String(devices.gpusPerNode),
    head_node: HEAD_NODE_MARK,
  };
  const env = o.env ?? process.env;
  const argv = preset.command.map((a) => fillTemplate(a, values, env, { file: preset.file, field: 'command' }));
  const cwd = path.resolve(fillTemplate(preset.cwd, values, env, { file: preset.file, field: 'cwd' }) || '.');
  files.writeRecord({
    preset: preset.name,
    layout: preset.checkpoint_layout,
    runDir: folders.runDir,
    at: new Date().toISOString(),
  });
  return {
    preset: preset.name,
    layout: preset.checkpoint_layout,
    argv: resolveProgram(argv, preset),
    cwd,
    env: preset.env,
    runDir: folders.runDir,
    trainerTakesLease: trainerTakesLease(preset),
    // A preset's pattern reads progress from the output lines with any layout (a trainer that
    // writes our checkpoints but not our metrics.jsonl); else the layout says where it comes from.
    progressPattern:
      preset.progress_pattern || (support.progress === 'output' ? (support.defaultProgressPattern ?? null) : null),
    stop: { how: preset.stop, signal: preset.stop_signal, graceSeconds: preset.stop_grace_seconds },
    devices,
    configFile,
  };
}

/** THIS_CLI ("ttt-curriculum") as the program: this package's CLI, run with this process's node. */
function resolveProgram(argv: string[], preset: CommandPreset): string[] {
  const [program, ...args] = argv;
  if (!program)
    throw new UserError('the command is empty', {
      where: preset.file,
      kind: 'ConfigError',
      fix: 'name the program as the first element of command',
    });
  return program === THIS_CLI ? [process.execPath, CLI_JS, ...args] : argv;
}
