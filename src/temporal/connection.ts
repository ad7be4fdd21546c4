/**
 * Where Temporal is and how to reach it, read the way Temporal's own tools read it
 * (@temporalio/envconfig): the profile file (TEMPORAL_CONFIG_FILE, else
 * ~/.config/temporalio/temporal.toml; profile TEMPORAL_PROFILE, else "default"), overridden by
 * TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH
 * / _DATA, TEMPORAL_TLS_CLIENT_KEY_PATH / _DATA, TEMPORAL_TLS_SERVER_CA_CERT_PATH / _DATA,
 * TEMPORAL_TLS_SERVER_NAME and TEMPORAL_GRPC_META_*; explicit --address / --namespace win over all.
 * Worker, commands, demo and the library client all connect through `openConnection`.
 *
 * The settings hold secrets (API key, private key): only `summary` (booleans and names) is ever
 * logged or printed.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { TLSConfig } from '@temporalio/client';
import { type ClientConfigProfile, loadClientConfigProfile, toClientOptions } from '@temporalio/envconfig';
import { UserError } from '../errors';

/** The task queue that workers poll and jobs are started on, unless TTT_TASK_QUEUE or a flag names another. */
export const DEFAULT_TASK_QUEUE = 'ttt-curriculum';
export const DEFAULT_ADDRESS = 'localhost:7233';

export interface TemporalTarget {
  address: string;
  namespace: string;
  taskQueue: string;
  /** True when the user pointed us at a server (flag, TEMPORAL_ADDRESS or the profile): start nothing. */
  external: boolean;
}

/** How a connection is made, without its secrets: what the worker's start line and `status --json` show. */
export interface ConnectionSummary {
  address: string;
  namespace: string;
  /** The profile asked for by TEMPORAL_PROFILE, or null for the default one. */
  profile: string | null;
  tls: boolean;
  /** The name checked against the server's certificate when it is not the address's host. */
  serverName: string | null;
  /** A server CA of our own (else the system's roots). */
  serverCa: boolean;
  clientCert: boolean;
  apiKey: boolean;
}

/** What Connection.connect and NativeConnection.connect take. Holds secrets: never log it. */
export interface ConnectOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
  metadata?: Record<string, string>;
}

export interface ConnectionSettings extends TemporalTarget {
  connectOptions: ConnectOptions;
  summary: ConnectionSummary;
}

/** The settings a user fixes, as named in errors: the environment variable, then the profile key. */
export const SETTING = {
  address: 'TEMPORAL_ADDRESS (profile: address) or --address',
  tls: 'TEMPORAL_TLS (profile: tls.disabled)',
  serverName: 'TEMPORAL_TLS_SERVER_NAME (profile: tls.server_name)',
  serverCa: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH (profile: tls.server_ca_cert_path)',
  clientCert:
    'TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH (profile: tls.client_cert_path, tls.client_key_path)',
  apiKey: 'TEMPORAL_API_KEY (profile: api_key)',
  profile: 'TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE (the profile file)',
} as const;

type Env = Record<string, string | undefined>;

const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/** The profile with the environment applied; file syntax errors are reported without the file's text (it may hold a key). */
function loadProfile(env: Env): ClientConfigProfile {
  try {
    return loadClientConfigProfile({ overrideEnvVars: env as Record<string, string> });
  } catch (e) {
    const first = String((e as Error).message ?? e).split('\n')[0];
    throw new UserError(`cannot load the Temporal connection profile: ${first}`, {
      where: env.TEMPORAL_CONFIG_FILE ?? 'the Temporal profile file',
      kind: 'ConnectionError',
      fix: `correct ${SETTING.profile}`,
    });
  }
}

