/**
 * The README stays true: its configuration reference is the one generated from the schema, every
 * command in its shell blocks and its command table is one a test's source invokes, and library
 * code writes no console output.
 *
 * The command checks read test *sources*: they find the invocation's text in the file named for it.
 * They do not observe that the test ran, nor that the command succeeded (that is each named test's
 * own assertion); a test that is skipped, or an invocation that is never reached, still passes here.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { configReference, referenceInReadme } from '../../src/config/reference';
import { createSearchAttributeCommands } from '../../src/temporal/search-attributes';
import { ROOT } from '../helpers';

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const readSource = (f: string): string => fs.readFileSync(path.join(ROOT, f), 'utf8');
/** Test source with white space folded (the formatter may wrap a call's arguments over several lines). */
const source = (f: string): string =>
  readSource(f)
    .replace(/\s+/g, ' ')
    .replace(/([[(]) /g, '$1')
    .replace(/,\s*([\])])/g, '$1');

test('the configuration reference in the README is the one generated from the schema (npm run docs:config)', () => {
  assert.equal(referenceInReadme(README), configReference(), 'README.md is stale: run `npm run docs:config`');
  for (const field of [
    'training.steps',
    'shard.progress_seconds',
    'parallelism.fsdp_unsharded_dtype',
    'remat.attention',
  ])
    assert.ok(README.includes(`| \`${field}\` |`), field);
});

/** Commands of the README's ```sh blocks: continuation lines joined, comments and leading VAR=value dropped. */
function shellCommands(md: string): string[] {
  const out: string[] = [];
  for (const block of md.matchAll(/^```sh\n([\s\S]*?)^```/gm)) {
    const joined = block[1]!.replace(/\\\n\s*/g, '');
    for (const line of joined.split('\n')) {
      const cmd = line
        .replace(/\s+#.*$/, '')
        .replace(/^(\w+=\S+\s+)+/, '')
        .trim();
      if (cmd) out.push(cmd);
    }
  }
  return out;
}

/** Subcommands of the README's command table ("| `pause <job>`, `resume <job>` | ..."). */
function tableCommands(md: string): string[] {
  const section = md.slice(md.indexOf('## Commands'), md.indexOf('\n## ', md.indexOf('## Commands') + 5));
  const names: string[] = [];
  for (const row of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const cell = row.split(' | ')[0]!;
    for (const m of cell.matchAll(/`([a-z]+(?: synth| import)?)[ `]/g)) names.push(m[1]!);
  }
  return names;
}

