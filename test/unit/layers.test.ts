/**
 * The direction of imports: dependency-cruiser checks the rules of .dependency-cruiser.cjs (no
 * cycles; the library never imports the Temporal side; workflows import only their definitions
 * and src/shared; src/io and src/model stay below the rest) on the TypeScript sources.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ROOT, tmpDir } from '../helpers';

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** Runs the depcruise command (ESM-only package) with a rules file; returns the modules cruised and the violations. */
function cruise(dirs: string[], config: string): { totalCruised: number; violations: Violation[] } {
  const bin = path.join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
  const r = spawnSync(process.execPath, [bin, ...dirs, '--config', config, '--output-type', 'json'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  assert.ok(r.stdout, `depcruise printed nothing: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { summary: { totalCruised: number; violations: Violation[] } }).summary;
}

test('imports point one way and form no cycles (.dependency-cruiser.cjs)', () => {
  const r = cruise(['src', 'workflows', 'activities'], '.dependency-cruiser.cjs');
  assert.ok(r.totalCruised > 50, `cruised ${r.totalCruised} modules`);
  assert.deepEqual(
    r.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`),
    [],
  );
});

test('the check sees violations: a rule against an import that exists reports it', () => {
  const rules = path.join(tmpDir('layers'), 'probe.cjs');
  fs.writeFileSync(
    rules,
    `module.exports = ${JSON.stringify({
      forbidden: [{ name: 'probe', severity: 'error', from: { path: '^src/train/' }, to: { path: '^src/io/' } }],
      options: {
        tsConfig: { fileName: 'tsconfig.json' },
        tsPreCompilationDeps: true,
        doNotFollow: { path: 'node_modules' },
      },
    })};\n`,
  );
  const found = cruise(['src/train'], rules).violations.map((v) => v.from);
  assert.ok(found.includes('src/train/model-state.ts'), `probe found: ${found.join(', ')}`);
});
