/**
 * Property-based fuzzing (fast-check) of the inputs a user hands us: stage configs and
 * curricula (random TOML, mutations of the shipped tiny configs, random command-line
 * overrides), the JSONL dataset reader (mutated lines, truncated and bit-flipped .npy files),
 * job names, and what secure-by-default added: paths from job inputs against the roots a worker
 * allows (`..`, symbolic links, NUL, very long, Unicode normalisation), those roots themselves,
 * worker-only fields in `set`, and the Temporal connection settings (profile file and TEMPORAL_*
 * variables). The properties: no crash other than our clear errors (UserError/ConfigError,
 * naming the file and field, or the file and line), no hang (not timed: a case that never returns
 * keeps its test from finishing, and a slow machine is no failure), no prototype pollution, job
 * names that can never escape their folder, accepted paths that lie inside a root as the kernel
 * resolves them, and connection summaries without the secret.
 * Seeds are fixed so that a failure reproduces; FUZZ_RUNS scales the number of cases.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { loadCurriculum, loadStageConfig, parseCliOverrides } from '../../src/config/load';
import { openDataSource } from '../../src/data/batch';
import { readNpy } from '../../src/io/npy';
import { writeSynthDataset } from '../../src/data/synthfiles';
import { ConfigError, UserError } from '../../src/errors';
import { validateJobName } from '../../src/jobname';
import { modelDims } from '../../src/config/dims';
import * as dimsModule from '../../src/model/dims';
import { jobDir } from '../../src/paths';
import { ALLOW_PATHS_ENV, allowedRoots, confinePath, isWithin } from '../../src/allowed-paths';
import { WORKER_ONLY_FIELDS } from '../../src/config/worker-only';
import { planCurriculum } from '../../src/job';
import { connectionSettings, describeConnection } from '../../src/temporal/connection';
import { ROOT, tmpDir } from '../helpers';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * RUNS));
const TINY = ['3s', '9s', '18s', '30s', '63s'].map((s) => path.join(ROOT, 'configs', 'train', 'tiny', `${s}.toml`));

/** Runs fn; it may succeed or throw a UserError whose message names one of `where`. Anything else fails the property. */
function clearOrOk(fn: () => unknown, where: string[]): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof UserError)) throw new Error(`not a clear error: ${(e as Error)?.stack ?? String(e)}`);
    assert.ok(
      where.some((w) => e.message.includes(w)),
      `the error names none of ${where.join(', ')}: ${e.message}`,
    );
    if (e instanceof ConfigError) {
      assert.ok(e.problems.length > 0);
      for (const p of e.problems)
        assert.ok(p.file && p.field && p.message && p.fix, `incomplete problem ${JSON.stringify(p)}`);
    }
  } finally {
    assert.deepEqual(Object.keys(Object.prototype), [], 'Object.prototype was polluted');
  }
}

// ---- (a) the config loader ---------------------------------------------------------------

const FIELDS: Record<string, string[]> = (() => {
  const out: Record<string, string[]> = {};
  for (const f of TINY)
    for (const [sec, v] of Object.entries(parseToml(fs.readFileSync(f, 'utf8'))))
      out[sec] = [...new Set([...(out[sec] ?? []), ...Object.keys(v as object)])];
  out.remat = ['transformer_checkpoint_layer_group_size', 'attention', 'mlp'];
  out.runtime = ['backend'];
  return out;
})();
const SECTIONS = [...Object.keys(FIELDS), 'wandb', 'bogus', '__proto__', 'constructor', 'prototype'];

const tomlValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.integer({ min: -3, max: 200 }),
  fc.constantFrom(0, 1, 2, 64, 1e9, 2 ** 31, 2 ** 53 - 1, -1, 1e300, 0.5, -0.0),
  fc.double({ noNaN: false }),
  fc.boolean(),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('3sec', '9sec', '63sec', 'synthetic', 'ttt_mlp', 'qkvo', 'wasm', ''),
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
);
const fieldName = fc.oneof(
  fc
    .constantFrom(...SECTIONS)
    .chain((s) =>
      fc
        .constantFrom(...(Object.hasOwn(FIELDS, s) ? FIELDS[s]! : ['x', '__proto__', 'polluted']))
        .map((f) => [s, f] as const),
    ),
  fc.tuple(fc.constantFrom(...SECTIONS), fc.stringMatching(/^[a-z_][a-z0-9_]{0,10}$/)),
);