/** Address, namespace, task queue; reads the profile file but no certificate. */
export function temporalTarget(overrides: Partial<TemporalTarget> = {}, env: Env = process.env): TemporalTarget {
  const profile = loadProfile(env);
  const address = nonEmpty(overrides.address) ?? nonEmpty(profile.address);
  return {
    address: address ?? DEFAULT_ADDRESS,
    namespace: nonEmpty(overrides.namespace) ?? nonEmpty(profile.namespace) ?? 'default',
    taskQueue: overrides.taskQueue ?? env.TTT_TASK_QUEUE ?? DEFAULT_TASK_QUEUE,
    external: overrides.external ?? address !== undefined,
  };
}

/** The full connection settings: the target plus TLS, API key and gRPC headers, with the certificates read. */
export function connectionSettings(
  overrides: Partial<TemporalTarget> = {},
  env: Env = process.env,
): ConnectionSettings {
  if (['1', 'true'].includes(env.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION ?? ''))
    throw new UserError('TEMPORAL_TLS_DISABLE_HOST_VERIFICATION is not supported by the TypeScript SDK', {
      kind: 'ConnectionError',
      fix: `unset it, and set ${SETTING.serverName} to a name in the server's certificate (and ${SETTING.serverCa} to its CA)`,
    });
  const target = temporalTarget(overrides, env);
  const profile = loadProfile(env);
  const t = profile.tls;
  if (t && !t.disabled && (t.clientCert === undefined) !== (t.clientKey === undefined))
    throw new UserError(`a client ${t.clientCert ? 'certificate without its key' : 'key without its certificate'}`, {
      kind: 'ConnectionError',
      fix: `set both of ${SETTING.clientCert}`,
    });
  let options: ReturnType<typeof toClientOptions>['connectionOptions'];
  try {
    options = toClientOptions(profile).connectionOptions;
  } catch (e) {
    throw new UserError(`cannot read a TLS file: ${String((e as Error).message ?? e).split('\n')[0]}`, {
      kind: 'ConnectionError',
      fix: `check the paths in ${SETTING.clientCert} and ${SETTING.serverCa}`,
    });
  }
  const tlsOption = options.tls === null ? undefined : options.tls;
  const tlsConfig = typeof tlsOption === 'object' ? tlsOption : undefined;
  const apiKey = typeof options.apiKey === 'string' && options.apiKey !== '' ? options.apiKey : undefined;
  const connectOptions: ConnectOptions = {
    address: target.address,
    ...(tlsOption !== undefined ? { tls: tlsOption } : {}),
    ...(apiKey ? { apiKey } : {}),
    // envconfig fills them from TEMPORAL_GRPC_META_* and the profile's grpc_meta: strings.
    ...(options.metadata && Object.keys(options.metadata).length > 0
      ? { metadata: options.metadata as Record<string, string> }
      : {}),
  };
  return {
    ...target,
    connectOptions,
    summary: {
      address: target.address,
      namespace: target.namespace,
      profile: nonEmpty(env.TEMPORAL_PROFILE) ?? null,
      tls: tlsOption !== undefined && tlsOption !== false,
      serverName: tlsConfig?.serverNameOverride ?? null,
      serverCa: tlsConfig?.serverRootCACertificate !== undefined,
      clientCert: tlsConfig?.clientCertPair !== undefined,
      apiKey: apiKey !== undefined,
    },
  };
}

/**
 * The environment of a process that must not talk to Temporal (a training child, an external
 * trainer): every TEMPORAL_* variable unset (API key, private key data, gRPC headers, ...).
 * Merged over process.env by child_process.spawn, where an undefined value removes the variable.
 */
export function withoutTemporalSettings(env: Env = process.env): Record<string, undefined> {
  const out: Record<string, undefined> = {};
  for (const k of Object.keys(env)) if (k.startsWith('TEMPORAL_')) out[k] = undefined;
  return out;
}

/** "127.0.0.1:7233 (namespace default, TLS with client certificate, API key)": one line, no secrets. */
export function describeConnection(s: ConnectionSummary): string {
  const how = !s.tls
    ? 'plaintext'
    : `TLS${s.serverName ? ` to ${s.serverName}` : ''}${s.clientCert ? ' with client certificate' : ''}`;
  return `${s.address} (namespace ${s.namespace}, ${how}${s.apiKey ? ', API key' : ''}${s.profile ? `, profile ${s.profile}` : ''})`;
}

