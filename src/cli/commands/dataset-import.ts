/** `dataset import`: a TTT-Video-DiT precomputed dataset folder (torch .pt files) into ours (safetensors). */
import type { Command } from 'commander';
import { type ImportProgress, type ImportResult, importTttDataset } from '../../data/import';
import { UserError } from '../../errors';
import { progressBar } from '../common';

interface ImportFlags {
  out: string;
  jsonl?: string[];
  python?: string;
}

/** A progress bar on a terminal; otherwise a line at every tenth of the files (and the last). */
function progressDisplay(): { onProgress: (p: ImportProgress) => void; stop: () => void } {
  const bar = process.stderr.isTTY
    ? progressBar(' importing |{bar}| {value}/{total} files | {file} | ETA {eta_formatted}', process.stderr)
    : undefined;
  let started = false;
  return {
    onProgress: (p) => {
      if (bar) {
        if (!started) bar.start(p.total, 0, { file: '' });
        started = true;
        bar.update(p.done, { file: p.file });
      } else if (p.done === p.total || Math.floor((p.done * 10) / p.total) > Math.floor(((p.done - 1) * 10) / p.total))
        process.stderr.write(`imported ${p.done}/${p.total} files (${p.file})\n`);
    },
    stop: () => void (started && bar?.stop()),
  };
}

export function importSummary(r: ImportResult): string {
  const torch = r.torch
    ? ` with torch ${r.torch} (torch.load ${r.weightsOnly ? 'weights_only=True' : 'without weights_only: this torch is older than 1.13'})`
    : '';
  return (
    `imported ${r.samples} samples into ${r.out} in ${r.seconds.toFixed(1)} s: ${r.converted} .pt files converted to .safetensors${torch}, ${r.copied} copied, ${r.kept} kept from an earlier import\n` +
    `use: --training.dataset_path=${r.out} --training.jsonl_paths='${JSON.stringify(r.jsonl)}'\n`
  );
}

async function runImport(from: string, o: ImportFlags): Promise<void> {
  const display = progressDisplay();
  const ac = new AbortController();
  process.once('SIGINT', () =>
    ac.abort(
      new UserError('import interrupted; the files written so far are kept', {
        kind: 'Interrupted',
        fix: 'run the same command again to finish it',
      }),
    ),
  );
  try {
    const r = await importTttDataset({
      from,
      out: o.out,
      ...(o.jsonl ? { jsonl: o.jsonl } : {}),
      python: o.python,
      signal: ac.signal,
      onProgress: display.onProgress,
    });
    display.stop();
    process.stdout.write(importSummary(r));
  } finally {
    display.stop();
  }
}

/** Adds `import` to the `dataset` command. */
export function registerImport(dataset: Command): void {
  dataset
    .command('import <ttt-video-dit-folder>')
    .description(
      "convert a TTT-Video-DiT precomputed dataset (JSONL + torch .pt latents and text embeddings) into ours: .pt -> .safetensors with Python's torch, the JSONL rewritten; idempotent",
    )
    .requiredOption('--out <dir>', 'output folder: the JSONL files, the .safetensors files, import.json')
    .option(
      '--jsonl <file>',
      'a JSONL file, relative to the folder (repeatable; default: every *.jsonl in it)',
      (v: string, prev?: string[]) => [...(prev ?? []), v],
    )
    .option('--python <exe>', 'Python with torch (default: python3, then python)')
    .action(runImport);
}