type Mutation =
  | { kind: 'set'; key: readonly [string, string]; value: unknown }
  | { kind: 'delete'; key: readonly [string, string] }
  | { kind: 'dropSection'; section: string };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fieldName, value: tomlValue }),
  fc.record({ kind: fc.constant('delete' as const), key: fieldName }),
  fc.record({ kind: fc.constant('dropSection' as const), section: fc.constantFrom(...SECTIONS) }),
);

function mutate(raw: Record<string, Record<string, unknown>>, ms: Mutation[]): Record<string, unknown> {
  const out: Record<string, Record<string, unknown>> = JSON.parse(JSON.stringify(raw));
  for (const m of ms) {
    if (m.kind === 'dropSection') delete out[m.section];
    else {
      const [s, f] = m.key;
      if (!Object.hasOwn(out, s))
        Object.defineProperty(out, s, { value: {}, enumerable: true, writable: true, configurable: true });
      const sec = out[s]!;
      if (m.kind === 'delete') delete sec[f];
      else Object.defineProperty(sec, f, { value: m.value, enumerable: true, writable: true, configurable: true });
    }
  }
  return out;
}

test('fuzz: random mutations of the shipped tiny configs load or fail with a ConfigError naming the file and field', () => {
  const dir = tmpDir('fuzz-config');
  const bases = TINY.map((f) => parseToml(fs.readFileSync(f, 'utf8')) as Record<string, Record<string, unknown>>);
  const file = path.join(dir, 'stage.toml');
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: bases.length - 1 }),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      (b, ms) => {
        let text: string;
        try {
          text = stringifyToml(mutate(bases[b]!, ms));
        } catch {
          return; // a value TOML cannot hold (e.g. a non-finite float in some writers): nothing to load
        }
        fs.writeFileSync(file, text);
        clearOrOk(() => loadStageConfig(file, {}, { checkPaths: false }), [file]);
      },
    ),
    { seed: 6001, numRuns: runs(400) },
  );
});

test('fuzz: random edits of the config text (deleted, inserted, duplicated characters and lines) never crash', () => {
  const dir = tmpDir('fuzz-toml');
  const texts = TINY.map((f) => fs.readFileSync(f, 'utf8'));
  const file = path.join(dir, 'stage.toml');
  const edit = fc.record({
    at: fc.nat(),
    len: fc.nat({ max: 40 }),
    insert: fc.oneof(
      fc.string({ maxLength: 10 }),
      fc.constantFrom('[', ']', '=', '"', "'''", '\n', '[[x]]\n', 'a.b.c = 1\n', '\\u0000', '#'),
    ),
  });
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: texts.length - 1 }),
      fc.array(edit, { minLength: 1, maxLength: 5 }),
      (b, edits) => {
        let t = texts[b]!;
        for (const e of edits) {
          const at = e.at % (t.length + 1);
          t = t.slice(0, at) + e.insert + t.slice(at + e.len);
        }
        fs.writeFileSync(file, t);
        clearOrOk(() => loadStageConfig(file, {}, { checkPaths: false }), [file]);
      },
    ),
    { seed: 6002, numRuns: runs(400) },
  );
});

test('fuzz: arbitrary text as a stage config or a curriculum never crashes', () => {
  const dir = tmpDir('fuzz-text');
  const stage = path.join(dir, 'stage.toml');
  const curriculum = path.join(dir, 'curriculum.toml');
  const stagesList = fc.array(
    fc.oneof(fc.constantFrom(...TINY, '../nope.toml', dir, '', '\u0000'), fc.string({ maxLength: 8 })),
    { maxLength: 6 },
  );
  const curriculumText = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.tuple(fc.string({ maxLength: 6 }), stagesList).map(([name, stages]) => {
      try {
        return stringifyToml({ name, stages });
      } catch {
        return '';
      }
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300, unit: 'binary' }), curriculumText, (s, cText) => {
      fs.writeFileSync(stage, s);
      clearOrOk(() => loadStageConfig(stage, {}, { checkPaths: false }), [stage]);
      fs.writeFileSync(curriculum, cText);
      clearOrOk(() => loadCurriculum(curriculum, {}, { checkPaths: false }), [curriculum, ...TINY]);
    }),
    { seed: 6003, numRuns: runs(300) },
  );
});

