#!/usr/bin/env node
/**
 * The `ttt-curriculum` command. Stage-config overrides are written `--section.field=value`
 * (e.g. `--training.steps=100`) and apply to `train`, `start` and `demo`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { connectClient, jobHandle, pauseSignal, resumeSignal, setUntilUpdate, startJob } from '../temporal/client';
import { loadStageConfig, parseCliOverrides, type Overrides } from '../config/load';
import { temporalTarget } from '../temporal/connection';
import { isUserError, UserError } from '../errors';
import { formatLoss, stepText } from '../shared/progress';
import { normaliseStageName } from '../shared/stages';
import { convertDiffusers, DEFAULT_MAX_SHARD_BYTES, type OutputDtype } from '../convert/convert';
import { writeSynthDataset } from '../data/synthfiles';
import { modelDims } from '../config/dims';
import { logger } from '../log';
import { checkpointsDir, convertedInitDir, jobDir, stageDir } from '../paths';
import { latestCompleteCheckpoint } from '../checkpoint/store';
import { isDiffusersFolder } from '../convert/config';
import { validateJobName } from '../jobname';
import { formatEta, jobStatus, statusLine } from '../temporal/status';
import { plotJob } from '../plot/plot';
import { portOpen, startDevServer, type DevServer } from '../temporal/devserver';
import { runShard } from '../train/trainer';
import type { CurriculumResult } from '../shared/types';
import { createWorker, runWorker } from '../temporal/worker';
import { watchJob } from './watch';

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

/** "--set a.b=1 --set c.d=x" plus "--a.b=1" style overrides. */
function overridesFrom(sets: string[], cli: Overrides): Overrides {
  const out: Overrides = { ...cli };
  for (const s of sets) {
    const i = s.indexOf('=');
    if (i <= 0) throw new Error(`--set ${s}: write --set section.field=value`);
    out[s.slice(0, i)] = s.slice(i + 1);
  }
  return out;
}

const fmtBytes = (n: number): string =>
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

