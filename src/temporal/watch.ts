/** Live progress of a job: one progress bar per stage (cli-progress), or plain lines without a TTY. */
import type { Client } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { formatEta, type JobStatus, jobStatus, launcherText, type StageStatusLine, statusLine } from './status';

export interface WatchOptions {
  intervalMs?: number;
  /** Use progress bars (default: when stdout is a TTY). */
  tty?: boolean;
  out?: NodeJS.WritableStream;
  /** Stop watching when this resolves/aborts. */
  signal?: AbortSignal;
}

const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT']);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Watches until the job ends (returns its last status). Survives worker restarts and transient errors. */
export async function watchJob(client: Client, job: string, opts: WatchOptions = {}): Promise<JobStatus> {
  const out = opts.out ?? process.stdout;
  const view = new WatchView(out, opts.tty ?? Boolean((out as NodeJS.WriteStream).isTTY));
  const interval = opts.intervalMs ?? 1000;
  try {
    for (;;) {
      let s: JobStatus;
      try {
        s = await jobStatus(client, job);
      } catch (e) {
        view.line(`${job}: cannot read status (${(e as Error).message.split('\n')[0]}); retrying`);
        await sleep(interval);
        continue;
      }
      view.show(s);
      if (TERMINAL.has(s.status) || opts.signal?.aborted) return s;
      await sleep(interval);
    }
  } finally {
    view.stop();
  }
}

/** What a watch has seen so far, and how it draws the next status. */
class WatchView {
  /** Smoothed steps per second of each stage, from the steps seen between polls. */
  private readonly rates = new Map<string, { step: number; t: number; rate: number | null }>();
  /** The furthest step (and its loss) seen of each stage. */
  private readonly best = new Map<string, { step: number; loss: number | null }>();
  private readonly bars = new Map<string, cliProgress.SingleBar>();
  private multi: cliProgress.MultiBar | undefined;
  private lastLine = '';

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly tty: boolean,
  ) {}

  /** Writes a line unless it repeats the last one. */
  line(text: string): void {
    if (text !== this.lastLine) this.out.write(`${text}\n`);
    this.lastLine = text;
  }

  show(s: JobStatus): void {
    this.neverBackwards(s);
    this.measure(s, Date.now());
    // Not planned yet (e.g. no worker has picked the job up): one line until there are stages to draw.
    if (this.tty && s.stages.length === 0) this.line(statusLine(s));
    else if (this.tty) this.drawBars(s);
    else this.line(statusLine(s) + this.speedText(s));
  }

  stop(): void {
    this.multi?.stop();
  }

  /**
   * The workflow's progress lags the running shard's heartbeats by up to one shard; between a
   * shard's end and the workflow recording it, a stage can read as less advanced than it was
   * already seen to be. Never show progress going backwards.
   */
  private neverBackwards(s: JobStatus): void {
    for (const st of s.stages) {
      const m = this.best.get(st.stage);
      if (m && m.step > st.step) Object.assign(st, { step: m.step, loss: m.loss });
      else this.best.set(st.stage, { step: st.step, loss: st.loss });
    }
    const cur = s.stages.find((x) => x.stage === s.stage);
    if (cur && cur.step > s.step) Object.assign(s, { step: cur.step, loss: cur.loss });
  }

  private measure(s: JobStatus, now: number): void {
    for (const st of s.stages) {
      const r = this.rates.get(st.stage);
      if (!r) this.rates.set(st.stage, { step: st.step, t: now, rate: st.stepsPerSecond });
      else if (st.step > r.step) {
        const inst = (st.step - r.step) / ((now - r.t) / 1000);
        this.rates.set(st.stage, { step: st.step, t: now, rate: r.rate === null ? inst : 0.7 * r.rate + 0.3 * inst });
      }
    }
  }

  /** " (1.20 steps/s, ETA 8m)" of the running stage, when known. */
  private speedText(s: JobStatus): string {
    const r = s.stage ? this.rates.get(s.stage)?.rate : null;
    const cur = s.stages.find((x) => x.stage === s.stage);
    return r && cur && !cur.done && s.status === 'RUNNING'
      ? ` (${r.toFixed(2)} steps/s, ETA ${formatEta((cur.totalSteps - cur.step) / r)})`
      : '';
  }

  private drawBars(s: JobStatus): void {
    this.multi ??= new cliProgress.MultiBar(
      {
        format: ' {stage} |{bar}| {value}/{total} steps | loss {loss} | {rate} steps/s | ETA {etaText} {note}',
        hideCursor: true,
        clearOnComplete: false,
        stream: this.out as NodeJS.WriteStream,
        noTTYOutput: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    for (const st of s.stages) {
      const payload = this.barPayload(s, st);
      let bar = this.bars.get(st.stage);
      if (!bar) {
        bar = this.multi.create(Math.max(1, st.totalSteps), st.step, payload);
        this.bars.set(st.stage, bar);
      }
      bar.setTotal(Math.max(1, st.totalSteps));
      bar.update(st.step, payload);
    }
  }

  private barPayload(s: JobStatus, st: StageStatusLine): Record<string, string> {
    const r = this.rates.get(st.stage);
    const running = st.stage === s.stage && !st.done;
    const waiting = s.worker === 'none' ? '(waiting for a worker)' : '';
    const state = s.state && s.state !== 'running' ? `(${s.state})` : '';
    // Where the running shard runs when that is a Slurm job: "(slurm job 1234 RUNNING)".
    const where = launcherText(s.launcher).trim();
    return {
      stage: st.stage.padStart(4),
      loss: st.loss === null ? '  -   ' : st.loss.toFixed(4),
      rate: r?.rate ? r.rate.toFixed(2) : '-',
      etaText: st.done ? 'done' : formatEta(r?.rate ? (st.totalSteps - st.step) / r.rate : null),
      note: running ? waiting || state || where : '',
    };
  }
}