test('fuzz: random command-line overrides parse and load, or fail with a clear error naming the override; no prototype pollution', () => {
  const key = fc.oneof(
    fieldName.map(([s, f]) => `${s}.${f}`),
    fc.constantFrom(
      '__proto__.polluted',
      'remat.__proto__.polluted',
      'wandb.__proto__.x',
      'constructor.prototype.polluted',
      'training.constructor.x',
      'model.a.b.c',
    ),
    fc.string({ maxLength: 12 }),
  );
  const value = fc.oneof(
    fc.string({ maxLength: 12 }),
    tomlValue.map((v) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))),
    fc.constantFrom('1e9', '2147483648', '[1,2]', '{a=1}', 'inf', 'nan', '"x"', '0x10', '1\nx = 2'),
  );
  const arg = fc.oneof(
    fc.tuple(key, value).map(([k, v]) => [`--${k}=${v}`]),
    fc.tuple(key, value).map(([k, v]) => [`--${k}`, v]),
    key.map((k) => [`--${k}`]),
    fc.string({ maxLength: 10 }).map((s) => [s]),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: TINY.length - 1 }), fc.array(arg, { maxLength: 4 }), (b, argv) => {
      const args = argv.flat();
      let overrides: Record<string, unknown> = {};
      try {
        overrides = parseCliOverrides(args).overrides;
      } catch (e) {
        assert.ok(
          e instanceof UserError && /override --\S+ has no value/.test(e.message),
          `parseCliOverrides: ${(e as Error).message}`,
        );
        return;
      }
      // Overrides are named by their field; the file is named when the value came through it.
      clearOrOk(() => loadStageConfig(TINY[b]!, overrides, { checkPaths: false }), [TINY[b]!, '--set']);
    }),
    { seed: 6004, numRuns: runs(500) },
  );
});

test('regression: an override through __proto__ is refused and does not pollute Object.prototype', () => {
  for (const k of [
    '__proto__.polluted',
    'remat.__proto__.polluted',
    'wandb.__proto__.polluted',
    'training.__proto__.polluted',
    'constructor.prototype.polluted',
  ]) {
    assert.throws(
      () => loadStageConfig(TINY[0]!, { [k]: 'yes' }),
      (e: unknown) =>
        e instanceof ConfigError && e.problems.some((p) => p.field === k && /not a config field/.test(p.message)),
      k,
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined, `${k} polluted Object.prototype`);
  }
  // The next load of a good config is unaffected.
  assert.equal(loadStageConfig(TINY[0]!).config.training.steps, 40);
});

