/**
 * What the commands share: the context they are registered with, the Temporal connection flags
 * (one place), stage-config overrides, sizes, progress bars and the result table.
 */
import * as path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { type Command, Option } from 'commander';
import type { Overrides } from '../config/load';
import { UserError } from '../errors';
import type { CurriculumInput, CurriculumResult } from '../shared/types';
import { connectClient, jobHandle } from '../temporal/client';

/** What every command is registered with: the `--section.field=value` overrides of the command line. */
export interface CliContext {
  overrides: Overrides;
}

/** A command file's entry: adds its command to the program. */
export type Register = (program: Command, ctx: CliContext) => void;

/** Options of the connection flags. */
export interface ConnectionFlags {
  address?: string;
  namespace?: string;
  taskQueue?: string;
}

/** Adds --address and --namespace: the commands that talk to Temporal. */
export function connectionOptions(c: Command): Command {
  // No .env() here: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE, the profile file and TLS / API key come
  // from Temporal's environment configuration (src/temporal/connection.ts); explicit flags win over them.
  return c
    .option('--address <host:port>', 'Temporal frontend (default: TEMPORAL_ADDRESS, the profile, localhost:7233)')
    .option('--namespace <ns>', 'Temporal namespace (default: TEMPORAL_NAMESPACE, the profile, default)');
}

/** --task-queue (`worker`, `start`). */
export const taskQueueOption = (): Option => new Option('--task-queue <name>', 'task queue').env('TTT_TASK_QUEUE');

/** A client for the server that the connection flags name. */
export function connect(o: ConnectionFlags): Promise<Client> {
  return connectClient({ address: o.address, namespace: o.namespace });
}

/** A `<name> <job>` command that sends the job one message (`pause`, `resume`, `cancel`) and says so. */
export function jobCommand(
  program: Command,
  name: string,
  description: string,
  send: (h: WorkflowHandle) => Promise<void>,
): void {
  connectionOptions(program.command(`${name} <job>`).description(description)).action(
    async (job: string, o: ConnectionFlags) => {
      await send(jobHandle(await connect(o), job));
      process.stdout.write(`${name} sent to ${job}\n`);
    },
  );
}

/** Commander's collector of a repeatable option. */
export function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

/** "--set a.b=1 --set c.d=x" plus "--a.b=1" style overrides. */
export function overridesFrom(sets: string[], cli: Overrides): Overrides {
  const out: Overrides = { ...cli };
  for (const s of sets) {
    const i = s.indexOf('=');
    if (i <= 0) throw new Error(`--set ${s}: write --set section.field=value`);
    out[s.slice(0, i)] = s.slice(i + 1);
  }
  return out;
}

/** Options of the commands that start a job (`start`, `demo`). */
export interface JobFlags {
  curriculum: string;
  set: string[];
  until?: string;
}

/** Adds --curriculum, --set and --until. */
export function jobOptions(c: Command, untilHelp: string): Command {
  return c
    .option('-c, --curriculum <file>', 'curriculum file', 'configs/curriculum/tiny.toml')
    .option('--set <section.field=value>', 'override for every stage (repeatable)', collect, [])
    .option('--until <stage>', untilHelp);
}

/** The workflow input of a job started from the command line. */
export function jobInput(jobName: string, o: JobFlags, cli: Overrides): CurriculumInput {
  return {
    jobName,
    curriculum: o.curriculum,
    set: overridesFrom(o.set, cli),
    ...(o.until ? { until: o.until } : {}),
  };
}

/** A number option's parser. */
export const toNumber = (v: string): number => Number(v);

export const fmtBytes = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;

/** "5GB", "500MB", "1.5GiB" or a number of bytes. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/i.exec(v.trim());
  const units: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
  const n = m ? Math.floor(Number(m[1]) * units[(m[2] ?? 'b').toLowerCase()]!) : NaN;
  if (!(n > 0))
    throw new UserError(`size ${JSON.stringify(v)} is not a positive size`, {
      kind: 'InvalidInput',
      fix: 'write e.g. 5GB, 500MB or 1GiB',
    });
  return n;
}

/** A progress bar in cli-progress's classic look. */
export function progressBar(format: string, stream?: NodeJS.WritableStream): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    { format, hideCursor: true, ...(stream ? { stream } : {}) },
    cliProgress.Presets.shades_classic,
  );
}

/** The relative change from a to b: "-48.52%", "+0.01%"; "-" when either is unknown. */
export function relativeChange(a: number | null | undefined, b: number | null | undefined): string {
  if (typeof a !== 'number' || typeof b !== 'number' || a === 0) return '-';
  const pct = ((b - a) / Math.abs(a)) * 100;
  return `${pct < 0 ? '-' : '+'}${Math.abs(pct).toFixed(2)}%`;
}

/**
 * The finished job's table: one row per stage with its steps, the first and last single-step
 * loss (one draw each, at random timesteps), the validation loss at the stage's start and end
 * and its change (fixed samples, timesteps and noise: comparable), wall time and final checkpoint.
 */
export function resultTable(r: CurriculumResult, cwd = process.cwd()): string {
  const rows = r.stages.map((s) => [
    s.stage,
    String(s.steps),
    s.firstLoss?.toFixed(4) ?? '-',
    s.lastLoss?.toFixed(4) ?? '-',
    s.valLossStart?.toFixed(4) ?? '-',
    s.valLossEnd?.toFixed(4) ?? '-',
    relativeChange(s.valLossStart, s.valLossEnd),
    s.wallSeconds.toFixed(1),
    s.finalCheckpoint,
  ]);
  const head = [
    'stage',
    'steps',
    'first loss',
    'last loss',
    'val start',
    'val end',
    'val change',
    'wall s',
    'final checkpoint',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const title = `\nJob ${r.jobName} (${path.relative(cwd, r.curriculum) || r.curriculum}) finished through stage ${r.until}:\n`;
  return title + [head, ...rows].map((row) => `${fmt(row)}\n`).join('');
}

export function printResult(r: CurriculumResult, out: NodeJS.WritableStream = process.stdout): void {
  out.write(resultTable(r));
}
