/**
 * The conversion benchmark's child process: `node convert-child.js FROM OUT DTYPE`. Converts,
 * then prints one JSON line with the result, its peak RSS (getrusage maxrss) and its RSS
 * before the conversion started (Node, the modules).
 */
import { convertDiffusers, type OutputDtype } from '../src/convert/convert';

async function main(): Promise<void> {
  const [from, out, dtype] = process.argv.slice(2) as [string, string, OutputDtype];
  const rssBefore = process.memoryUsage().rss;
  const r = await convertDiffusers({ from, out, dtype });
  process.stdout.write(`${JSON.stringify({ result: r, rssBefore, peakRss: process.resourceUsage().maxRSS * 1024 })}\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
