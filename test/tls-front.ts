/**
 * A real TLS front for a Temporal dev server (which has no TLS of its own), for the tests: Debian's
 * nginx terminating TLS with `ssl_verify_client on` and passing gRPC on (`grpc_pass`), with
 * certificates made here with openssl, and an API key checked on every call. In front of nginx a
 * TCP relay counts connections, so that a test can tell one attempt from a retry storm.
 *
 * nginx facts (1.22, Debian 12): `listen ... ssl http2;` (`http2 on;` came later); Temporal's long
 * polls last about 60 s, so grpc_read_timeout / grpc_send_timeout are longer; client_max_body_size
 * 0 (the default 1 MB rejects large payloads); a bad or missing client certificate (nginx's 495 /
 * 496) and a wrong API key are answered as gRPC status 16, not as an HTML 400.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort } from '../src/temporal/devserver';
import { waitFor } from './helpers';

export interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by another CA, which the front does not trust. */
  otherCert: string;
  otherKey: string;
  /** The name in the server's certificate. */
  serverName: string;
}

/** nginx from PATH or Debian's /usr/sbin; CI installs it (scripts/ensure-nginx.sh). */
export function nginxBinary(): string {
  for (const p of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']) if (fs.existsSync(p)) return p;
  try {
    return execFileSync('bash', ['-c', 'command -v nginx'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('nginx is not installed: run `bash scripts/ensure-nginx.sh` (Debian: apt-get install nginx-light)');
  }
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, a server certificate for `serverName`, a client certificate, and a client certificate of another CA (EC P-256, 2 days). */
export function makeCerts(dir: string, serverName = 'temporal.test'): Certs {
  fs.mkdirSync(dir, { recursive: true });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string): void =>
    openssl(
      ['req', '-x509', ...key, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`],
      dir,
    );
  const leaf = (name: string, cn: string, signer: string, ext: string): void => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `${ext}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n`);
    openssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${signer}.pem`,
        '-CAkey',
        `${signer}.key`,
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    );
  };
  ca('test-ca');
  ca('other-ca');
  leaf('server', serverName, 'test-ca', `subjectAltName=DNS:${serverName}\nextendedKeyUsage=serverAuth`);
  leaf('client', 'ttt-worker', 'test-ca', 'extendedKeyUsage=clientAuth');
  leaf('other', 'ttt-worker', 'other-ca', 'extendedKeyUsage=clientAuth');
  const f = (n: string): string => path.join(dir, n);
  return {
    ca: f('test-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherCert: f('other.pem'),
    otherKey: f('other.key'),
    serverName,
  };
}

export interface TlsFront {
  /** host:port of the counting relay in front of nginx: what clients connect to. */
  address: string;
  /** TCP connections the relay accepted so far. */
  connections(): number;
  /** nginx's access log, one line per gRPC call: `<client cert verify> <status> "<request>" key=<yes|no>`. */
  accessLog(): string[];
  stop(): Promise<void>;
}

/** A gRPC answer "status 16 (UNAUTHENTICATED)" with a message, instead of nginx's HTML error page. */
function unauthenticated(name: string, message: string): string {
  return `    location ${name} {
      internal;
      default_type application/grpc;
      add_header content-type application/grpc always;
      add_header grpc-status 16 always;
      add_header grpc-message "${message}" always;
      return 204;
    }`;
}

export async function startTlsFront(dir: string, certs: Certs, upstream: string, apiKey: string): Promise<TlsFront> {
  const nginx = nginxBinary();
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  const runAsRoot = process.getuid?.() === 0 ? 'user root;' : '';
  fs.writeFileSync(
    conf,
    `${runAsRoot}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 512; }
http {
  client_body_temp_path ${dir}/body;
  log_format calls '$ssl_client_verify $status "$request" key=$key_ok';
  access_log ${dir}/access.log calls;
  map_hash_bucket_size 256;
  map $http_authorization $key_ok { "Bearer ${apiKey}" yes; default no; }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${certs.serverCert};
    ssl_certificate_key ${certs.serverKey};
    ssl_client_certificate ${certs.ca};
    ssl_verify_client on;
    client_max_body_size 0;
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    error_page 495 = @bad_client_cert;
    error_page 496 = @no_client_cert;
    error_page 401 = @bad_api_key;
    location / {
      if ($key_ok = no) { return 401; }
      grpc_pass grpc://${upstream};
    }
${unauthenticated('@bad_client_cert', 'client certificate not trusted')}
${unauthenticated('@no_client_cert', 'client certificate required')}
${unauthenticated('@bad_api_key', 'bad API key')}
  }
}
`,
  );
  const proc: ChildProcess = spawn(
    nginx,
    ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  proc.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  // The relay: every TCP connection counted, then piped to nginx.
  let count = 0;
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((client) => {
    count++;
    const up = net.connect(port, '127.0.0.1');
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        up.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(up).pipe(client);
  });
  const relayPort = await freePort();
  await new Promise<void>((resolve) => relay.listen(relayPort, '127.0.0.1', resolve));
  await Promise.race([
    waitFor(
      'nginx listening',
      () =>
        new Promise<boolean | undefined>((resolve) => {
          const s = net.connect(port, '127.0.0.1');
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(undefined));
        }),
      30_000,
      100,
    ),
    exited.then((code) => {
      throw new Error(`nginx exited (${code}): ${err}`);
    }),
  ]);
  const accessLog = path.join(dir, 'access.log');
  return {
    address: `127.0.0.1:${relayPort}`,
    connections: () => count,
    accessLog: () => (fs.existsSync(accessLog) ? fs.readFileSync(accessLog, 'utf8').split('\n').filter(Boolean) : []),
    stop: async () => {
      relay.close();
      for (const s of sockets) s.destroy();
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}
