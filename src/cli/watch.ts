/** Live progress of a job: one progress bar per stage (cli-progress), or plain lines without a TTY. */
import type { Client } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { formatEta, jobStatus, launcherText, statusLine, type JobStatus } from '../temporal/status';

export interface WatchOptions {
  intervalMs?: number;
  /** Use progress bars (default: when stdout is a TTY). */
  tty?: boolean;
  out?: NodeJS.WritableStream;
  /** Stop watching when this resolves/aborts. */
  signal?: AbortSignal;
}

const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT']);

/** Watches until the job ends (returns its last status). Survives worker restarts and transient errors. */
export async function watchJob(client: Client, job: string, opts: WatchOptions = {}): Promise<JobStatus> {
  const out = opts.out ?? process.stdout;
  const tty = opts.tty ?? Boolean((out as NodeJS.WriteStream).isTTY);
  const interval = opts.intervalMs ?? 1000;
  const rates = new Map<string, { step: number; t: number; rate: number | null }>();
  let multi: cliProgress.MultiBar | undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  let lastLine = '';
  const best = new Map<string, { step: number; loss: number | null }>();
  let last: JobStatus | undefined;
  try {
    for (;;) {
      let s: JobStatus;
      try {
        s = await jobStatus(client, job);
      } catch (e) {
        const line = `${job}: cannot read status (${(e as Error).message.split('\n')[0]}); retrying`;
        if (line !== lastLine) out.write(`${line}\n`);
        lastLine = line;
        await new Promise((r) => setTimeout(r, interval));
        continue;
      }
      // The workflow's progress lags the running shard's heartbeats by up to one shard; between a
      // shard's end and the workflow recording it, a stage can read as less advanced than it was
      // already seen to be. Never show progress going backwards.
      for (const st of s.stages) {
        const m = best.get(st.stage);
        if (m && m.step > st.step) Object.assign(st, { step: m.step, loss: m.loss });
        else best.set(st.stage, { step: st.step, loss: st.loss });
      }
      const cur = s.stages.find((x) => x.stage === s.stage);
      if (cur && cur.step > s.step) Object.assign(s, { step: cur.step, loss: cur.loss });
      last = s;
      const now = Date.now();
      for (const st of s.stages) {
        const r = rates.get(st.stage);
        if (!r) rates.set(st.stage, { step: st.step, t: now, rate: st.stepsPerSecond });
        else if (st.step > r.step) {
          const inst = (st.step - r.step) / ((now - r.t) / 1000);
          rates.set(st.stage, { step: st.step, t: now, rate: r.rate === null ? inst : 0.7 * r.rate + 0.3 * inst });
        }
      }
      if (tty && s.stages.length === 0) {
        // Not planned yet (e.g. no worker has picked the job up): one line until there are stages to draw.
        const line = statusLine(s);
        if (line !== lastLine) out.write(`${line}\n`);
        lastLine = line;
      } else if (tty) {
        if (!multi) {
          multi = new cliProgress.MultiBar(
            {
              format: ' {stage} |{bar}| {value}/{total} steps | loss {loss} | {rate} steps/s | ETA {etaText} {note}',
              hideCursor: true,
              clearOnComplete: false,
              stream: out as NodeJS.WriteStream,
              noTTYOutput: false,
              etaBuffer: 20,
            },
            cliProgress.Presets.shades_classic,
          );
        }
        for (const st of s.stages) {
          const r = rates.get(st.stage);
          const payload = {
            stage: st.stage.padStart(4),
            loss: st.loss === null ? '  -   ' : st.loss.toFixed(4),
            rate: r?.rate ? r.rate.toFixed(2) : '-',
            etaText: st.done ? 'done' : formatEta(r?.rate ? (st.totalSteps - st.step) / r.rate : null),
            note:
              st.stage === s.stage && !st.done
                ? s.worker === 'none'
                  ? '(waiting for a worker)'
                  : s.state && s.state !== 'running'
                    ? `(${s.state})`
                    : launcherText(s.launcher).trim()
                : '',
          };
          let bar = bars.get(st.stage);
          if (!bar) {
            bar = multi.create(Math.max(1, st.totalSteps), st.step, payload);
            bars.set(st.stage, bar);
          }
          bar.setTotal(Math.max(1, st.totalSteps));
          bar.update(st.step, payload);
        }
      } else {
        const r = s.stage ? rates.get(s.stage)?.rate : null;
        const cur = s.stages.find((x) => x.stage === s.stage);
        const speed =
          r && cur && !cur.done && s.status === 'RUNNING'
            ? ` (${r.toFixed(2)} steps/s, ETA ${formatEta((cur.totalSteps - cur.step) / r)})`
            : '';
        const line = statusLine(s) + speed;
        if (line !== lastLine) out.write(`${line}\n`);
        lastLine = line;
      }
      if (TERMINAL.has(s.status) || opts.signal?.aborted) return s;
      await new Promise((r) => setTimeout(r, interval));
    }
  } finally {
    multi?.stop();
    void last;
  }
}