export function printResult(r: CurriculumResult, out: NodeJS.WritableStream = process.stdout): void {
  const rows = r.stages.map((s) => [
    s.stage,
    String(s.steps),
    s.firstLoss?.toFixed(4) ?? '-',
    s.lastLoss?.toFixed(4) ?? '-',
    s.wallSeconds.toFixed(1),
    s.finalCheckpoint,
  ]);
  const head = ['stage', 'steps', 'first loss', 'last loss', 'wall s', 'final checkpoint'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  out.write(
    `\nJob ${r.jobName} (${path.relative(process.cwd(), r.curriculum) || r.curriculum}) finished through stage ${r.until}:\n`,
  );
  out.write(`${fmt(head)}\n`);
  for (const row of rows) out.write(`${fmt(row)}\n`);
}

async function ensureServer(): Promise<{ address: string; server: DevServer | null }> {
  const target = temporalTarget();
  if (target.external) return { address: target.address, server: null };
  if (await portOpen(7233)) return { address: 'localhost:7233', server: null };
  process.stderr.write(
    'Starting a local Temporal dev server (history in .temporal/dev.sqlite, UI on http://localhost:8233)...\n',
  );
  const server = await startDevServer({ port: 7233, uiPort: 8233, dbFile: path.resolve('.temporal', 'dev.sqlite') });
  return { address: server.address, server };
}

/** The job folder: from Temporal (the job's status), else ./runs/<job> when it exists. */
async function jobFolder(job: string, o: { address?: string; namespace?: string }): Promise<string> {
  const local = path.resolve('runs', validateJobName(job));
  try {
    const client = await connectClient({ address: o.address, namespace: o.namespace });
    try {
      const s = await jobStatus(client, job);
      if (s.jobDir) return s.jobDir;
    } finally {
      await client.connection.close();
    }
  } catch (e) {
    if (fs.existsSync(local)) return local;
    throw new UserError(`cannot find the folder of job ${job}: ${(e as Error).message.split('\n')[0]}`, {
      kind: 'InvalidInput',
      fix: 'pass --dir <dump_folder>/<job>, or --address of the Temporal server that ran it',
    });
  }
  return local;
}

export function buildProgram(cliOverrides: Overrides): Command {
  const program = new Command();
  program
    .name('ttt-curriculum')
    .description('Durable five-stage TTT-Video-DiT training curriculum on Temporal')
    .showHelpAfterError();
  // [issue 16] No .env() here: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE, the profile file and TLS / API key come
  // from Temporal's environment configuration (src/temporal/connection.ts); explicit flags win over them.
  const addr = (c: Command): Command =>
    c
      .option('--address <host:port>', 'Temporal frontend (default: TEMPORAL_ADDRESS, the profile, localhost:7233)')
      .option('--namespace <ns>', 'Temporal namespace (default: TEMPORAL_NAMESPACE, the profile, default)');
  // [/issue 16]

  addr(program.command('worker').description('run a worker: trains shards of any job on its task queue'))
    .addOption(new Option('--task-queue <name>', 'task queue').env('TTT_TASK_QUEUE'))
    .option('--max-concurrent-activities <n>', 'activities at once (one training shard each)', (v) => Number(v), 2)
    .addOption(
      new Option('--metrics-port <n>', "serve Prometheus metrics (Temporal's and ours) on this port, GET /metrics")
        .env('TTT_METRICS_PORT')
        .argParser((v) => Number(v)),
    )
    .option('--metrics-host <host>', 'interface of the metrics endpoint', '0.0.0.0')
    // [issue 16] roots that job inputs may read and write
    .option(
      '--allow-path <dir>',
      'folder that job inputs may read and write (repeatable; default: TTT_ALLOW_PATHS, else the working directory; configs/ is always readable)',
      collect,
      [],
    )
    // [/issue 16]
    .action(
      async (o: {
        address?: string;
        namespace?: string;
        taskQueue?: string;
        maxConcurrentActivities: number;
        metricsPort?: number;
        metricsHost: string;
        allowPath: string[]; // [issue 16]
      }) => {
        const ac = new AbortController();
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
        await runWorker({
          address: o.address,
          namespace: o.namespace,
          taskQueue: o.taskQueue,
          maxConcurrentActivities: o.maxConcurrentActivities,
          metricsPort: o.metricsPort,
          metricsHost: o.metricsHost,
          allowPaths: o.allowPath, // [issue 16]
          signal: ac.signal,
        });
      },
    );

  addr(program.command('start <job>').description('start a job (or attach to the running job of that name)'))
    .option('-c, --curriculum <file>', 'curriculum file', 'configs/curriculum/tiny.toml')
    .option('--set <section.field=value>', 'override for every stage (repeatable)', collect, [])
    .option('--until <stage>', 'last stage to run, e.g. 18s')
    .addOption(new Option('--task-queue <name>', 'task queue').env('TTT_TASK_QUEUE'))
    .option('--wait', 'wait for the result and print it')
    .action(
      async (
        job: string,
        o: {
          curriculum: string;
          set: string[];
          until?: string;
          taskQueue?: string;
          wait?: boolean;
          address?: string;
          namespace?: string;
        },
      ) => {
        const client = await connectClient({ address: o.address, namespace: o.namespace });
        const handle = await startJob(
          client,
          {
            jobName: job,
            curriculum: o.curriculum,
            set: overridesFrom(o.set, cliOverrides),
            ...(o.until ? { until: o.until } : {}),
          },
          { taskQueue: o.taskQueue },
        );
        process.stdout.write(`job ${handle.workflowId} running (run ${(await handle.describe()).runId})\n`);
        if (o.wait) printResult((await handle.result()) as CurriculumResult);
      },
    );

  addr(program.command('status <job>').description('print where a job is, once'))
    .option('--json', 'machine-readable output')
    .action(async (job: string, o: { json?: boolean; address?: string; namespace?: string }) => {
      const client = await connectClient({ address: o.address, namespace: o.namespace });
      const s = await jobStatus(client, job);
      if (o.json) process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
      else {
        process.stdout.write(`${statusLine(s)}\n`);
        for (const st of s.stages) {
          const speed = st.stepsPerSecond
            ? `  ${st.stepsPerSecond.toFixed(2)} steps/s  ETA ${formatEta(st.etaSeconds)}`
            : '';
          process.stdout.write(
            `  ${st.stage.padEnd(4)} ${String(st.step).padStart(6)}/${st.totalSteps} ${st.done ? 'done' : '    '} ${st.loss === null ? '' : `loss ${st.loss.toFixed(4)}`}${speed}\n`,
          );
        }
      }
    });

  addr(program.command('watch <job>').description('live progress bars, one per stage, until the job ends'))
    .option('--no-tty', 'plain lines instead of progress bars')
    .option('--interval <ms>', 'poll interval', (v) => Number(v), 1000)
    .action(async (job: string, o: { tty: boolean; interval: number; address?: string; namespace?: string }) => {
      const client = await connectClient({ address: o.address, namespace: o.namespace });
      const s = await watchJob(client, job, { tty: o.tty === false ? false : undefined, intervalMs: o.interval });
      process.stdout.write(`${statusLine(s)}\n`);
      if (s.result) printResult(s.result);
    });

  addr(
    program
      .command('plot <job>')
      .description(
        'draw loss (every stage on one time axis, boundaries marked), gradient norm and learning rates from the metrics files',
      ),
  )
    .option('--out <file>', 'output picture, .svg or .png (default: <job>.svg)')
    .option('--dir <folder>', 'the job folder (dump_folder/<job>); default: asked from Temporal, else runs/<job>')
    .action(async (job: string, o: { out?: string; dir?: string; address?: string; namespace?: string }) => {
      const dir = o.dir ? path.resolve(o.dir) : await jobFolder(job, o);
      const r = await plotJob(dir, o.out ?? `${job}.svg`, `${job}: loss, gradient norm and learning rates`);
      process.stdout.write(`wrote ${r.file}: ${r.rows} steps of stages ${r.stages.join(', ')}\n`);
    });

  for (const [name, desc] of [
    ['pause', 'pause a job: the running shard checkpoints and stops'],
    ['resume', 'resume a paused job'],
    ['cancel', 'cancel a job: the running shard checkpoints, then the job stops'],
  ] as const) {
    addr(program.command(`${name} <job>`).description(desc)).action(
      async (job: string, o: { address?: string; namespace?: string }) => {
        const client = await connectClient({ address: o.address, namespace: o.namespace });
        const h = jobHandle(client, job);
        if (name === 'pause') await h.signal(pauseSignal);
        else if (name === 'resume') await h.signal(resumeSignal);
        else await h.cancel();
        process.stdout.write(`${name} sent to ${job}\n`);
      },
    );
  }

  addr(program.command('until <job> <stage>').description('stop the job after <stage> (e.g. 18s)')).action(
    async (job: string, stage: string, o: { address?: string; namespace?: string }) => {
      const client = await connectClient({ address: o.address, namespace: o.namespace });
      const v = await jobHandle(client, job).executeUpdate(setUntilUpdate, { args: [stage] });
      process.stdout.write(`${job} will stop after stage ${v}\n`);
    },
  );

  program
    .command('train <config>')
    .description(
      'train one stage locally, without Temporal; resumes from the latest checkpoint of job.exp_name under job.dump_folder',
    )
    .option('--init <dir>', 'initial weights folder (default: checkpoint.init_state_dir, else fresh)')
    .option('--max-steps <n>', 'stop after this many steps (the stage resumes next time)', (v) => Number(v))
    .action(async (config: string, o: { init?: string; maxSteps?: number }) => {
      const stage = loadStageConfig(config, cliOverrides, { overrideSource: 'command line' });
      const c = stage.config;
      const dir = jobDir(c.job.dump_folder, c.job.exp_name);
      const bar = new cliProgress.SingleBar(
        {
          format: ` ${stage.video.stage} |{bar}| {value}/{total} steps | loss {loss} | {duration_formatted} (ETA {eta_formatted})`,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      const tty = process.stderr.isTTY;
      let started = false;
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      let initFrom = o.init
        ? path.resolve(o.init)
        : c.checkpoint.init_state_dir
          ? path.resolve(c.checkpoint.init_state_dir)
          : null;
      if (initFrom && isDiffusersFolder(initFrom)) {
        // CogVideoX in diffusers format: convert it into <job>/init first (kept if already converted), unless the stage already has a checkpoint.
        const out = convertedInitDir(dir);
        if (!latestCompleteCheckpoint(checkpointsDir(stageDir(dir, stage.video.stage)))) {
          const cv = await convertDiffusers({
            from: initFrom,
            out,
            ssmLayer: c.model.ssm_layer,
            seed: c.training.seed,
            signal: ac.signal,
          });
          process.stdout.write(
            `init weights: ${cv.reused ? 'kept the earlier conversion in' : 'converted CogVideoX weights into'} ${out}\n`,
          );
        }
        initFrom = out;
      }
      const r = await runShard(
        {
          configFile: stage.file,
          overrides: cliOverrides,
          jobDir: dir,
          initFrom,
          maxSteps: o.maxSteps ?? 0,
          maxSeconds: Number.POSITIVE_INFINITY,
          who: 'ttt-curriculum train',
        },
        {
          shouldStop: () => ac.signal.aborted,
          onProgress: (p) => {
            if (tty) {
              if (!started) bar.start(p.totalSteps, p.step - 1, { loss: '-' });
              started = true;
              bar.update(p.step, { loss: formatLoss(p.loss) });
            } else process.stdout.write(`${stepText(p.stage, p.step, p.totalSteps, p.loss)}\n`);
          },
        },
      );
      if (started) bar.stop();
      process.stdout.write(
        `${r.stage}: steps ${r.startStep}->${r.step} of ${r.totalSteps}${r.done ? ' (stage complete)' : ''}, first loss ${r.firstLoss?.toFixed(4) ?? '-'}, last loss ${r.lastLoss?.toFixed(4) ?? '-'}, ${r.seconds.toFixed(1)}s on ${r.backend}\ncheckpoint: ${r.checkpoint}\n`,
      );
    });

  program
    .command('convert')
    .description(
      'convert a CogVideoX transformer in Hugging Face diffusers format into TTT-Video-DiT weights for checkpoint.init_state_dir',
    )
    .requiredOption(
      '--from <dir>',
      'the diffusers `transformer` folder: config.json and diffusion_pytorch_model*.safetensors (BF16, F16 or F32)',
    )
    .requiredOption(
      '--out <dir>',
      'output folder: model.safetensors (or shards and model.safetensors.index.json), config.json, convert.json',
    )
    .addOption(
      new Option('--ssm-layer <layer>', 'TTT layer whose parameters are added')
        .choices(['ttt_mlp', 'ttt_linear'])
        .default('ttt_mlp'),
    )
    .addOption(new Option('--dtype <dtype>', 'output dtype').choices(['float32', 'bfloat16']).default('float32'))
    .option('--seed <n>', "seed of the added TTT parameters (the stage config's training.seed)", (v) => Number(v), 0)
    .option('--max-shard-size <size>', 'largest output file, e.g. 5GB or 500MB', parseSize, DEFAULT_MAX_SHARD_BYTES)
    .action(
      async (o: {
        from: string;
        out: string;
        ssmLayer: 'ttt_mlp' | 'ttt_linear';
        dtype: OutputDtype;
        seed: number;
        maxShardSize: number;
      }) => {
        if (!Number.isSafeInteger(o.seed) || o.seed < 0)
          throw new UserError(`--seed ${o.seed} is not a non-negative integer`, {
            kind: 'InvalidInput',
            fix: 'e.g. --seed 0',
          });
        const tty = process.stderr.isTTY;
        const bar = new cliProgress.SingleBar(
          {
            format:
              ' {phase} |{bar}| {percentage}% | {doneGB}/{totalGB} GB | {duration_formatted} (ETA {eta_formatted})',
            hideCursor: true,
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        );
        let phase = '';
        const ac = new AbortController();
        process.once('SIGINT', () =>
          ac.abort(
            new UserError('conversion interrupted; nothing was written to --out', {
              kind: 'Interrupted',
              fix: 'run the command again',
            }),
          ),
        );
        const r = await convertDiffusers({
          from: o.from,
          out: o.out,
          ssmLayer: o.ssmLayer,
          dtype: o.dtype,
          seed: o.seed,
          maxShardBytes: o.maxShardSize,
          signal: ac.signal,
          onProgress: (p) => {
            if (!tty) return; // the library logs one line per input and output file
            const gb = { doneGB: (p.bytesDone / 1e9).toFixed(2), totalGB: (p.bytesTotal / 1e9).toFixed(2) };
            if (p.phase !== phase) {
              if (phase) bar.stop();
              phase = p.phase;
              bar.start(p.bytesTotal, 0, { phase: phase.padEnd(10), ...gb });
            }
            bar.update(p.bytesDone, gb);
          },
        });
        if (phase) bar.stop();
        const files =
          r.weightFiles.length === 1
            ? r.weightFiles[0]
            : `${r.weightFiles.length} shards + model.safetensors.index.json`;
        process.stdout.write(
          r.reused
            ? `${r.out} already holds this conversion (input sha256 ${r.inputHash.slice(0, 16)}..., same options): kept it (${r.seconds.toFixed(1)} s to check)\n`
            : `converted ${r.tensors.mapped} tensors and added ${r.tensors.added} TTT parameters: ${fmtBytes(r.bytesIn)} -> ${fmtBytes(r.bytesOut)} (${o.dtype}) in ${r.seconds.toFixed(1)} s\n${r.out}: ${files}, config.json, convert.json\n`,
        );
        process.stdout.write(
          `use: --checkpoint.init_state_dir=${r.out} (model: ${Object.entries(r.model)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')})\n`,
        );
      },
    );

  program
    .command('dataset')
    .description('datasets of precomputed embeddings')
    .command('synth')
    .description(
      'write the synthetic source as a JSONL dataset (latents .npy, text chunks .safetensors) that the real reader takes',
    )
    .requiredOption('--out <dir>', 'output folder')
    .option('--video-length <len>', 'stage video length (3sec .. 63sec); picks configs/train/tiny/<stage>.toml')
    .option('--config <file>', 'stage config giving the sizes and seed (default: the tiny config of --video-length)')
    .option('--samples <n>', 'number of samples (default: training.synthetic_samples)', (v) => Number(v))
    .action((o: { out: string; videoLength?: string; config?: string; samples?: number }) => {
      const stageName = o.videoLength ? normaliseStageName(o.videoLength.replace(/sec$/, 's')) : undefined;
      if (!o.config && !stageName)
        throw new UserError('give --video-length (3sec, 9sec, 18sec, 30sec, 63sec) or --config', {
          kind: 'InvalidInput',
        });
      const file = o.config ?? `configs/train/tiny/${stageName}.toml`;
      const stage = loadStageConfig(
        file,
        {
          ...cliOverrides,
          ...(o.videoLength ? { 'model.video_length': `${stageName!.replace(/s$/, 'sec')}` } : {}),
          'training.dataset_path': 'synthetic',
        },
        { overrideSource: 'command line' },
      );
      const n = o.samples ?? stage.config.training.synthetic_samples;
      const jsonl = writeSynthDataset(path.resolve(o.out), stage.config, modelDims(stage.config), n);
      process.stdout.write(
        `wrote ${n} ${stage.config.model.video_length} samples: ${jsonl}\nuse: --training.dataset_path=${path.resolve(o.out)} --training.jsonl_paths='["${path.basename(jsonl)}"]'\n`,
      );
    });

  program
    .command('demo')
    .description('the main job: a tiny five-stage curriculum on a local Temporal dev server with an in-process worker')
    .option('--job <name>', 'job name (default: tiny-demo-<time>)')
    .option('-c, --curriculum <file>', 'curriculum file', 'configs/curriculum/tiny.toml')
    .option('--set <section.field=value>', 'override for every stage (repeatable)', collect, [])
    .option('--until <stage>', 'last stage to run')
    .action(async (o: { job?: string; curriculum: string; set: string[]; until?: string }) => {
      // The progress display is the demo's output; per-step logs (also of the training children) only on request.
      if (process.env.TTT_LOG_LEVEL === undefined) {
        process.env.TTT_LOG_LEVEL = 'warn';
        logger.level = 'warn';
      }
      const { address, server } = await ensureServer();
      const taskQueue = temporalTarget().taskQueue;
      const { worker, connection } = await createWorker({ address, taskQueue });
      const running = worker.run();
      try {
        const client = await connectClient({ address });
        const job =
          o.job ?? `tiny-demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')}`;
        const handle = await startJob(
          client,
          {
            jobName: job,
            curriculum: o.curriculum,
            set: overridesFrom(o.set, cliOverrides),
            ...(o.until ? { until: o.until } : {}),
          },
          { taskQueue },
        );
        process.stdout.write(`Started job ${job} on ${address} (task queue ${taskQueue}).\n`);
        if (!temporalTarget().external)
          process.stdout.write(`Temporal UI: http://localhost:8233/namespaces/default/workflows/${job}\n`);
        await watchJob(client, job);
        const result = (await handle.result()) as CurriculumResult;
        printResult(result);
        const st = await jobStatus(client, job);
        if (st.jobDir) {
          const pic = await plotJob(
            st.jobDir,
            path.join(st.jobDir, 'plot.svg'),
            `${job}: loss, gradient norm and learning rates`,
          );
          process.stdout.write(
            `\nLoss, gradient norm and learning rates: ${path.relative(process.cwd(), pic.file) || pic.file}\n`,
          );
        }
      } finally {
        worker.shutdown();
        await running;
        await connection.close();
        if (server) await server.stop();
      }
    });

  program
    .command('server')
    .description('run a local Temporal dev server in the foreground (history in .temporal/dev.sqlite)')
    .option('--port <n>', 'gRPC port', (v) => Number(v), 7233)
    .option('--ui-port <n>', 'web UI port', (v) => Number(v), 8233)
    .option('--db-filename <file>', 'SQLite file', path.join('.temporal', 'dev.sqlite'))
    .action(async (o: { port: number; uiPort: number; dbFilename: string }) => {
      fs.mkdirSync(path.dirname(path.resolve(o.dbFilename)), { recursive: true });
      const server = await startDevServer({ port: o.port, uiPort: o.uiPort, dbFile: o.dbFilename });
      process.stdout.write(
        `Temporal dev server on ${server.address}, UI http://localhost:${o.uiPort}, history in ${server.dbFile}. Ctrl-C stops it.\n`,
      );
      await new Promise<void>((resolve) => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve());
      });
      await server.stop();
    });
  return program;
}

async function main(): Promise<void> {
  const { overrides, rest } = parseCliOverrides(process.argv.slice(2));
  await buildProgram(overrides).parseAsync(rest, { from: 'user' });
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      const cause = (e as Error).cause as Error | undefined;
      if (isUserError(e)) process.stderr.write(`error: ${(e as Error).message}\n`);
      else if (cause?.message) process.stderr.write(`error: ${(e as Error).message}: ${cause.message}\n`);
      else {
        logger.error({ err: e }, 'command failed');
        process.stderr.write(`error: ${(e as Error).message ?? String(e)}\n`);
      }
      process.exit(1);
    },
  );
}
