/**
 * A real one-node Slurm cluster for the tests, from Debian's packages (slurmctld slurmd
 * slurm-client munge; .ci/run installs them), run as root: munged, slurmctld and
 * `slurmd -N localhost` with their configuration, state, sockets and logs in a temporary folder,
 * on free ports, so that nothing in /etc is touched and two test runs do not meet. Clients
 * find it through SLURM_CONF (set in this process; pass `env` to workers). Stopped by pid.
 */
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';
import { tmpDir, waitFor } from './helpers';

export interface SlurmCluster {
  dir: string;
  conf: string;
  /** The partition of the one node. */
  partition: string;
  /** Environment for processes that use the cluster (workers). */
  env: { SLURM_CONF: string };
  stop(): Promise<void>;
}

const DAEMONS = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol', 'scancel', 'sinfo'];

function which(cmd: string): string | undefined {
  for (const d of ['/usr/sbin', '/usr/bin', ...(process.env.PATH ?? '').split(':')]) {
    const f = path.join(d, cmd);
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function slurmConf(dir: string, ctldPort: number, slurmdPort: number): string {
  return `# Written by test/slurm.ts: a one-node cluster on localhost.
ClusterName=ttttest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${ctldPort}
SlurmdPort=${slurmdPort}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${dir}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
KillWait=5
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${os.cpus().length} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
`;
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    // A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function stopPid(pid: number | undefined): Promise<void> {
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  await waitFor(`pid ${pid} to exit`, () => (!alive(pid) ? true : undefined), 30_000, 100);
}

/** Starts munged, slurmctld and slurmd; resolves once the node is idle. */
export async function startSlurm(): Promise<SlurmCluster> {
  const missing = DAEMONS.filter((d) => !which(d));
  if (missing.length > 0)
    throw new Error(
      `Slurm is not installed (${missing.join(', ')} missing): apt-get install slurmctld slurmd slurm-client munge (.ci/run does)`,
    );
  if (process.getuid?.() !== 0)
    throw new Error('the Slurm tests run a cluster as root (SlurmUser=root); run them as root');
  const dir = tmpDir('slurm');
  for (const d of ['munge', 'state', 'spool', 'log']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(path.join(dir, 'munge'), 0o755); // munged wants its socket's folder open to all
  const key = path.join(dir, 'munge', 'munge.key');
  fs.writeFileSync(key, crypto.randomBytes(1024), { mode: 0o600 });
  const conf = path.join(dir, 'slurm.conf');
  fs.writeFileSync(conf, slurmConf(dir, await freePort(), await freePort()));
  const env = { SLURM_CONF: conf };
  process.env.SLURM_CONF = conf;
  const cluster: SlurmCluster = {
    dir,
    conf,
    partition: 'debug',
    env,
    stop: async () => {
      try {
        execFileSync('scancel', ['--me'], { stdio: 'ignore' });
        await waitFor('the jobs to end', () => (squeueCount() === 0 ? true : undefined), 60_000, 200);
      } catch {
        /* the daemons go anyway */
      }
      await stopPid(readPid(path.join(dir, 'slurmd.pid')));
      await stopPid(readPid(path.join(dir, 'slurmctld.pid')));
      await stopPid(readPid(path.join(dir, 'munge', 'munged.pid')));
    },
  };
  // Each daemon forks into the background by itself and writes its pid file.
  execFileSync(which('munged')!, [
    '--force',
    `--socket=${dir}/munge/munge.socket`,
    `--key-file=${key}`,
    `--pid-file=${dir}/munge/munged.pid`,
    `--log-file=${dir}/log/munged.log`,
    `--seed-file=${dir}/munge/munged.seed`,
  ]);
  try {
    execFileSync(which('slurmctld')!, ['-f', conf]);
    execFileSync(which('slurmd')!, ['-f', conf, '-N', 'localhost']);
    await waitFor(
      'the Slurm node to be idle',
      () => {
        try {
          return execFileSync('sinfo', ['--noheader', '--format=%T'], { encoding: 'utf8' }).trim() === 'idle'
            ? true
            : undefined;
        } catch {
          return undefined;
        }
      },
      60_000,
      100,
    );
  } catch (e) {
    const logs = ['slurmctld.log', 'slurmd.log']
      .map((f) => {
        try {
          return `${f}:\n${fs.readFileSync(path.join(dir, 'log', f), 'utf8').slice(-2000)}`;
        } catch {
          return `${f}: (none)`;
        }
      })
      .join('\n');
    await cluster.stop();
    throw new Error(`Slurm did not come up: ${(e as Error).message}\n${logs}`);
  }
  return cluster;
}

function squeueCount(): number {
  return execFileSync('squeue', ['--noheader', '--me'], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
}

/** A Slurm cluster shared by the tests of one file (node:test before/after hooks). */
export function sharedSlurm(): SlurmCluster {
  const holder = {} as SlurmCluster;
  before(async () => {
    Object.assign(holder, await startSlurm());
  });
  after(async () => {
    await holder.stop?.();
  });
  return holder;
}

/** A Slurm job as scontrol reports it: name, state, start and end (seconds since the epoch; end 0 while it runs). */
export interface JobRecord {
  id: string;
  name: string;
  state: string;
  start: number;
  end: number;
}

export function jobRecord(id: string): JobRecord {
  const out = execFileSync('scontrol', ['--oneliner', 'show', 'job', id], { encoding: 'utf8' });
  const field = (k: string): string => new RegExp(`(?:^| )${k}=(\\S*)`).exec(out)?.[1] ?? '';
  const time = (t: string): number => (/^\d{4}-/.test(t) ? Date.parse(`${t}Z`) / 1000 : 0);
  const state = field('JobState');
  return {
    id,
    name: field('JobName'),
    state,
    start: time(field('StartTime')),
    end: state === 'RUNNING' || state === 'PENDING' ? 0 : time(field('EndTime')),
  };
}

/** This user's live jobs of a name (squeue), as "id state". */
export function liveJobsNamed(name: string): string[] {
  return execFileSync('squeue', ['--noheader', '--me', '--name', name, '--format=%i %T'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}
