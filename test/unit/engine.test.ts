/**
 * Engines (issue 14) without Temporal: presets and their lookup, config_format beside
 * checkpoint_layout, named progress patterns, the honest mesh, train.py's feasibility at planning,
 * the built-in engine's batch whatever the mesh, a command shard made ready (its config file in
 * the preset's format), and the engine runner with a stand-in external trainer
 * (test/fixtures/fake-trainer.ts) in a stand-in DCP-like layout: progress from its output lines,
 * the result from its checkpoints, torn folders set aside, the three ways of stopping, the shard's
 * bounds, failed starts, fencing of a trainer that takes no lease itself, the stage's final in
 * place.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { loadCurriculum, loadStageConfig } from '../../src/config/load';
import { type CommandShard, trainerFolders } from '../../src/engine/command';
import { engineDir, StageEngineFiles } from '../../src/engine/files';
import { EngineCatalog, fillTemplate, HEAD_NODE_MARK } from '../../src/engine/preset';
import { CONFIG_WRITERS, LAYOUTS, type LayoutName, type LayoutSupport } from '../../src/engine/registry';
import { TTT_SECTIONS } from '../../src/engine/ttt-video-dit/config';
import { CommandRunner, type RunnerSpec, TrainerFailedError } from '../../src/engine/runner';
import { TTT_VIDEO_DIT_PROGRESS_PATTERN } from '../../src/engine/log-progress';
import { FencedError, Lease } from '../../src/checkpoint/lease';
import { folderDigest } from '../../src/engine/summary';
import type { CheckpointLayout } from '../../src/engine/types';
import { ConfigError, UserError } from '../../src/errors';
import { inspectStage, planCurriculum, promoteStage, shardEngine } from '../../src/job';
import { logger } from '../../src/log';
import type { ShardProgress } from '../../src/shared/types';
import { LocalLauncher } from '../../src/train/launch/local';
import { runShard } from '../../src/train/shard';
import { withoutTemporalSettings } from '../../src/temporal/connection';
import { allowedRoots } from '../../src/allowed-paths';
import { CLI, metricSteps, ROOT, sha256File, tmpDir } from '../helpers';

const TINY_3S = path.join(ROOT, 'configs/train/tiny/3s.toml');
const TINY = path.join(ROOT, 'configs/curriculum/tiny.toml');
const PAPER = path.join(ROOT, 'configs/curriculum/ttt-mlp.toml');
const FAKE = path.join(ROOT, 'dist/test/fixtures/fake-trainer.js');
const log = logger.child({ test: 'engine' });
/** The start of a preset whose trainer is a torchrun program (not this package's CLI). */
const TORCHRUN_PRESET = 'kind = "command"\ncommand = ["torchrun", "ddp_train.py", "{config}"]\n';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a ConfigError');
}

