/**
 * Tensors saved with torch.save (.pt) rewritten as safetensors by Python's torch
 * (scripts/torch-to-safetensors.py, one process for many files). Pickles are never read here:
 * only torch can read them, and it does so with weights_only=True where it has it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { PACKAGE_ROOT } from '../config/load';
import { UserError } from '../errors';

export const TORCH_SCRIPT = path.join(PACKAGE_ROOT, 'scripts', 'torch-to-safetensors.py');

/** The interpreters tried, in order, when none is given. */
export const DEFAULT_PYTHONS = ['python3', 'python'];

export interface TorchTask {
  src: string;
  dst: string;
  /** The tensor's name in the safetensors file. */
  name: string;
}

export type TorchOutcome = { dst: string; dtype: string; shape: number[] } | { dst: string; error: string };

/** A running converter: torch's version, and a way to convert files one after the other. */
export interface TorchConverter {
  python: string;
  torch: string;
  weightsOnly: boolean;
  convert(task: TorchTask): Promise<TorchOutcome>;
  close(): Promise<void>;
}

/** Starts the converter under one interpreter; resolves once torch is imported, or with why not. */
function tryStart(python: string): Promise<TorchConverter | string> {
  const child = spawn(python, [TORCH_SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => void (stderr += b.toString()));
  const lines = readline.createInterface({ input: child.stdout! });
  const queue: ((line: string | undefined) => void)[] = [];
  const early: string[] = [];
  lines.on('line', (l) => (queue.length > 0 ? queue.shift()!(l) : early.push(l)));
  const nextLine = (): Promise<string | undefined> =>
    early.length > 0 ? Promise.resolve(early.shift()) : new Promise((r) => queue.push(r));
  return new Promise((resolve) => {
    child.once('error', (e) => resolve(`${python}: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
    child.once('exit', (code) => {
      for (const r of queue.splice(0)) r(undefined);
      const last = stderr.trim().split('\n').pop() ?? '';
      resolve(`${python}: exited ${code}${last ? ` (${last})` : ''}`);
    });
    void nextLine().then((hello) => {
      if (hello === undefined) return; // the exit handler resolves
      const h = JSON.parse(hello) as { torch: string; weights_only: boolean };
      resolve(converter(python, child, h, nextLine, () => stderr));
    });
  });
}

function converter(
  python: string,
  child: ChildProcess,
  hello: { torch: string; weights_only: boolean },
  nextLine: () => Promise<string | undefined>,
  stderr: () => string,
): TorchConverter {
  child.removeAllListeners('exit');
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    python,
    torch: hello.torch,
    weightsOnly: hello.weights_only,
    async convert(task) {
      child.stdin!.write(`${JSON.stringify(task)}\n`);
      const line = await nextLine();
      if (line === undefined) throw new Error(`${python} ${TORCH_SCRIPT} stopped: ${stderr().slice(-2000)}`);
      return JSON.parse(line) as TorchOutcome;
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/**
 * Starts the converter with the first interpreter that has torch: `python` if given, else
 * python3, then python. Throws a UserError naming every interpreter tried and why it failed.
 */
export async function startTorchConverter(python?: string): Promise<TorchConverter> {
  const tried: string[] = [];
  for (const p of python ? [python] : DEFAULT_PYTHONS) {
    const r = await tryStart(p);
    if (typeof r !== 'string') return r;
    tried.push(r);
  }
  throw new UserError(
    `reading TTT-Video-DiT's .pt files needs Python with torch, and none was found (tried ${tried.join('; ')})`,
    {
      kind: 'DataError',
      where: 'dataset import',
      fix: 'run it where your TTT-Video-DiT environment is active (e.g. conda activate ttt-video), or pass --python /path/to/python of an environment with torch (pip install torch)',
    },
  );
}