test('regression: a huge model.mini_batch_size is reported after a bounded search (the text_length search was O(mini_batch_size))', (t) => {
  // The work is counted, not timed: every candidate text length costs one sequenceLength call.
  const calls = t.mock.method(dimsModule, 'sequenceLength');
  for (const k of [1e9, 2 ** 31, 2 ** 53 - 1]) {
    calls.mock.resetCalls();
    assert.throws(
      () => loadStageConfig(TINY[0]!, { 'model.mini_batch_size': k }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.problems.some((p) => p.field === 'model.text_length' && p.message.includes(`model.mini_batch_size = ${k}`)),
    );
    // One period each way, capped at 4096 candidates each way, plus the lengths of the loads themselves.
    assert.ok(calls.mock.callCount() <= 2 * 4096 + 8, `mini_batch_size ${k}: ${calls.mock.callCount()} candidates`);
  }
  assert.ok(calls.mock.callCount() > 0, 'the count observes the search');
  // Ordinary sizes still get the nearest text lengths that fit: 1 x 13 + 13 x 4 = 65 -> 12 (64) or 76 (128).
  assert.throws(
    () => loadStageConfig(TINY[0]!, { 'model.text_length': 13 }),
    /set model\.text_length = 12 \(64 tokens = 1 x 64\) or 76 \(128 tokens = 2 x 64\)/,
  );
});

test('regression: a curriculum stage that names a directory is a problem of that stages[i] entry', () => {
  const dir = tmpDir('curriculum-dir');
  const file = path.join(dir, 'c.toml');
  fs.writeFileSync(file, `name = "c"\nstages = ["${TINY[0]}", "."]\n`);
  assert.throws(
    () => loadCurriculum(file),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.some((p) => p.file === file && p.field === 'stages[1]' && /is a directory/.test(p.message)),
  );
});

// ---- (b) the dataset reader ---------------------------------------------------------------

function synthDataset(samples: number): { dir: string; jsonl: string; open: () => ReturnType<typeof openDataSource> } {
  const dir = tmpDir('fuzz-data');
  const cfg = path.join(ROOT, 'configs/train/tiny/9s.toml');
  const mem = loadStageConfig(cfg, {});
  writeSynthDataset(dir, mem.config, modelDims(mem.config), samples);
  const st = loadStageConfig(cfg, { 'training.dataset_path': dir, 'training.jsonl_paths': ['9sec.jsonl'] });
  return { dir, jsonl: path.join(dir, '9sec.jsonl'), open: () => openDataSource(st.config, modelDims(st.config)) };
}

test('fuzz: mutated JSONL lines give errors naming the JSONL file and line', () => {
  const ds = synthDataset(3);
  const original = fs.readFileSync(ds.jsonl, 'utf8');
  const lines = original.trim().split('\n');
  const lineMutation = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    fc
      .record({
        vid_emb: fc.oneof(
          fc.string({ maxLength: 20 }),
          fc.constantFrom(
            'latents/9sec-0.npy',
            'text/9sec-0-0.safetensors',
            'latents',
            '/',
            '../x.npy',
            'a\u0000b.npy',
            'x.pt',
          ),
          fc.jsonValue({ maxDepth: 1 }),
        ),
        text_chunk_emb: fc.oneof(
          fc.array(
            fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('text/9sec-0-0.safetensors', 'latents/9sec-1.npy')),
            { maxLength: 4 },
          ),
          fc.jsonValue({ maxDepth: 1 }),
        ),
      })
      .map((o) => JSON.stringify(o)),
    fc.tuple(fc.nat(), fc.nat({ max: 30 })).map(
      ([a, n]) =>
        (l: string) =>
          l.slice(0, a % (l.length + 1)) + l.slice((a % (l.length + 1)) + n),
    ),
    fc.tuple(fc.nat(), fc.integer({ min: 0, max: 6 })).map(([a, bit]) => (l: string) => {
      const i = a % l.length;
      return l.slice(0, i) + String.fromCharCode(l.charCodeAt(i) ^ (1 << bit)) + l.slice(i + 1);
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: lines.length - 1 }), lineMutation, (i, m) => {
      const next = [...lines];
      next[i] = typeof m === 'function' ? m(lines[i]!) : m;
      fs.writeFileSync(ds.jsonl, `${next.join('\n')}\n`);
      const mentions = [`${ds.jsonl}:${i + 1}`, 'training.jsonl_paths'];
      clearOrOk(() => {
        const src = ds.open();
        for (let n = 0; n < src.size; n++) src.sample(n);
      }, mentions);
    }),
    { seed: 6005, numRuns: runs(300) },
  );
  fs.writeFileSync(ds.jsonl, original);
});