/** A folder of presets for `worker --engine-dir`. */
function engineDirWith(files: Record<string, string>): string {
  const dir = tmpDir('engines');
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

// --- presets -----------------------------------------------------------------------------------

test('presets come from the worker --engine-dir folders first, then configs/engine/; "tfjs" is the built-in trainer', () => {
  const shipped = new EngineCatalog();
  assert.deepEqual(shipped.names(), ['tfjs', 'ours', 'ttt-video-dit-slurm', 'ttt-video-dit']);
  assert.equal(shipped.preset('tfjs').kind, 'tfjs');
  // Every shipped preset reads (its argv template and fields are valid).
  for (const name of shipped.names()) assert.equal(shipped.preset(name).name, name);
  const tvd = shipped.preset('ttt-video-dit');
  assert.ok(tvd.kind === 'command' && tvd.checkpoint_layout === 'ttt-video-dit' && tvd.stop === 'kill');
  assert.equal(tvd.cwd, '{env.TTT_VIDEO_DIT_DIR}', "where train.py lives is the worker's setting");
  assert.ok(tvd.command.includes('--checkpoint.resume') && tvd.command.includes('{config}'));
  const ours = shipped.preset('ours');
  assert.equal(ours.kind, 'command');
  assert.ok(ours.kind === 'command' && ours.checkpoint_layout === 'ours' && ours.stop === 'signal');
  const dir = engineDirWith({
    'mine.toml': 'kind = "command"\ncommand = ["my-trainer", "{config}"]\ncheckpoint_layout = "ours"\n',
    'ours.toml': 'kind = "command"\ncommand = ["other", "{config}"]\ncheckpoint_layout = "ours"\n',
    'notes.txt': 'not a preset',
  });
  const worker = EngineCatalog.forWorker([dir]);
  assert.deepEqual(worker.names(), ['tfjs', 'mine', 'ours', 'ttt-video-dit-slurm', 'ttt-video-dit']);
  const mine = worker.preset('ours');
  assert.ok(mine.kind === 'command' && mine.command[0] === 'other', 'the worker folder overrides the shipped preset');
  assert.throws(() => EngineCatalog.forWorker([path.join(dir, 'nope')]), /is not an existing folder/);
});

test('a job picks a preset by name; an unknown name is a ConfigError listing the presets available', () => {
  const dir = engineDirWith({ 'mine.toml': 'kind = "command"\ncommand = ["x"]\ncheckpoint_layout = "ours"\n' });
  const engines = EngineCatalog.forWorker([dir]);
  const st = loadStageConfig(TINY_3S, { 'engine.preset': 'mine' }, { engines });
  assert.equal(st.engine.name, 'mine');
  const e = configError(() =>
    loadStageConfig(TINY_3S, { 'engine.preset': 'torchtitan' }, { engines, overrideSource: 'input.set' }),
  );
  const p = e.problems[0]!;
  assert.equal(p.file, 'input.set');
  assert.equal(p.field, 'engine.preset');
  assert.match(
    p.message,
    new RegExp(`no engine preset of that name \\(looked for torchtitan\\.toml in ${dir}, .*configs/engine\\)`),
  );
  assert.match(
    p.fix,
    /use one of "tfjs", "mine", "ours", "ttt-video-dit-slurm", "ttt-video-dit", or add torchtitan\.toml/,
  );
  // A name is a file name, never a path.
  const bad = configError(() => loadStageConfig(TINY_3S, { 'engine.preset': '../../etc/passwd' }, { engines }));
  assert.match(bad.message, /engine\.preset = "\.\.\/\.\.\/etc\/passwd": a preset name/);
});

test('a preset with an unknown placeholder, no argv or a bad pattern is a ConfigError naming its file; a pattern may be named', () => {
  const dir = engineDirWith({
    'a.toml': 'kind = "command"\ncommand = ["t", "{stage_dir}"]\ncheckpoint_layout = "ours"\n',
    'b.toml': 'kind = "command"\ncheckpoint_layout = "ours"\n',
    'c.toml': 'kind = "command"\ncommand = ["t"]\ncheckpoint_layout = "ours"\nprogress_pattern = "loss (\\\\d+)"\n',
    'd.toml': 'kind = "command"\ncommand = ["t"]\ncheckpoint_layout = "ours"\nshell = "sh -c"\n',
    'e.toml': 'kind = "command"\ncommand = ["t"]\ncheckpoint_layout = "ours"\nprogress_pattern = "ttt_video_dit"\n',
    'f.toml': 'kind = "command"\ncommand = ["t"]\ncheckpoint_layout = "ours"\nprogress_pattern = "ttt-video-dit"\n',
  });
  const c = EngineCatalog.forWorker([dir]);
  assert.match(configError(() => c.preset('a')).message, /a\.toml: command = "\{stage_dir\}": unknown placeholder/);
  assert.match(configError(() => c.preset('b')).message, /b\.toml: command: a command preset needs its argv/);
  assert.match(configError(() => c.preset('c')).message, /progress_pattern = .*has no named group "step"/);
  assert.match(configError(() => c.preset('d')).message, /d\.toml: shell: unknown preset field/);
  // A name stands for a known pattern: "ttt-video-dit" is TTT-Video-DiT's progress lines.
  assert.match(
    configError(() => c.preset('e')).message,
    /e\.toml: progress_pattern = "ttt_video_dit": has no named group "step", and it is not the name of a known pattern \("ttt-video-dit"\)/,
  );
  const named = c.preset('f');
  assert.ok(named.kind === 'command');
  assert.equal(named.progress_pattern, TTT_VIDEO_DIT_PROGRESS_PATTERN.source);
});

test('config_format follows checkpoint_layout unless a preset sets it; a trainer that cannot read it is a ConfigError naming the preset file', () => {
  for (const name of ['ours', 'ttt-video-dit', 'ttt-video-dit-slurm']) {
    const p = new EngineCatalog().preset(name);
    assert.ok(p.kind === 'command' && p.config_format === p.checkpoint_layout, name);
  }
  const dir = engineDirWith({
    'ddp.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ours"\nconfig_format = "ttt-video-dit"\n`,
    'tvd-ours.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ttt-video-dit"\nconfig_format = "ours"\n`,
    'cli-tvd.toml':
      'kind = "command"\ncommand = ["ttt-curriculum", "train", "{config}"]\ncheckpoint_layout = "ours"\nconfig_format = "ttt-video-dit"\n',
    'yaml.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ours"\nconfig_format = "yaml"\n`,
  });
  const engines = EngineCatalog.forWorker([dir]);
  const ddp = engines.preset('ddp');
  assert.ok(ddp.kind === 'command' && ddp.config_format === 'ttt-video-dit' && ddp.checkpoint_layout === 'ours');
  const problem = (name: string) => {
    const e = configError(() => engines.preset(name));
    assert.equal(e.problems.length, 1, e.message);
    assert.equal(e.problems[0]!.file, path.join(dir, `${name}.toml`));
    assert.equal(e.problems[0]!.field, 'config_format');
    return e.problems[0]!;
  };
  const tvd = problem('tvd-ours');
  assert.match(
    tvd.message,
    /checkpoint_layout = "ttt-video-dit" is TTT-Video-DiT's train\.py, which reads only its own config format/,
  );
  assert.match(tvd.fix, /remove config_format \(it follows checkpoint_layout\) or set config_format = "ttt-video-dit"/);
  assert.match(
    problem('cli-tvd').message,
    /the command runs ttt-curriculum, whose train command reads this project's config format/,
  );
  problem('yaml');
  // Refused at planning, with the preset's file and field.
  assert.match(
    configError(() => loadStageConfig(TINY_3S, { 'engine.preset': 'tvd-ours' }, { engines })).message,
    /tvd-ours\.toml: config_format = "ours": checkpoint_layout = "ttt-video-dit" is TTT-Video-DiT's train\.py/,
  );
});

test('placeholders: {name} from the shard, {env.NAME} from the worker (a missing one named), {{ }} literal', () => {
  const values = {
    config: '/c.toml',
    exp_name: 'job',
    dump_folder: '/runs',
    init: '',
    nodes: '2',
    gpus_per_node: '8',
    head_node: HEAD_NODE_MARK,
  };
  const where = { file: 'p.toml', field: 'command' };
  assert.equal(fillTemplate('--nnodes={nodes}', values, {}, where), '--nnodes=2');
  assert.equal(fillTemplate('{{x}}={env.HOME_X}/{exp_name}', values, { HOME_X: '/h' }, where), '{x}=/h/job');
  assert.match(
    configError(() => fillTemplate('{env.TTT_VIDEO_DIT_DIR}', values, {}, where)).message,
    /p\.toml: command = .*the worker's environment has no TTT_VIDEO_DIT_DIR\. Fix: set TTT_VIDEO_DIT_DIR/,
  );
});

// --- config: worker-only fields, the mesh, the batch ---------------------------------------------

test('a workflow input cannot carry a program: engine.command, engine.env and engine.cwd in set point to presets', () => {
  const allowed = allowedRoots({ env: {} });
  for (const field of ['engine.command', 'engine.env', 'engine.cwd']) {
    const e = configError(() =>
      planCurriculum({ jobName: 'j', curriculum: TINY, set: { [field]: '["sh", "-c", "id"]' } }, allowed),
    );
    assert.equal(e.problems[0]!.field, field);
    assert.match(e.problems[0]!.message, /a workflow input may never set/);
    assert.match(e.problems[0]!.fix, /engine preset by name \("engine\.preset"\)/);
  }
  // In a stage file it is a field of a preset, not of a stage config.
  const dir = tmpDir('stage-cmd');
  const f = path.join(dir, '3s.toml');
  fs.writeFileSync(f, `${fs.readFileSync(TINY_3S, 'utf8')}\n[engine]\ncommand = ["sh"]\n`);
  const e = configError(() => loadStageConfig(f));
  assert.match(
    e.message,
    /engine\.command = \["sh"\]: this field belongs in an engine preset.*Fix: put it in a preset file/,
  );
});

test('the mesh of an external engine must equal nodes x GPUs per node: a ConfigError with the numbers, at planning', () => {
  const allowed = allowedRoots({ env: {} });
  const plan = (set: Record<string, unknown>) => () =>
    planCurriculum({ jobName: 'mesh', curriculum: TINY, set: { 'engine.preset': 'ours', ...set } }, allowed);
  const e = configError(plan({ 'parallelism.dp_replicate': 2, 'parallelism.dp_sharding': 4 }));
  const p = e.problems[0]!;
  assert.equal(p.field, 'parallelism.dp_replicate*dp_sharding*tp_sharding');
  assert.equal(p.value, '2*4*1 = 8');
  assert.match(
    p.message,
    /the device mesh has 8 devices, but engine ours runs on 1 node \(the local launcher\) x 1 \(gpus_per_node = 1 of preset ours \(launcher\.gpus_per_node = 0\)\) = 1/,
  );
  assert.match(
    p.fix,
    /a mesh whose product is 1, or launcher\.nodes x launcher\.gpus_per_node = 8 \(with launcher\.kind = "slurm"/,
  );
  // Slurm: 2 nodes x 4 GPUs carry a 2 x 4 mesh (with a batch that splits over 8 ranks).
  const ok = plan({
    'parallelism.dp_replicate': 2,
    'parallelism.dp_sharding': 4,
    'training.global_batch_size': 8,
    'launcher.kind': 'slurm',
    'launcher.nodes': 2,
    'launcher.gpus_per_node': 4,
  })();
  assert.equal(ok.stages.length, 5);
  const wrong = configError(
    plan({ 'parallelism.dp_sharding': 4, 'launcher.kind': 'slurm', 'launcher.nodes': 2, 'launcher.gpus_per_node': 4 }),
  );
  assert.match(
    wrong.problems[0]!.message,
    /has 4 devices, but engine ours runs on 2 nodes \(launcher\.nodes\) x 4 \(launcher\.gpus_per_node = 4\) = 8/,
  );
  // An external engine splits the batch over its data-parallel ranks.
  const batch = configError(
    plan({
      'parallelism.dp_sharding': 4,
      'training.global_batch_size': 6,
      'launcher.kind': 'slurm',
      'launcher.gpus_per_node': 4,
    }),
  );
  assert.match(
    batch.message,
    /training\.global_batch_size = 6: not divisible by the data-parallel ranks \(dp_replicate x dp_sharding = 4\)/,
  );
  // The local launcher runs on one node.
  const nodes = configError(plan({ 'launcher.nodes': 2 }));
  assert.match(
    nodes.message,
    /launcher\.nodes = 2: the local launcher runs engine ours on this worker's machine, one node/,
  );
});

test('the paper configs, as shipped, validate for an external engine on their mesh: 8 nodes x 8 GPUs, 16 x 8, 32 x 8', () => {
  const dir = engineDirWith({
    'paper.toml': 'kind = "command"\ncommand = ["t", "{config}"]\ncheckpoint_layout = "ours"\ngpus_per_node = 8\n',
  });
  const engines = EngineCatalog.forWorker([dir]);
  for (const [s, nodes] of [
    ['3s', 8],
    ['9s', 8],
    ['18s', 8],
    ['30s', 16],
    ['63s', 32],
  ] as const) {
    const set = { 'engine.preset': 'paper', 'launcher.kind': 'slurm', 'launcher.nodes': nodes };
    const st = loadStageConfig(path.join(ROOT, `configs/train/ttt-mlp/${s}.toml`), set, { checkPaths: false, engines });
    assert.equal(st.engine.name, 'paper');
  }
});

test('the built-in engine: a step trains on global_batch_size samples whatever the mesh, and the mesh never changes the math', async () => {
  const run = async (devices: number, mesh: Record<string, number>) => {
    const jobDir = tmpDir(`batch-${devices}`);
    const overrides = {
      'training.steps': 2,
      'checkpoint.interval': 2,
      'training.global_batch_size': 8,
      'training.grad_accum_steps': 2,
      ...mesh,
    };
    const saved = process.env.TTT_DEVICES;
    process.env.TTT_DEVICES = String(devices);
    try {
      const r = await runShard({
        configFile: TINY_3S,
        overrides,
        jobDir,
        initFrom: null,
        maxSeconds: Number.POSITIVE_INFINITY,
      });
      const lines = fs
        .readFileSync(path.join(jobDir, '3s', 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { step: number; samples: number; loss?: number })
        .filter((l) => l.loss !== undefined); // step lines, not validation lines
      return { lines, model: sha256File(path.join(r.checkpoint, 'model.safetensors')) };
    } finally {
      if (saved === undefined) delete process.env.TTT_DEVICES;
      else process.env.TTT_DEVICES = saved;
    }
  };
  // A paper-like mesh (data-parallel 2 x 4) on a process told it has 8 devices, and the 1-device mesh.
  const paper = await run(8, { 'parallelism.dp_replicate': 2, 'parallelism.dp_sharding': 4 });
  assert.deepEqual(
    paper.lines.map((l) => [l.step, l.samples]),
    [
      [1, 8],
      [2, 8],
    ],
    'each step trained on the 8 samples of training.global_batch_size',
  );
  const one = await run(1, {});
  assert.equal(paper.model, one.model, 'the same weights as on the 1-device mesh');
  // The batch must split into the accumulation steps (not into data-parallel ranks) for the built-in engine.
  const e = configError(() =>
    loadStageConfig(TINY_3S, { 'training.global_batch_size': 6, 'training.grad_accum_steps': 4 }),
  );
  assert.match(e.message, /training\.global_batch_size = 6: not divisible by training\.grad_accum_steps \(4\)/);
  loadStageConfig(TINY_3S, { 'training.global_batch_size': 4, 'parallelism.dp_replicate': 8 }, { devices: 8 });
});

// --- a command shard made ready ----------------------------------------------------------------

test('a command shard: the stage config written for the trainer, the argv filled, "ttt-curriculum" is this CLI', () => {
  const runs = tmpDir('prepare');
  const jobDir = path.join(runs, 'my-job');
  const set = { 'engine.preset': 'ours', 'job.dump_folder': runs, 'training.steps': 7 };
  const stage = loadStageConfig(TINY_3S, set, { engines: new EngineCatalog() });
  const cmd = shardEngine(stage, { jobDir, initFrom: '/weights/init', expectedConfigHash: stage.hash });
  assert.ok(cmd);
  assert.deepEqual(cmd.argv, [
    process.execPath,
    CLI,
    'train',
    path.join(jobDir, '3s', 'engine', 'config.ours.toml'),
    '--job.exp_name=my-job',
    `--job.dump_folder=${runs}`,
    '--checkpoint.init_state_dir=/weights/init',
  ]);
  assert.equal(cmd.runDir, path.join(jobDir, '3s'));
  assert.equal(cmd.trainerTakesLease, true, 'ttt-curriculum train takes the stage lease itself');
  assert.deepEqual(cmd.stop, { how: 'signal', signal: 'SIGUSR1', graceSeconds: 120 });
  // The written config is the stage's (as the built-in engine trains it), for the built-in trainer.
  const written = loadStageConfig(cmd.configFile, {}, { builtinEngine: true });
  assert.deepEqual({ ...written.config, engine: stage.config.engine }, stage.config);
  assert.equal(written.config.engine.preset, 'tfjs');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(engineDir(cmd.runDir), 'engine.json'), 'utf8')).layout, 'ours');
  // The config changed since planning: refused.
  assert.throws(
    () => shardEngine(stage, { jobDir, initFrom: null, expectedConfigHash: 'other' }),
    /changed since the job was planned/,
  );
  // Other layouts keep one experiment folder per stage.
  assert.deepEqual(trainerFolders('ttt-video-dit', jobDir, '9s'), {
    dumpFolder: path.join(jobDir, '9s'),
    expName: 'my-job',
    runDir: path.join(jobDir, '9s', 'my-job'),
  });
  // The built-in engine: no command, and no engine record left to mislead inspectStage.
  const builtin = loadStageConfig(TINY_3S, { 'job.dump_folder': runs });
  assert.equal(shardEngine(builtin, { jobDir, initFrom: null }), undefined);
  assert.equal(fs.existsSync(path.join(engineDir(cmd.runDir), 'engine.json')), false);
});