function hostPort(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m)
    throw new UserError(`address ${JSON.stringify(address)} is not host:port`, {
      kind: 'ConnectionError',
      fix: `set ${SETTING.address} to host:port, e.g. temporal.example.com:7233`,
    });
  return { host: m[1]!, port: Number(m[2]) };
}

/** Node's certificate verification codes that mean "the server's certificate is not signed by a CA we trust". */
const UNTRUSTED_SERVER = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);
/** Errors of the network rather than of TLS: left to the SDK, which reports or retries them as it always does. */
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'EPIPE']);
/** An HTTP/2 client preface and an empty SETTINGS frame: a TLS 1.3 server that refuses our certificate says so on the first read. */
const H2_PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);
/** A handshake that takes longer than this is left to the SDK (a slow network is not a settings problem). */
const HANDSHAKE_MS = 15_000;

/** The TLS error as a UserError that names the setting to fix; null when it is not about the settings. */
function tlsProblem(e: NodeJS.ErrnoException & { reason?: string }, s: ConnectionSettings): UserError | null {
  const code = e.code ?? '';
  const at = `the Temporal server at ${s.address}`;
  const err = (message: string, fix: string): UserError => new UserError(message, { kind: 'ConnectionError', fix });
  if (NETWORK.has(code)) return null;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return err(
      `${at} presented a certificate that is not valid for the name ${JSON.stringify(s.summary.serverName ?? hostPort(s.address).host)} (${e.reason ?? e.message})`,
      `set ${SETTING.serverName} to a name in the server's certificate, or connect by that name`,
    );
  if (UNTRUSTED_SERVER.has(code))
    return err(
      `${at} presented a certificate that is not signed by a CA this client trusts (${code})`,
      `set ${SETTING.serverCa} to the CA that signed the server's certificate`,
    );
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return err(`${at} presented a certificate outside its validity dates (${code})`, 'renew the server certificate');
  if (/ALERT_CERTIFICATE_REQUIRED/.test(code) || (!s.summary.clientCert && /ALERT_HANDSHAKE_FAILURE/.test(code)))
    return err(`${at} requires a client certificate and none was sent (${code})`, `set ${SETTING.clientCert}`);
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR|ACCESS_DENIED|HANDSHAKE_FAILURE)/.test(code))
    return err(
      `${at} did not accept the client certificate (${code})`,
      `set ${SETTING.clientCert} to a certificate signed by a CA that the server trusts`,
    );
  if (
    /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|RECORD_LAYER_FAILURE/.test(code) ||
    code === 'EPROTO'
  )
    return err(
      `${at} did not answer TLS (${code || e.message}); it may be a plaintext port`,
      `point ${SETTING.address} at the server's TLS port, or turn TLS off with TEMPORAL_TLS=false`,
    );
  if (/^ERR_OSSL|^ERR_SSL/.test(code))
    return err(
      `TLS to ${s.address} failed: ${e.message.split('\n')[0]}`,
      `check ${SETTING.clientCert} and ${SETTING.serverCa}`,
    );
  return null;
}

/**
 * One TLS handshake with the settings' CA, server name and client certificate, before the SDK
 * connects: a wrong server name or CA, a missing or untrusted client certificate then fail at once,
 * on this one connection, with the setting to fix. (The TypeScript client treats a wrong server
 * name as a temporary failure and retries until its connect deadline.) Network failures are left
 * to the SDK.
 */
