/**
 * Size figures of the code base, for reviews of its structure: the longest functions and the
 * largest files of the library and the Temporal side (src/, workflows/, activities/).
 *
 *   node dist/bench/code-stats.js [ROOT] [--top N]
 *
 * Import cycles come from dependency-cruiser (`npx depcruise src workflows activities`), repeated
 * blocks from the tool library's `duplicates`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

interface Sized {
  where: string;
  lines: number;
}

function walk(dir: string, out: string[]): void {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
}

/** Every function-like node with a body: declarations, methods, arrows and function expressions. */
function functions(file: string, root: string): Sized[] {
  const text = fs.readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out: Sized[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isFunctionLike(n) && 'body' in n && n.body) {
      const start = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
      const end = sf.getLineAndCharacterOfPosition(n.getEnd()).line + 1;
      const name = (n as ts.FunctionLikeDeclaration).name?.getText(sf) ?? '(anonymous)';
      out.push({ where: `${path.relative(root, file)}:${start} ${name}`, lines: end - start + 1 });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

function main(): void {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 5;
  const root = path.resolve(args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--top') ?? '.');
  const files: string[] = [];
  for (const d of ['src', 'workflows', 'activities']) walk(path.join(root, d), files);
  const fns = files.flatMap((f) => functions(f, root)).sort((a, b) => b.lines - a.lines);
  const sizes = files
    .map((f) => ({ where: path.relative(root, f), lines: fs.readFileSync(f, 'utf8').split('\n').length }))
    .sort((a, b) => b.lines - a.lines);
  const show = (title: string, xs: Sized[]): void => {
    process.stdout.write(`${title}\n`);
    for (const x of xs.slice(0, top)) process.stdout.write(`  ${String(x.lines).padStart(5)}  ${x.where}\n`);
  };
  process.stdout.write(`${files.length} files, ${sizes.reduce((a, s) => a + s.lines, 0)} lines\n`);
  show('longest functions (lines)', fns);
  show('largest files (lines)', sizes);
  process.stdout.write(`functions over 60 lines: ${fns.filter((f) => f.lines > 60).length}\n`);
}

main();