test('config_format = "ttt-video-dit" with checkpoint_layout = "ours": TTT-Video-DiT\'s config file for the tiny model on synthetic data, its progress by the named pattern, fenced by the runner; for train.py itself the same stage is refused when loaded, its init weights when written', () => {
  const runs = tmpDir('format');
  const init = tmpDir('ours-init');
  fs.writeFileSync(path.join(init, 'model.safetensors'), '');
  const engines = EngineCatalog.forWorker([
    engineDirWith({
      'ddp.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ours"\nconfig_format = "ttt-video-dit"\nprogress_pattern = "ttt-video-dit"\n`,
      'tvd.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ttt-video-dit"\n`,
    }),
  ]);
  const set = { 'job.dump_folder': runs, 'checkpoint.init_state_dir': init };
  const jobDir = path.join(runs, 'job');
  const stage = loadStageConfig(TINY_3S, { ...set, 'engine.preset': 'ddp' }, { engines });
  const cmd = shardEngine(stage, { jobDir, initFrom: init });
  assert.ok(cmd);
  assert.equal(cmd.configFile, path.join(jobDir, '3s', 'engine', 'config.ttt-video-dit.toml'));
  assert.deepEqual(cmd.argv, ['torchrun', 'ddp_train.py', cmd.configFile]);
  // Its checkpoints are ours: where the built-in engine keeps them.
  assert.deepEqual([cmd.layout, cmd.runDir], ['ours', path.join(jobDir, '3s')]);
  // Its progress from its output lines, by the named pattern; it is not our CLI: the runner fences it.
  assert.equal(cmd.progressPattern, TTT_VIDEO_DIT_PROGRESS_PATTERN.source);
  assert.equal(cmd.trainerTakesLease, false);
  const written = parseToml(fs.readFileSync(cmd.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
  assert.deepEqual(
    Object.keys(written).filter((k) => !TTT_SECTIONS.includes(k)),
    [],
    "only TTT-Video-DiT's sections",
  );
  assert.equal(written.training!.dataset_path, 'synthetic');
  assert.equal(written.model!.size, 'tiny');
  assert.equal(written.checkpoint!.init_state_dir, init, 'init weights of ours, not DCP');
  // The same stage for TTT-Video-DiT's train.py: what it cannot train, named in the stage file when
  // the stage is loaded (at planning, and again by each shard's activity) ...
  const e = configError(() => loadStageConfig(TINY_3S, { ...set, 'engine.preset': 'tvd' }, { engines }));
  assert.deepEqual(
    e.problems.map((p) => [p.file, p.field]),
    [
      [TINY_3S, 'training.dataset_path'],
      [TINY_3S, 'model.size'],
    ],
  );
  // ... and init weights that are not DCP where its config file is written (at the shard).
  const w = configError(() =>
    CONFIG_WRITERS['ttt-video-dit'](stage.config, { stageFile: TINY_3S, tttVideoDitTrainer: true }),
  );
  const fields = w.problems.map((p) => p.field);
  assert.ok(fields.includes('checkpoint.init_state_dir'), fields.join(', '));
  assert.ok(w.problems.every((p) => p.file === TINY_3S));
});

test("train.py's feasibility is checked at planning: the tiny curriculum with a TTT-Video-DiT preset fails at once, naming every stage file and field; a trainer that only reads its config format plans", () => {
  const engines = EngineCatalog.forWorker([
    engineDirWith({
      'ddp.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ours"\nconfig_format = "ttt-video-dit"\nprogress_pattern = "ttt-video-dit"\n`,
      'tvd.toml': `${TORCHRUN_PRESET}checkpoint_layout = "ttt-video-dit"\n`,
    }),
  ]);
  const runs = tmpDir('plan-tvd');
  const plan = (preset: string) =>
    planCurriculum(
      { jobName: 'plan-tvd', curriculum: TINY, set: { 'engine.preset': preset, 'job.dump_folder': runs } },
      allowedRoots({ allowPaths: [runs], env: {} }),
      engines,
    );
  const e = configError(() => plan('tvd'));
  const stageFiles = ['3s', '9s', '18s', '30s', '63s'].map((s) => path.join(ROOT, `configs/train/tiny/${s}.toml`));
  assert.deepEqual(
    e.problems.map((p) => [p.file, p.field]),
    stageFiles.flatMap((f) => [
      [f, 'training.dataset_path'],
      [f, 'model.size'],
    ]),
  );
  assert.match(e.message, /tiny\/63s\.toml: model\.size = "tiny": TTT-Video-DiT builds only its presets \(5B, debug\)/);
  assert.deepEqual(fs.readdirSync(runs), [], 'nothing written: no shard ran');
  assert.equal(plan('ddp').stages.length, 5);
});

test('a preset whose checkpoint layout this build cannot read is refused at planning', () => {
  const saved = LAYOUTS['ttt-video-dit'];
  delete LAYOUTS['ttt-video-dit'];
  try {
    const dir = engineDirWith({
      'tvd.toml': 'kind = "command"\ncommand = ["torchrun", "train.py"]\ncheckpoint_layout = "ttt-video-dit"\n',
    });
    const e = configError(() =>
      planCurriculum(
        { jobName: 'j', curriculum: TINY, set: { 'engine.preset': 'tvd' } },
        allowedRoots({ env: {} }),
        EngineCatalog.forWorker([dir]),
      ),
    );
    assert.match(
      e.message,
      /tvd\.toml: checkpoint_layout = "ttt-video-dit": this build of ttt-curriculum cannot read checkpoints in the ttt-video-dit layout/,
    );
  } finally {
    if (saved) LAYOUTS['ttt-video-dit'] = saved;
  }
});

// --- the engine runner, with a stand-in trainer in a stand-in layout ------------------------------

/** The stand-in layout: step-N folders under <run>/checkpoint, complete once `.metadata` is there. */
const fakeLayout: CheckpointLayout = {
  name: 'ttt-video-dit',
  latestComplete(runDir) {
    const dir = path.join(runDir, 'checkpoint');
    let best: { step: number; dir: string } | null = null;
    for (const n of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const m = /^step-(\d+)$/.exec(n);
      if (m && fs.existsSync(path.join(dir, n, '.metadata')) && (!best || Number(m[1]) > best.step))
        best = { step: Number(m[1]), dir: path.join(dir, n) };
    }
    return best;
  },
};
const PATTERN = 'Steps (?<step>\\d+)/\\d+ \\| loss: (?<loss>[\\d.]+), grad_norm: (?<grad_norm>[\\d.]+)';
let savedLayout: LayoutSupport | undefined;
before(() => {
  savedLayout = LAYOUTS['ttt-video-dit'];
  LAYOUTS['ttt-video-dit'] = {
    layout: fakeLayout,
    progress: 'output',
    defaultProgressPattern: PATTERN,
    stepsDir: (run) => path.join(run, 'checkpoint'),
  };
});
after(() => {
  if (savedLayout) LAYOUTS['ttt-video-dit'] = savedLayout;
  else delete LAYOUTS['ttt-video-dit'];
});

interface FakeRun {
  jobDir: string;
  runDir: string;
  spec: RunnerSpec;
}

function fakeRun(o: {
  total: number;
  interval: number;
  stepMs: number;
  stop?: CommandShard['stop']['how'];
  env?: Record<string, string>;
  maxSeconds?: number;
  maxSteps?: number;
  jobDir?: string;
  /** Default: the stand-in layout ("ttt-video-dit"). */
  layout?: LayoutName;
  trainerTakesLease?: boolean;
}): FakeRun {
  const jobDir = o.jobDir ?? path.join(tmpDir('runner'), 'job');
  const layout = o.layout ?? 'ttt-video-dit';
  const { runDir } = trainerFolders(layout, jobDir, '3s');
  const command: CommandShard = {
    preset: 'fake',
    layout,
    argv: [process.execPath, FAKE, runDir, String(o.total), String(o.interval), String(o.stepMs)],
    cwd: ROOT,
    env: o.env ?? {},
    runDir,
    trainerTakesLease: o.trainerTakesLease ?? false,
    progressPattern: PATTERN,
    stop: { how: o.stop ?? 'kill', signal: 'SIGUSR1', graceSeconds: 60 },
    devices: { nodes: 1, gpusPerNode: 2 },
    configFile: '',
  };
  return {
    jobDir,
    runDir,
    spec: {
      stage: '3s',
      totalSteps: o.total,
      jobDir,
      command,
      maxSeconds: o.maxSeconds ?? Number.POSITIVE_INFINITY,
      maxSteps: o.maxSteps ?? 0,
      who: 'the engine test',
      maxFailedStarts: 3,
      outputFile: true,
    },
  };
}

/** Runs the runner; `at` is called on each progress report and may stop it. */
async function runFake(r: FakeRun, at?: (p: ShardProgress, runner: CommandRunner) => void) {
  const progress: ShardProgress[] = [];
  const runner: CommandRunner = new CommandRunner(r.spec, log, (p) => {
    progress.push(p);
    at?.(p, runner);
  });
  const result = await runner.run();
  return { result, progress };
}

test("an external trainer's output lines become metrics.jsonl lines and progress; its result comes from its latest complete checkpoint", async () => {
  const r = fakeRun({ total: 6, interval: 4, stepMs: 10, env: { FAKE_ENV: 'FAKE_ENV' } });
  const { result, progress } = await runFake(r);
  assert.deepEqual(
    progress.map((p) => p.step),
    [1, 2, 3, 4, 5, 6],
  );
  assert.deepEqual(progress[1], {
    stage: '3s',
    step: 2,
    totalSteps: 6,
    loss: 0.5,
    gradNorm: 0.5,
    stepSeconds: progress[1]!.stepSeconds,
    backend: 'fake',
    device: '1 node x 2 devices',
  });
  assert.deepEqual(metricSteps(path.join(r.jobDir, '3s')), [1, 2, 3, 4, 5, 6], 'metrics.jsonl has every step');
  assert.deepEqual(
    { ...result, seconds: 0 },
    {
      stage: '3s',
      step: 6,
      totalSteps: 6,
      done: true,
      startStep: 0,
      stepsRun: 6,
      firstLoss: 1,
      lastLoss: 0.1667,
      checkpoint: path.join(r.runDir, 'checkpoint', 'step-6'),
      seconds: 0,
      backend: 'fake',
      device: '1 node x 2 devices',
      reason: 'done',
    },
  );
  const out = fs.readFileSync(path.join(r.jobDir, '3s', 'engine', 'output.log'), 'utf8');
  assert.match(out, /env FAKE_ENV=FAKE_ENV\n/, "the preset's env reaches the trainer");
  assert.match(out, /fake: saved step-6\n/);
});

test('a torn step folder newer than the latest complete checkpoint is moved aside, so that the trainer resumes from a complete one', async () => {
  const r = fakeRun({ total: 5, interval: 1, stepMs: 10 });
  const ck = path.join(r.runDir, 'checkpoint');
  fs.mkdirSync(path.join(ck, 'step-2'), { recursive: true });
  fs.writeFileSync(path.join(ck, 'step-2', '.metadata'), '{}');
  fs.mkdirSync(path.join(ck, 'step-4'), { recursive: true }); // torn: no .metadata
  const { result } = await runFake(r);
  assert.equal(result.startStep, 2);
  assert.equal(result.step, 5);
  const out = fs.readFileSync(path.join(r.jobDir, '3s', 'engine', 'output.log'), 'utf8');
  assert.match(out, /fake: starting at step 2\n/);
  assert.ok(
    fs.readdirSync(ck).some((n) => /^torn-step-4-\d+$/.test(n)),
    fs.readdirSync(ck).join(' '),
  );
});

test('stop = "signal": the trainer saves on stop_signal and exits; the result is that checkpoint', async () => {
  const r = fakeRun({ total: 10000, interval: 10000, stepMs: 20, stop: 'signal', env: { FAKE_SAVE_ON: 'SIGUSR1' } });
  let asked = 0;
  const { result } = await runFake(r, (p, runner) => {
    if (p.step === 5 && !asked) {
      asked = p.step;
      runner.requestStop();
    }
  });
  assert.equal(result.reason, 'stop');
  assert.equal(result.done, false);
  const last = metricSteps(path.join(r.jobDir, '3s')).at(-1)!;
  assert.equal(result.step, last, 'it saved the last step it trained');
  assert.ok(result.step >= 5);
});

test('stop = "checkpoint": the trainer is terminated at its next complete checkpoint', async () => {
  const r = fakeRun({ total: 10000, interval: 5, stepMs: 30, stop: 'checkpoint' });
  let at = 0;
  const { result } = await runFake(r, (p, runner) => {
    if (p.step === 7 && !at) {
      at = p.step;
      runner.requestStop();
    }
  });
  assert.equal(result.reason, 'stop');
  assert.equal(result.step, 10, 'the first checkpoint after the stop (step 7) is step 10');
});

test('stop = "kill": the trainer is terminated at once; the result is the last complete checkpoint', async () => {
  const r = fakeRun({ total: 10000, interval: 5, stepMs: 30, stop: 'kill' });
  let at = 0;
  const { result } = await runFake(r, (p, runner) => {
    if (p.step === 7 && !at) {
      at = p.step;
      runner.requestStop();
    }
  });
  assert.equal(result.reason, 'stop');
  assert.equal(result.step, 5);
  assert.ok(fs.readFileSync(path.join(r.jobDir, '3s', 'engine', 'runs.jsonl'), 'utf8').includes('"exit":"SIGTERM"'));
});

test("the shard's bounds never kill: at shard.max_steps it stops at the next checkpoint (stop = kill) or on the signal", async () => {
  const k = fakeRun({ total: 10000, interval: 4, stepMs: 20, stop: 'kill', maxSteps: 5 });
  const a = await runFake(k);
  assert.equal(a.result.reason, 'steps');
  assert.equal(a.result.step, 8, 'the checkpoint after step 5');
  const s = fakeRun({
    total: 10000,
    interval: 10000,
    stepMs: 20,
    stop: 'signal',
    maxSteps: 3,
    env: { FAKE_SAVE_ON: 'SIGUSR1' },
  });
  const b = await runFake(s);
  assert.equal(b.result.reason, 'steps');
  assert.ok(b.result.step >= 3);
  // And the time bound, the same way.
  const t = fakeRun({ total: 10000, interval: 3, stepMs: 20, stop: 'kill', maxSeconds: 0.5 });
  const c = await runFake(t);
  assert.equal(c.result.reason, 'time');
  assert.equal(c.result.step % 3, 0);
});

test('a trainer that exits non-zero fails retryably with its output; after max_failed_starts in a row the stage fails for good', async () => {
  const r = fakeRun({ total: 5, interval: 1, stepMs: 10, env: { FAKE_FAIL: '3' } });
  for (let i = 0; i < 3; i++) {
    const e = await runFake(r).then(
      () => assert.fail('should fail'),
      (x: unknown) => x,
    );
    assert.ok(e instanceof TrainerFailedError, String(e));
    assert.match(
      e.message,
      /engine fake exited with code 3 at step 0; the stage resumes from its latest complete checkpoint \(step 0\)\. Its output ends with:\nfake: cannot find the dataset/,
    );
  }
  const e = await runFake(r).then(
    () => assert.fail('should fail'),
    (x: unknown) => x,
  );
  assert.ok(e instanceof UserError && e.kind === 'EngineError', String(e));
  assert.match(
    e.message,
    /the last 3 runs of engine fake for stage 3s ended without training a step or reporting a result \(exits: 3, 3, 3\).*fake: cannot find the dataset/s,
  );
  // A run that trains resets the count.
  r.spec.command.env = {};
  fs.rmSync(path.join(r.jobDir, '3s', 'engine', 'runs.jsonl'));
  const ok = await runFake(r);
  assert.equal(ok.result.done, true);
});

test('fencing: the runner holds the stage lease for a trainer that does not take it itself, whatever its layout, and kills it once a newer writer takes the stage', async () => {
  // A trainer of layout "ours" that is not this package's CLI (as ddp_train.py): it knows nothing of leases.
  const r = fakeRun({ total: 100_000, interval: 100_000, stepMs: 20, layout: 'ours' });
  const sDir = path.join(r.jobDir, '3s');
  const held = path.join(sDir, 'leases', '00000001.json');
  let pid = 0;
  let newer: Lease | undefined;
  let unfenced = false;
  const runner: CommandRunner = new CommandRunner(
    r.spec,
    log,
    (p) => {
      if (p.step < 3 || newer || unfenced) return;
      // Unfenced, it would train on: stop it (at once, stop = "kill") and fail below.
      if (!fs.existsSync(held)) {
        unfenced = true;
        runner.requestStop();
      } else newer = Lease.acquire(sDir, 'a newer writer (the test)');
    },
    (started) => {
      pid = started;
    },
  );
  const e = await runner.run().then(
    () => 'ended',
    (x: unknown) => x,
  );
  assert.equal(unfenced, false, 'the runner holds a lease for the trainer');
  assert.ok(e instanceof FencedError, String(e));
  assert.match(e.message, /fenced: lease 1 on .* was superseded by lease 2 \(a newer writer \(the test\), pid \d+/);
  assert.equal(
    (JSON.parse(fs.readFileSync(held, 'utf8')) as { who: string }).who,
    'the engine test',
    "lease 1 is the runner's",
  );
  // Killed by the runner (it would have trained 100000 steps), with no result.
  const run = new StageEngineFiles(sDir).recordedRuns().at(-1)!;
  assert.deepEqual([run.exit, run.result], ['SIGKILL', false]);
  assert.ok(pid > 0);
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the trainer is gone');
  // A trainer that takes the lease itself (this package's CLI): the runner takes none, or its
  // trainer's newer lease would fence it.
  const own = fakeRun({ total: 2, interval: 2, stepMs: 10, trainerTakesLease: true });
  assert.equal((await runFake(own)).result.step, 2);
  assert.equal(fs.existsSync(path.join(own.jobDir, '3s', 'leases')), false);
  // A spec written before trainerTakesLease existed (a Slurm job queued across an upgrade): the
  // old rule, layout "ours" meant this package's CLI, which takes the lease itself.
  // (The stand-in writes the other layout's checkpoints, so that run ends without a result.)
  const old = fakeRun({ total: 2, interval: 2, stepMs: 10, layout: 'ours' });
  delete old.spec.command.trainerTakesLease;
  await assert.rejects(runFake(old), /without a complete checkpoint/);
  assert.equal(fs.existsSync(path.join(old.jobDir, '3s', 'leases')), false, 'no lease taken by the runner');
});

test('a stage of an external layout: inspectStage and promoteStage read its checkpoints; the final is its last complete step folder', async () => {
  const r = fakeRun({ total: 4, interval: 2, stepMs: 10 });
  fs.mkdirSync(path.join(r.jobDir, '3s', 'engine'), { recursive: true });
  fs.writeFileSync(
    path.join(r.jobDir, '3s', 'engine', 'engine.json'),
    JSON.stringify({ preset: 'fake', layout: 'ttt-video-dit', runDir: r.runDir, at: '' }),
  );
  assert.deepEqual(inspectStage(r.jobDir, '3s', 4), { stage: '3s', final: null, step: 0 });
  await runFake(r);
  const status = inspectStage(r.jobDir, '3s', 4);
  const final = promoteStage(r.jobDir, '3s', 4);
  assert.deepEqual(status.final, final);
  assert.equal(final.finalCheckpoint, path.join(r.runDir, 'checkpoint', 'step-4'));
  assert.equal(final.modelSha256, folderDigest(final.finalCheckpoint));
  assert.deepEqual([final.firstLoss, final.lastLoss], [1, 0.25]);
  assert.throws(() => promoteStage(r.jobDir, '3s', 6), /no complete checkpoint at step 6 .*latest: 4/);
});

test('the local launcher runs a command shard in the engine runner; the trainer gets no TEMPORAL_* setting', async () => {
  const jobDir = path.join(tmpDir('local-engine'), 'job');
  const saved = process.env.TEMPORAL_ADDRESS;
  process.env.TEMPORAL_ADDRESS = 'temporal.example:7233';
  try {
    // The "ours" layout (the runner process knows only the registry's own layouts); the stand-in prints the
    // variable and exits without a checkpoint of ours: a retryable failure that shows its output.
    const command: CommandShard = {
      ...fakeRun({ total: 1, interval: 1, stepMs: 1, jobDir }).spec.command,
      layout: 'ours',
      runDir: path.join(jobDir, '3s'),
      progressPattern: null,
      env: { FAKE_ENV: 'TEMPORAL_ADDRESS' },
    };
    const e = await new LocalLauncher(3)
      .run(
        {
          jobName: 'job',
          stage: '3s',
          totalSteps: 1,
          request: { configFile: TINY_3S, overrides: {}, jobDir, initFrom: null, maxSeconds: 60, who: 'test' },
          command,
        },
        { log, env: withoutTemporalSettings() },
      )
      .then(
        () => assert.fail('should fail'),
        (x: unknown) => x as Error,
      );
    assert.equal(e.name, 'ChildFailedError', 'retryable');
    assert.match(
      e.message,
      /engine fake ended \(0\) without a complete checkpoint in .*\/job\/3s; its output ends with:\nenv TEMPORAL_ADDRESS=\n/,
    );
  } finally {
    if (saved === undefined) delete process.env.TEMPORAL_ADDRESS;
    else process.env.TEMPORAL_ADDRESS = saved;
  }
});

test('the engine of the paper curriculum, TTT-Video-DiT, gets DCP init weights: a safetensors or diffusers folder is refused at planning', () => {
  const weights = tmpDir('weights');
  fs.writeFileSync(path.join(weights, 'model.safetensors'), '');
  // The paper curriculum (what train.py trains) on one device, with its precomputed data's files.
  const data = tmpDir('precomp');
  for (const s of ['3sec', '9sec', '18sec', '30sec', '63sec']) fs.writeFileSync(path.join(data, `${s}.jsonl`), '');
  const set = {
    'engine.preset': 'ttt-video-dit',
    'checkpoint.init_state_dir': weights,
    'training.dataset_path': data,
    'launcher.gpus_per_node': 1,
    'parallelism.dp_replicate': 1,
    'parallelism.dp_sharding': 1,
    'parallelism.tp_sharding': 1,
  };
  const allowed = allowedRoots({ allowPaths: [weights, data, ROOT], env: {} });
  const e = configError(() => planCurriculum({ jobName: 'dcp', curriculum: PAPER, set }, allowed));
  assert.deepEqual(
    e.problems.map((p) => p.field),
    ['checkpoint.init_state_dir'],
  );
  assert.match(
    e.message,
    /checkpoint\.init_state_dir = .*loads its init weights with torch\.distributed\.checkpoint; this folder is not a torch\.distributed\.checkpoint \(DCP\) folder/,
  );
  fs.writeFileSync(path.join(weights, '.metadata'), '');
  const plan = planCurriculum({ jobName: 'dcp', curriculum: PAPER, set }, allowed);
  assert.equal(plan.stages[0]!.initStateDir, weights);
});

test('loadCurriculum with an external engine hashes [engine]; the built-in one leaves the hash as before', () => {
  const a = loadCurriculum(TINY, {});
  const b = loadCurriculum(TINY, { 'engine.preset': 'tfjs' });
  const c = loadCurriculum(TINY, { 'engine.preset': 'ours' });
  assert.deepEqual(
    a.stages.map((s) => s.hash),
    b.stages.map((s) => s.hash),
  );
  assert.notEqual(a.stages[0]!.hash, c.stages[0]!.hash);
});
