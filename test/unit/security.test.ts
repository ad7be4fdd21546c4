/**
 * Secure by default, without a server: the roots that job inputs may reach (symbolic links and
 * `..` followed, configs/ read-only, errors naming the path and --allow-path), the config fields a
 * workflow input may never set, and the connection settings read as Temporal's own tools read them
 * (profile file, TEMPORAL_* variables, flags winning), whose summary never holds a secret.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ALLOW_PATHS_ENV, allowedRoots, confinePath } from '../../src/allowed-paths';
import { workerOnlyProblems } from '../../src/config/worker-only';
import { ConfigError, UserError } from '../../src/errors';
import { checkShardInput, planCurriculum } from '../../src/job';
import { connectionSettings, describeConnection, temporalTarget } from '../../src/temporal/connection';
import { ROOT, TINY, tmpDir } from '../helpers';

const CONFIGS = fs.realpathSync(path.join(ROOT, 'configs'));
const TINY_3S = path.join(ROOT, 'configs', 'train', 'tiny', '3s.toml');

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${(e as Error)?.stack ?? String(e)}`);
    return e;
  }
  assert.fail('expected a ConfigError');
}

function userError(fn: () => unknown): UserError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof UserError, `expected a UserError, got ${(e as Error)?.stack ?? String(e)}`);
    return e;
  }
  assert.fail('expected a UserError');
}

/** A root folder with a jail inside it and an outside folder beside it, plus links across. */
function tree(): { top: string; jail: string; outside: string } {
  const top = fs.realpathSync(tmpDir('allowed'));
  const jail = path.join(top, 'jail');
  const outside = path.join(top, 'outside');
  fs.mkdirSync(path.join(jail, 'runs'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret.toml'), 'not = [valid toml\napi_key = "s3cr3t"\n');
  fs.symlinkSync(outside, path.join(jail, 'to-outside'));
  fs.symlinkSync(path.join(jail, 'runs'), path.join(outside, 'to-jail'));
  fs.symlinkSync(path.join(outside, 'not-yet'), path.join(jail, 'dangling'));
  return { top, jail, outside };
}

test('default roots: the working directory read-write and configs/ read-only; --allow-path replaces the first, then TTT_ALLOW_PATHS', () => {
  const { jail, outside } = tree();
  const def = allowedRoots({ cwd: jail, env: {} });
  assert.deepEqual(def.roots, [
    { dir: jail, writable: true },
    { dir: CONFIGS, writable: false },
  ]);
  const flags = allowedRoots({ allowPaths: [outside, jail], cwd: ROOT, env: { [ALLOW_PATHS_ENV]: ROOT } });
  assert.deepEqual(
    flags.roots.map((r) => r.dir),
    [outside, jail, CONFIGS],
    'flags win over the environment',
  );
  const env = allowedRoots({ cwd: ROOT, env: { [ALLOW_PATHS_ENV]: `${outside}${path.delimiter}${jail}` } });
  assert.deepEqual(
    env.roots.map((r) => r.dir),
    [outside, jail, CONFIGS],
  );
  const missing = userError(() => allowedRoots({ allowPaths: [path.join(outside, 'nope')], env: {} }));
  assert.match(missing.message, /^--allow-path: ".*nope" is not an existing folder/);
});

test('paths are resolved with .. and symbolic links followed; outside a root is a ConfigError naming the field, the path and --allow-path', () => {
  const { jail, outside } = tree();
  const allowed = allowedRoots({ allowPaths: [jail], env: {} });
  const src = { file: 'input.set', field: 'job.dump_folder' };
  assert.equal(
    confinePath(allowed, path.join(jail, 'runs', 'new', 'deeper'), 'write', src),
    path.join(jail, 'runs/new/deeper'),
  );
  assert.equal(confinePath(allowed, 'runs', 'write', src, jail), path.join(jail, 'runs'), 'relative to the base');
  assert.equal(
    confinePath(allowed, path.join(outside, 'to-jail', 'x'), 'write', src),
    path.join(jail, 'runs', 'x'),
    'a link from outside into a root is inside',
  );
  for (const [p, real] of [
    [path.join(jail, '..', 'outside', 'runs'), path.join(outside, 'runs')],
    [path.join(jail, 'runs', '..', '..', 'outside'), outside],
    [path.join(jail, 'to-outside', 'runs'), path.join(outside, 'runs')],
    [path.join(jail, 'dangling'), path.join(outside, 'not-yet')],
    [path.join(jail, 'dangling', 'a', 'b'), path.join(outside, 'not-yet', 'a', 'b')],
    ['/etc', '/etc'],
  ] as const) {
    const e = configError(() => confinePath(allowed, p, 'write', src));
    assert.equal(e.problems.length, 1);
    const pr = e.problems[0]!;
    assert.equal(pr.file, 'input.set');
    assert.equal(pr.field, 'job.dump_folder');
    assert.equal(pr.value, p);
    assert.ok(
      pr.message.startsWith(`resolves to ${real}, outside the folders this worker lets job inputs write`),
      pr.message,
    );
    assert.match(pr.fix, /--allow-path <folder> \(repeatable\) or TTT_ALLOW_PATHS=/);
    assert.match(e.message, /^input\.set: job\.dump_folder = ".*": resolves to .*\. Fix: /);
  }
  for (const [p, why] of [
    ['', 'is not a non-empty string'],
    [`${jail}/a\0b`, 'contains a NUL character'],
    [`${jail}/${'x'.repeat(300)}`, 'cannot be resolved (ENAMETOOLONG)'],
    [`${jail}/${'abc/'.repeat(1200)}`, /^cannot be resolved \(ENAMETOOLONG: 48\d\d bytes, the limit is 4095\)$/],
  ] as const) {
    const e = configError(() => confinePath(allowed, p, 'read', src));
    if (typeof why === 'string') assert.equal(e.problems[0]!.message, `the path ${why}`);
    else assert.match(e.problems[0]!.message.replace(/^the path /, ''), why);
  }
  // A loop of links.
  fs.symlinkSync(path.join(jail, 'loop-b'), path.join(jail, 'loop-a'));
  fs.symlinkSync(path.join(jail, 'loop-a'), path.join(jail, 'loop-b'));
  assert.match(
    configError(() => confinePath(allowed, path.join(jail, 'loop-a'), 'read', src)).problems[0]!.message,
    /ELOOP|too many levels/,
  );
});

test('configs/ is read-only for job inputs, even inside a read-write root; the most specific root decides', () => {
  const allowed = allowedRoots({ allowPaths: [ROOT], env: {} });
  const src = { file: 'input.set', field: 'job.dump_folder' };
  assert.equal(confinePath(allowed, TINY, 'read', src), fs.realpathSync(TINY));
  const e = configError(() => confinePath(allowed, path.join(ROOT, 'configs', 'runs'), 'write', src));
  assert.match(e.problems[0]!.message, new RegExp(`inside ${CONFIGS}, which job inputs may only read`));
  assert.equal(confinePath(allowed, path.join(ROOT, 'runs'), 'write', src), path.join(fs.realpathSync(ROOT), 'runs'));
});

test('Unicode names are compared byte for byte: a root in NFC does not admit its NFD spelling', () => {
  const top = fs.realpathSync(tmpDir('unicode'));
  const nfc = path.join(top, 'caf\u00e9');
  fs.mkdirSync(nfc);
  const allowed = allowedRoots({ allowPaths: [nfc], env: {} });
  const src = { file: 'input.set', field: 'job.dump_folder' };
  assert.equal(confinePath(allowed, path.join(nfc, 'runs'), 'write', src), path.join(nfc, 'runs'));
  const nfd = path.join(top, 'cafe\u0301', 'runs');
  assert.match(
    configError(() => confinePath(allowed, nfd, 'write', src)).problems[0]!.message,
    /^resolves to .*, outside/,
  );
});

test('planning confines every path of the input, checks the curriculum before reading it, and is confined by default', () => {
  const { jail, outside } = tree();
  const allowed = allowedRoots({ allowPaths: [jail], env: {} });
  const input = (set: Record<string, unknown>, curriculum = TINY) => ({ jobName: 'j', curriculum, set });
  const ok = planCurriculum(input({ 'job.dump_folder': path.join(jail, 'runs') }), allowed);
  assert.equal(ok.jobDir, path.join(jail, 'runs', 'j'));

  // Every path field, from the input's set, in one error.
  const e = configError(() =>
    planCurriculum(
      input({
        'job.dump_folder': path.join(jail, 'to-outside', 'runs'),
        'training.dataset_path': outside,
        'training.jsonl_paths': '["../../../etc/passwd"]',
        'checkpoint.init_state_dir': path.join(jail, 'dangling'),
      }),
      allowed,
    ),
  );
  const fields = [...new Set(e.problems.map((p) => `${p.file} ${p.field}`))].sort();
  assert.deepEqual(fields, [
    'input.set checkpoint.init_state_dir',
    'input.set job.dump_folder',
    'input.set training.dataset_path',
    'input.set training.jsonl_paths',
  ]);
  assert.ok(e.problems.every((p) => /outside the folders this worker lets job inputs (read|write)/.test(p.message)));

  // The curriculum is refused before it is read: the error shows nothing of the file.
  const cur = configError(() => planCurriculum(input({}, path.join(outside, 'secret.toml')), allowed));
  assert.equal(cur.problems[0]!.file, 'input');
  assert.equal(cur.problems[0]!.field, 'curriculum');
  assert.doesNotMatch(cur.message, /s3cr3t|valid toml|line \d/);

  // A stage file of a curriculum that points outside.
  fs.writeFileSync(path.join(jail, 'cur.toml'), `name = "x"\nstages = ["../outside/secret.toml"]\n`);
  const stage = configError(() => planCurriculum(input({}, path.join(jail, 'cur.toml')), allowed));
  assert.equal(stage.problems[0]!.field, 'stages[0]');
  assert.doesNotMatch(stage.message, /s3cr3t/);

  // Default roots: the working directory (the repository here) and configs/; a tmp folder is outside.
  const def = configError(() => planCurriculum(input({ 'job.dump_folder': path.join(jail, 'runs') })));
  assert.match(def.problems[0]!.message, /outside the folders this worker lets job inputs write/);
});

test('a workflow input can never set a program, an argv, a shell line or sbatch options: a ConfigError pointing to the worker side', () => {
  const allowed = allowedRoots({ env: {} });
  for (const [field, points] of [
    ['engine.command', /engine preset by name \("engine\.preset"\).*configs\/engine\//],
    ['engine.command.0', /engine preset/],
    ['launcher.setup', /stage config files on the worker's side/],
    ['launcher.sbatch_args', /sbatch options in the stage config files on the worker's side/],
  ] as const) {
    const e = configError(() =>
      planCurriculum({ jobName: 'j', curriculum: TINY, set: { [field]: '["sh", "-c", "id"]' } }, allowed),
    );
    assert.equal(e.problems.length, 1);
    const p = e.problems[0]!;
    assert.equal(p.file, 'input.set');
    assert.equal(p.field, field);
    assert.match(p.message, /a workflow input may never set/);
    assert.match(p.fix, points);
    // The activity checks it again.
    const again = configError(() =>
      checkShardInput(allowed, {
        jobDir: path.join(ROOT, 'runs', 'j'),
        initFrom: null,
        configFile: TINY_3S,
        set: { [field]: 'x' },
      }),
    );
    assert.equal(again.problems[0]!.field, field);
  }
  // The mechanism takes any list: an existing field, refused for the test's sake; a table above a listed field too.
  const custom = [{ field: 'runtime.backend', holds: 'a backend', fix: 'ask the worker' }];
  assert.deepEqual(
    workerOnlyProblems({ 'runtime.backend': 'wasm', 'training.steps': 3 }, 'input.set', custom).map((p) => p.field),
    ['runtime.backend'],
  );
  assert.deepEqual(
    workerOnlyProblems({ 'a.b': { c: 1 } }, 'input.set', [{ field: 'a.b.c', holds: '', fix: '' }]).map((p) => p.field),
    ['a.b'],
  );
});

test('connection settings: profile file, TEMPORAL_* over it, --address/--namespace over both; the summary holds no secret', () => {
  const dir = tmpDir('envconfig');
  const file = path.join(dir, 'temporal.toml');
  fs.writeFileSync(
    file,
    [
      '[profile.default]',
      'address = "default.example:7233"',
      '[profile.prod]',
      'address = "prod.example:7233"',
      'namespace = "prod-ns"',
      'api_key = "profile-key-123"',
      '[profile.prod.tls]',
      'server_name = "prod.internal"',
      '',
    ].join('\n'),
  );
  const none = connectionSettings({}, { TEMPORAL_CONFIG_FILE: path.join(dir, 'none.toml') });
  assert.deepEqual(
    [none.address, none.namespace, none.external, none.summary.tls, none.summary.apiKey],
    ['localhost:7233', 'default', false, false, false],
  );
  const def = temporalTarget({}, { TEMPORAL_CONFIG_FILE: file });
  assert.deepEqual([def.address, def.external], ['default.example:7233', true]);
  const prod = connectionSettings({}, { TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' });
  assert.deepEqual(prod.summary, {
    address: 'prod.example:7233',
    namespace: 'prod-ns',
    profile: 'prod',
    tls: true,
    serverName: 'prod.internal',
    serverCa: false,
    clientCert: false,
    apiKey: true,
  });
  assert.equal(prod.connectOptions.apiKey, 'profile-key-123');
  const env = connectionSettings(
    {},
    {
      TEMPORAL_CONFIG_FILE: file,
      TEMPORAL_PROFILE: 'prod',
      TEMPORAL_ADDRESS: 'env:1',
      TEMPORAL_API_KEY: 'env-key-456',
    },
  );
  assert.deepEqual([env.address, env.namespace, env.connectOptions.apiKey], ['env:1', 'prod-ns', 'env-key-456']);
  const flags = connectionSettings(
    { address: 'flag:2', namespace: 'flag-ns' },
    { TEMPORAL_CONFIG_FILE: file, TEMPORAL_ADDRESS: 'env:1', TEMPORAL_NAMESPACE: 'env-ns' },
  );
  assert.deepEqual([flags.address, flags.namespace], ['flag:2', 'flag-ns']);
  for (const s of [prod, env]) {
    const shown = JSON.stringify(s.summary) + describeConnection(s.summary);
    assert.doesNotMatch(shown, /profile-key-123|env-key-456/);
  }
  assert.equal(
    describeConnection(prod.summary),
    'prod.example:7233 (namespace prod-ns, TLS to prod.internal, API key, profile prod)',
  );
});

test('connection settings that cannot work fail at once with the setting to fix, and never echo a secret', () => {
  const dir = tmpDir('envconfig-bad');
  const cert = path.join(dir, 'client.pem');
  fs.writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const env = { TEMPORAL_CONFIG_FILE: path.join(dir, 'none.toml') };
  const hostVerification = userError(() =>
    connectionSettings({}, { ...env, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' }),
  );
  assert.match(
    hostVerification.message,
    /not supported by the TypeScript SDK\. Fix: unset it, and set TEMPORAL_TLS_SERVER_NAME/,
  );
  const half = userError(() => connectionSettings({}, { ...env, TEMPORAL_TLS_CLIENT_CERT_PATH: cert }));
  assert.match(
    half.message,
    /a client certificate without its key\. Fix: set both of TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/,
  );
  const missing = userError(() =>
    connectionSettings({}, { ...env, TEMPORAL_TLS_SERVER_CA_CERT_PATH: path.join(dir, 'nope.pem') }),
  );
  assert.match(missing.message, /cannot read a TLS file: ENOENT.*nope\.pem.*Fix: check the paths/);
  // A profile file that does not parse: the message must not quote the line holding the key.
  const broken = path.join(dir, 'broken.toml');
  fs.writeFileSync(broken, '[profile.default]\napi_key = "very-secret-key" oops\n');
  const bad = userError(() => connectionSettings({}, { TEMPORAL_CONFIG_FILE: broken }));
  assert.match(bad.message, /cannot load the Temporal connection profile/);
  assert.doesNotMatch(bad.message, /very-secret-key/);
  const unknown = userError(() => connectionSettings({}, { ...env, TEMPORAL_PROFILE: 'nope' }));
  assert.match(unknown.message, /Profile 'nope' not found.*Fix: correct TEMPORAL_CONFIG_FILE \/ TEMPORAL_PROFILE/);
});