const OPS = 'test/integration/operator.test.ts';
/** Which test file invokes each README command, and the text of that invocation in its source. `npm run cli --` is `node dist/src/cli/main.js` (CLI in the tests). */
const COVERAGE: { command: RegExp; file: string; evidence: RegExp }[] = [
  { command: /^npm run demo$/, file: OPS, evidence: /\[CLI, 'demo'/ }, // npm run demo = scripts/setup.sh, then the demo command
  { command: /^npm test$/, file: 'package.json', evidence: /"test": "bash scripts\/setup\.sh && node --test/ }, // the command running this test
  {
    command:
      /^temporal workflow start --type trainCurriculum --task-queue ttt-curriculum --workflow-id my-job --input '\{.*\}'$/,
    file: 'test/integration/full-run.test.ts',
    evidence: /\['workflow', 'start', '--address', srv\.address, '--type', 'trainCurriculum'/,
  },
  { command: /^npm run cli -- watch my-job$/, file: OPS, evidence: /\[CLI, 'watch', job/ },
  {
    command: /^squeue --me --name my-job\.18s$/,
    file: 'test/slurm.ts',
    evidence: /execFileSync\('squeue', \['--noheader', '--me', '--name', name/,
  },
  { command: /^npm run cli -- status my-job --json$/, file: OPS, evidence: /cli\(\['status', job, '--json'\]\)/ },
  {
    command: /^npm run cli -- plot my-job --out my-job\.png$/,
    file: OPS,
    evidence: /cli\(\['plot', job, '--out', pngFile\]\)/,
  },
  {
    command: /^temporal workflow list --query 'TrainingStage="18s"'$/,
    file: OPS,
    evidence: /\['workflow', 'list', '--address', srv\.address, '--query', 'TrainingStage="9s"'\]/,
  },
  {
    command: /^temporal operator search-attribute create --name \w+ --type \w+$/,
    file: 'test/integration/search-attributes.test.ts',
    evidence: /for \(const cmd of createSearchAttributeCommands\('default'\)\) execFileSync\(temporalCli\(\)/,
  },
  {
    command: /^npm run cli -- worker --metrics-port 9464 --allow-path \S+$/,
    file: OPS,
    evidence: /'--metrics-port', String\(metricsPort\), '--metrics-host', '127\.0\.0\.1', '--allow-path', dir/,
  },
  {
    command: /^npm run cli -- worker --allow-path \S+ --engine-dir \S+$/,
    file: 'test/integration/engine.test.ts',
    evidence: /\['--allow-path', dir, '--engine-dir', engines\]/,
  },
  // With the TLS settings of "Connecting to Temporal" in the environment (the leading VAR=value are dropped here).
  {
    command: /^npm run cli -- worker --allow-path \S+$/,
    file: 'test/integration/security.test.ts',
    evidence: /spawnWorker\(null, queue, tlsEnv\(\), \['--allow-path', jail/,
  },
  // On synthetic weights in CogVideoX's diffusers layout: the real 5B checkpoint is not downloaded in tests.
  {
    command: /^npm run cli -- convert --from \S+ --out \S+ --ssm-layer ttt_mlp$/,
    file: 'test/unit/convert.test.ts',
    evidence: /\[CLI, 'convert', \.\.\.args\]/,
  },
  // On a TTT-Video-DiT dataset written with torch in the test.
  {
    command: /^npm run cli -- dataset import \S+ --out \S+$/,
    file: 'test/unit/data-import.test.ts',
    evidence: /\[CLI, 'dataset', 'import', \.\.\.args\]/,
  },
];

test('every command in the README shell blocks is invoked in the source of the test file named for it (a text check, not a run)', () => {
  const cmds = shellCommands(README);
  assert.ok(cmds.length >= 10, `found ${cmds.length} commands`);
  for (const cmd of cmds) {
    const c = COVERAGE.find((x) => x.command.test(cmd));
    assert.ok(c, `README command named for no test: ${cmd}`);
    assert.match(source(c.file), c.evidence, `${c.file} invokes: ${cmd}`);
  }
  // The search-attribute commands are exactly the ones the worker prints and the test runs.
  const created = cmds.filter((c) => c.startsWith('temporal operator search-attribute create'));
  assert.deepEqual(created, createSearchAttributeCommands('default'));
});

test('every command of the README command table is invoked through the CLI in some test source (a text check, not a run)', () => {
  const names = tableCommands(README);
  assert.deepEqual(names, [
    'worker',
    'start',
    'status',
    'watch',
    'plot',
    'pause',
    'resume',
    'cancel',
    'until',
    'train',
    'dataset synth',
    'dataset import',
    'convert',
    'demo',
    'server',
  ]);
  const tests = [
    'test/helpers.ts',
    ...['unit', 'integration'].flatMap((d) =>
      fs
        .readdirSync(path.join(ROOT, 'test', d))
        .filter((f) => f !== 'docs.test.ts')
        .map((f) => `test/${d}/${f}`),
    ),
  ]
    .map(source)
    .join('\n');
  for (const name of names) {
    const words = name
      .split(' ')
      .map((w) => `'${w}'`)
      .join(', ');
    const runs = new RegExp(`\\[CLI, ${words}|cli\\(\\[${words}`);
    assert.match(tests, runs, `no test source invokes \`${name}\``);
  }
});

test('library code writes no console output (logs go through pino, command results through process.stdout)', () => {
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(path.join(ROOT, d), { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (e.name.endsWith('.ts')) files.push(path.join(d, e.name));
    }
  };
  for (const d of ['src', 'activities', 'workflows']) walk(d);
  const offenders = files.filter((f) => /\bconsole\.(log|info|warn|error|debug|trace)\(/.test(source(f)));
  assert.deepEqual(offenders, []);
});