test('fuzz: truncated and bit-flipped .npy files give errors naming the file (and, through the dataset, the JSONL line)', () => {
  const ds = synthDataset(2);
  const npy = path.join(ds.dir, 'latents', '9sec-1.npy');
  const original = fs.readFileSync(npy);
  const corruption = fc.oneof(
    fc.nat().map((n) => (b: Buffer) => b.subarray(0, n % (b.length + 1))),
    fc
      .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 4 })
      .map((flips) => (b: Buffer) => {
        const c = Buffer.from(b);
        for (const [at, bit] of flips) c[at % c.length]! ^= 1 << bit;
        return c;
      }),
    // Flips inside the 10-byte preamble and the header only, then maybe a cut: the paths a reader gets wrong.
    fc
      .tuple(
        fc.integer({ min: 6, max: 127 }),
        fc.integer({ min: 0, max: 7 }),
        fc.option(fc.integer({ min: 0, max: 140 })),
      )
      .map(([at, bit, cut]) => (b: Buffer) => {
        const c = Buffer.from(b);
        c[at]! ^= 1 << bit;
        return cut === null ? c : c.subarray(0, cut);
      }),
  );
  fc.assert(
    fc.property(corruption, (corrupt) => {
      fs.writeFileSync(npy, corrupt(original));
      clearOrOk(() => readNpy(npy), [npy]);
      clearOrOk(() => ds.open().sample(1), [`${ds.jsonl}:2`]);
    }),
    { seed: 6006, numRuns: runs(400) },
  );
  fs.writeFileSync(npy, original);
});

test('regression: a .npy file cut inside its version-2 preamble is a clear error, not a RangeError', () => {
  const dir = tmpDir('npy-v2');
  const f = path.join(dir, 'a.npy');
  fs.writeFileSync(f, Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0, 0x10, 0]));
  assert.throws(
    () => readNpy(f),
    (e: unknown) => e instanceof UserError && e.message.includes(f) && /truncated|header/.test(e.message),
  );
});

test('regression: a .npy header whose shape is not a list of sizes is a clear error', () => {
  const dir = tmpDir('npy-shape');
  const f = path.join(dir, 'a.npy');
  for (const shape of ['(-2, -2)', '(2, x)', '(2.5, 2)']) {
    let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
    header += `${' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64)}\n`;
    const head = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
    head.writeUInt16LE(header.length, 8);
    fs.writeFileSync(f, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.alloc(16)]));
    assert.throws(
      () => readNpy(f),
      (e: unknown) => e instanceof UserError && e.message.includes(f) && /unreadable shape/.test(e.message),
      shape,
    );
  }
});

// ---- (c) job names ------------------------------------------------------------------------

test('fuzz: job names: whatever is accepted is a safe folder name and round-trips; the rest is refused clearly', () => {
  const dump = tmpDir('fuzz-jobs');
  const risky = fc.string({
    unit: fc.constantFrom(
      'a',
      'Z',
      '0',
      '.',
      '-',
      '_',
      '/',
      '\\',
      '\u0000',
      '\n',
      '\r',
      '\t',
      '\u007f',
      ' ',
      '~',
      '%',
      ':',
      '\u202e',
      'é',
      '\ud83d\ude00',
    ),
    maxLength: 110,
  });
  const names = fc.oneof(
    risky,
    fc.string({ maxLength: 120, unit: 'binary' }),
    fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,105}$/),
    fc.constantFrom('..', '.', 'a/..', 'a..b', '../x', 'a/b', 'x'.repeat(100), 'x'.repeat(101), '', 'CON', 'a.'),
  );
  fc.assert(
    fc.property(names, (name) => {
      let ok: string;
      try {
        ok = validateJobName(name);
      } catch (e) {
        assert.ok(
          e instanceof UserError &&
            e.kind === 'InvalidJobName' &&
            e.message.includes('jobName') &&
            e.message.includes(JSON.stringify(name)),
          `unclear: ${(e as Error).message}`,
        );
        return;
      }
      assert.equal(ok, name);
      assert.ok(name.length >= 1 && name.length <= 100, `length ${name.length}`);
      assert.ok(!/[/\\]/.test(name), 'path separator');
      assert.ok(!name.includes('..'), '..');
      assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(name), 'control character');
      const d = jobDir(dump, name);
      assert.equal(path.dirname(d), path.resolve(dump), 'stays directly under dump_folder');
      assert.equal(path.basename(d), name, 'round-trips through the folder name');
    }),
    { seed: 6007, numRuns: runs(2000) },
  );
  // The allowed alphabet, starting with a letter or digit, at most 100 characters, without "..": accepted.
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/), (name) => {
      fc.pre(!name.includes('..'));
      assert.equal(validateJobName(name), name);
    }),
    { seed: 6008, numRuns: runs(500) },
  );
});

// ---- (d) paths from job inputs, the allowed roots, worker-only fields, connection settings --