export async function checkTls(s: ConnectionSettings): Promise<void> {
  const opt = s.connectOptions.tls;
  if (opt === undefined || opt === false) return;
  const cfg: TLSConfig = opt === true ? {} : opt;
  const { host, port } = hostPort(s.address);
  const name = cfg.serverNameOverride ?? host;
  let socket: tls.TLSSocket;
  try {
    socket = tls.connect({
      host,
      port,
      ...(net.isIP(name) ? {} : { servername: name }),
      ...(cfg.serverRootCACertificate ? { ca: [Buffer.from(cfg.serverRootCACertificate)] } : {}),
      ...(cfg.clientCertPair
        ? { cert: Buffer.from(cfg.clientCertPair.crt), key: Buffer.from(cfg.clientCertPair.key) }
        : {}),
      ALPNProtocols: ['h2'],
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    });
  } catch (e) {
    // createSecureContext: a certificate or key that cannot be parsed, or that do not match.
    throw new UserError(
      `the client certificate or key cannot be used: ${String((e as Error).message).split('\n')[0]}`,
      {
        kind: 'ConnectionError',
        fix: `check ${SETTING.clientCert} (PEM files, the key belonging to the certificate)`,
      },
    );
  }
  await new Promise<void>((resolve, reject) => {
    const done = (e?: UserError | null): void => {
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      if (e) reject(e);
      else resolve();
    };
    socket.setTimeout(HANDSHAKE_MS, () => done());
    socket.once('secureConnect', () => socket.write(H2_PREFACE));
    socket.once('data', () => done());
    socket.once('end', () => done());
    socket.once('close', () => done());
    socket.once('error', (e: NodeJS.ErrnoException) => done(tlsProblem(e, s)));
  });
}

/**
 * The SDK's connection error, explained when the server refused our credentials (gRPC status
 * UNAUTHENTICATED or PERMISSION_DENIED, as the Temporal server or a TLS proxy answers them);
 * else the error itself.
 */
export function explainConnectError(e: unknown, s: ConnectionSettings): unknown {
  // The client wraps the gRPC error ("Failed to connect to Temporal server", cause: "16 UNAUTHENTICATED: ...");
  // the worker's native connection words it as tonic does ("... does not have valid authentication credentials").
  const chain: { code?: unknown; message?: unknown }[] = [];
  for (let c: unknown = e; c && typeof c === 'object' && chain.length < 5; c = (c as { cause?: unknown }).cause)
    chain.push(c as { code?: unknown; message?: unknown });
  const text = chain.map((c) => String(c.message ?? '')).join(': ');
  const has = (code: number, words: RegExp): boolean => chain.some((c) => c.code === code) || words.test(text);
  const at = `the Temporal server at ${s.address}`;
  const detail = text.split('\n')[0]!.slice(0, 300);
  const sum = s.summary;
  if (has(16, /UNAUTHENTICATED|valid authentication credentials/i)) {
    const none = !sum.clientCert && !sum.apiKey;
    const fix = !sum.tls
      ? `the server wants credentials: set ${SETTING.clientCert} (mTLS) or ${SETTING.apiKey}`
      : none
        ? `set ${SETTING.clientCert} (mTLS) or ${SETTING.apiKey}`
        : sum.clientCert
          ? `set ${SETTING.clientCert} to a certificate signed by a CA that the server trusts${sum.apiKey ? `, and check ${SETTING.apiKey}` : ''}`
          : `check ${SETTING.apiKey}, or set ${SETTING.clientCert} if the server requires mTLS`;
    return new UserError(
      `${at} ${none ? 'requires credentials and none were sent' : 'refused our credentials'} (${detail})`,
      {
        kind: 'ConnectionError',
        fix,
      },
    );
  }
  if (has(7, /PERMISSION_DENIED|does not have permission/i))
    return new UserError(`${at} denied access to namespace ${s.namespace} (${detail})`, {
      kind: 'ConnectionError',
      fix: `check TEMPORAL_NAMESPACE (or --namespace) and that ${sum.apiKey ? 'the API key' : 'these credentials'} may use it`,
    });
  return e;
}

/** Checks TLS, then connects with `connect` (Connection.connect or NativeConnection.connect); credential errors explained. */
export async function openConnection<C>(
  s: ConnectionSettings,
  connect: (options: ConnectOptions) => Promise<C>,
): Promise<C> {
  await checkTls(s);
  try {
    return await connect(s.connectOptions);
  } catch (e) {
    throw explainConnectError(e, s);
  }
}