/** A root (jail) and a folder beside it, with links across, a loop, a relative link and Unicode names. */
function pathTree(): { top: string; jail: string; outside: string } {
  const top = fs.realpathSync(tmpDir('fuzz-paths'));
  const jail = path.join(top, 'jail');
  const outside = path.join(top, 'outside');
  fs.mkdirSync(path.join(jail, 'a', 'b'), { recursive: true });
  fs.mkdirSync(path.join(jail, 'caf\u00e9'));
  fs.mkdirSync(path.join(outside, 'c'), { recursive: true });
  fs.writeFileSync(path.join(jail, 'a', 'file'), 'x');
  fs.symlinkSync(outside, path.join(jail, 'out'));
  fs.symlinkSync(path.join(jail, 'a'), path.join(jail, 'in'));
  fs.symlinkSync(path.join(outside, 'none'), path.join(jail, 'dangling'));
  fs.symlinkSync(path.join(jail, 'a'), path.join(outside, 'back'));
  fs.symlinkSync('../outside', path.join(jail, 'rel'));
  fs.symlinkSync(path.join(jail, 'loop2'), path.join(jail, 'loop1'));
  fs.symlinkSync(path.join(jail, 'loop1'), path.join(jail, 'loop2'));
  return { top, jail, outside };
}

const pathComponent = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom('..', '.', '', 'a', 'b', 'c', 'file', 'out', 'in', 'dangling', 'back', 'rel'),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'loop1',
      'jail',
      'outside',
      'caf\u00e9',
      'cafe\u0301',
      'CAF\u00c9',
      '\uff43af\u00e9',
      '\u0000',
      'a\u0000',
      'x'.repeat(256),
      '\u202e',
      '\ud83d\ude00',
      '~',
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 4, unit: 'binary' }) },
);

function pathString(starts: string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...starts), fc.array(pathComponent, { maxLength: 8 }), fc.nat({ max: 9 }))
    .map(([start, parts, long]) => {
      const p = [start, ...parts].join('/');
      return long === 9 ? `${p}/${'d/'.repeat(2100)}` : p; // past PATH_MAX
    });
}

/** The property of an accepted path: inside the root, free of links, and what the kernel resolves the input to. */
function checkAccepted(jail: string, input: string, real: string): void {
  assert.ok(path.isAbsolute(real) && path.normalize(real) === real, `not a normal absolute path: ${real}`);
  assert.ok(isWithin(jail, real), `${JSON.stringify(input)} accepted as ${real}, outside ${jail}`);
  for (let e = real; ; e = path.dirname(e)) {
    if (fs.existsSync(e)) {
      assert.equal(fs.realpathSync(e), e, `${e} (an existing part of ${real}) is not its own real path`);
      break;
    }
    assert.ok(!isSymlink(e), `${e} is a link in the accepted path ${real}`);
  }
  const target = path.resolve(jail, input);
  if (fs.existsSync(target)) assert.equal(fs.realpathSync(target), real, 'the kernel resolves it elsewhere');
}

function isSymlink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

test('fuzz: path strings (.., symbolic links, NUL, very long, Unicode normalisation) land inside a root or fail with a ConfigError naming the field', () => {
  const { top, jail, outside } = pathTree();
  const allowed = allowedRoots({ allowPaths: [jail], env: {} });
  const src = { file: 'input.set', field: 'job.dump_folder' };
  const outcomes = { accepted: 0 };
  fc.assert(
    fc.property(pathString([jail, top, outside, '', '.', '/', '/etc', 'a']), fc.boolean(), (p, write) => {
      try {
        checkAccepted(jail, p, confinePath(allowed, p, write ? 'write' : 'read', src, jail));
        outcomes.accepted++;
      } catch (e) {
        if (!(e instanceof ConfigError))
          throw new Error(`not a clear error for ${JSON.stringify(p)}: ${(e as Error)?.stack}`);
        assert.equal(e.problems.length, 1);
        const pr = e.problems[0]!;
        assert.deepEqual([pr.file, pr.field, pr.value], ['input.set', 'job.dump_folder', p]);
        assert.match(
          pr.message,
          /^(resolves to \/.*, (outside the folders|inside .*, which job inputs may only read)|the path (is not a non-empty string|contains a NUL character|cannot be resolved \(\w+.*\)))/,
        );
        if (pr.message.startsWith('resolves to')) assert.match(pr.fix, /--allow-path <folder>.*TTT_ALLOW_PATHS/);
      }
    }),
    { seed: 6009, numRuns: runs(1500) },
  );
  // The generator reaches both sides of the boundary, not only one of them.
  assert.ok(outcomes.accepted > runs(1500) / 20, `only ${outcomes.accepted} of ${runs(1500)} paths accepted`);
  // Spelled out once: each escape is refused, each way back in is accepted.
  for (const p of ['out/c', 'rel/c', 'dangling', 'dangling/x', 'a/../../outside', 'in/../../outside', 'loop1'])
    assert.throws(() => confinePath(allowed, p, 'read', src, jail), ConfigError, p);
  for (const p of ['in/b', `${outside}/back/b`, 'out/back/b', 'caf\u00e9/new'])
    checkAccepted(jail, p, confinePath(allowed, p, 'write', src, jail));
});

test('fuzz: allowed roots from --allow-path and TTT_ALLOW_PATHS: existing folders, or a clear error naming the flag or the variable', () => {
  const { top, jail, outside } = pathTree();
  const dirs = pathString([jail, top, outside, '', '/', 'a']);
  fc.assert(
    fc.property(
      fc.option(fc.array(dirs, { maxLength: 3 })),
      fc.option(fc.array(dirs, { maxLength: 3 })),
      (flags, env) => {
        try {
          const r = allowedRoots({
            ...(flags ? { allowPaths: flags } : {}),
            env: env ? { [ALLOW_PATHS_ENV]: env.join(path.delimiter) } : {},
            cwd: jail,
          });
          for (const root of r.roots) {
            assert.ok(fs.statSync(root.dir).isDirectory() && fs.realpathSync(root.dir) === root.dir, root.dir);
          }
          assert.deepEqual(r.roots.at(-1), { dir: fs.realpathSync(path.join(ROOT, 'configs')), writable: false });
        } catch (e) {
          assert.ok(e instanceof UserError && /^(--allow-path|TTT_ALLOW_PATHS): /.test(e.message), String(e));
          assert.ok(e.fix && /--allow-path|TTT_ALLOW_PATHS/.test(e.fix));
        }
      },
    ),
    { seed: 6010, numRuns: runs(500) },
  );
});

test('fuzz: job inputs with random paths and worker-only fields plan inside the roots or fail with a clear error', () => {
  const { top, jail, outside } = pathTree();
  const allowed = allowedRoots({ allowPaths: [jail], env: {} });
  const curriculum = path.join(ROOT, 'configs', 'curriculum', 'tiny.toml');
  // Half of the paths are ways into the root (directly, through a link), so that some inputs are planned.
  const p = fc.oneof(
    fc.constantFrom(path.join(jail, 'runs'), path.join(jail, 'in', 'runs'), path.join(outside, 'back', 'runs')),
    pathString([jail, top, outside, '', 'runs']),
  );
  /** Mostly absent: each field present in about one case of `1 + absent`. */
  const sometimes = <T>(a: fc.Arbitrary<T>, absent = 1): fc.Arbitrary<T | undefined> =>
    fc.oneof({ weight: absent, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });
  const set = fc
    .record({
      'job.dump_folder': p,
      'training.dataset_path': sometimes(fc.oneof(fc.constant('synthetic'), p)),
      'training.jsonl_paths': sometimes(fc.array(p, { maxLength: 2 }).map((a) => JSON.stringify(a))),
      'checkpoint.init_state_dir': sometimes(fc.oneof(fc.constant(''), p)),
      [WORKER_ONLY_FIELDS[0]!.field]: sometimes(fc.string({ maxLength: 8 }), 5),
      'launcher.setup.x': sometimes(fc.string({ maxLength: 4 }), 5),
    })
    .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));
  fs.writeFileSync(path.join(outside, 'c.toml'), fs.readFileSync(curriculum, 'utf8'));
  const curricula = fc.constantFrom(
    curriculum,
    'configs/curriculum/tiny.toml',
    curriculum,
    path.join(outside, 'c.toml'),
    path.join(jail, 'out', 'c.toml'),
    path.join(jail, 'rel', 'c.toml'),
  );
  /** The kernel's path of a folder that may not exist yet: the real path of its deepest existing ancestor, plus the rest. */
  const kernelPath = (p: string): string => {
    let e = p;
    while (!fs.existsSync(e)) e = path.dirname(e);
    return path.join(fs.realpathSync(e), path.relative(e, p));
  };
  let planned = 0;
  fc.assert(
    fc.property(set, curricula, (s, cur) => {
      clearOrOk(() => {
        const plan = planCurriculum({ jobName: 'fuzz', curriculum: cur, set: s }, allowed);
        planned++;
        assert.ok(isWithin(jail, kernelPath(plan.jobDir)), `planned ${plan.jobDir}, outside ${jail}`);
      }, ['input.set', 'input', ...TINY]);
    }),
    { seed: 6011, numRuns: runs(150) },
  );
  assert.ok(planned > 0, 'no input was planned: the generator misses the accepted side');
});

test('fuzz: connection settings from random TEMPORAL_* values and profile files: settings, or a clear error; the summary never holds the key', () => {
  const dir = tmpDir('fuzz-envconfig');
  const pem = path.join(dir, 'x.pem');
  fs.writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const profile = path.join(dir, 'temporal.toml');
  const KEY = 'fuzz-api-key-0123456789';
  const value = fc.oneof(
    fc.constantFrom('', 'true', 'false', '1', '0', pem, path.join(dir, 'none.pem'), dir, 'localhost:7233', 'x'),
    fc.string({ maxLength: 12 }),
  );
  const names = [
    'TEMPORAL_ADDRESS',
    'TEMPORAL_NAMESPACE',
    'TEMPORAL_PROFILE',
    'TEMPORAL_TLS',
    'TEMPORAL_TLS_CLIENT_CERT_PATH',
    'TEMPORAL_TLS_CLIENT_CERT_DATA',
    'TEMPORAL_TLS_CLIENT_KEY_PATH',
    'TEMPORAL_TLS_CLIENT_KEY_DATA',
    'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
    'TEMPORAL_TLS_SERVER_CA_CERT_DATA',
    'TEMPORAL_TLS_SERVER_NAME',
    'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
    'TEMPORAL_GRPC_META_X_TOKEN',
  ];
  const profileText = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc
      .record(
        {
          address: value,
          namespace: value,
          api_key: fc.constant(KEY),
          tls: fc.dictionary(
            fc.constantFrom(
              'disabled',
              'server_name',
              'client_cert_path',
              'client_key_data',
              'server_ca_cert_path',
              'bogus',
            ),
            value,
            { maxKeys: 3 },
          ),
        },
        { requiredKeys: [] },
      )
      .map((p) => {
        try {
          return stringifyToml({ profile: { default: p, other: p } });
        } catch {
          return '';
        }
      }),
  );
  fc.assert(
    // The key is only ever an API key (in the environment or the profile): anything else may be shown.
    fc.property(
      fc.dictionary(fc.constantFrom(...names), value, { maxKeys: 5 }),
      fc.boolean(),
      profileText,
      (vars, key, text) => {
        const env = key ? { ...vars, TEMPORAL_API_KEY: KEY } : vars;
        fs.writeFileSync(profile, text);
        try {
          const s = connectionSettings({}, { ...env, TEMPORAL_CONFIG_FILE: profile });
          const shown = JSON.stringify(s.summary) + describeConnection(s.summary);
          assert.ok(!shown.includes(KEY), `the summary shows the key: ${shown}`);
          assert.equal(s.summary.apiKey, s.connectOptions.apiKey !== undefined);
        } catch (e) {
          assert.ok(
            e instanceof UserError && e.kind === 'ConnectionError',
            `not a clear error: ${(e as Error)?.stack}`,
          );
          assert.ok(e.fix && /TEMPORAL_|profile/.test(e.fix), e.message);
          assert.ok(!e.message.includes(KEY), `the error shows the key: ${e.message}`);
        }
      },
    ),
    { seed: 6012, numRuns: runs(500) },
  );
});
