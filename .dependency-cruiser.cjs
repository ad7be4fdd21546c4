/**
 * The layers and the direction of imports (checked by test/unit/layers.test.ts and `npm run lint`).
 *
 *   workflows/           deterministic orchestration: imports only workflows/definitions and src/shared/
 *   activities/, src/temporal/, src/cli/, src/index.ts   the Temporal side and entry points: may use the library
 *   src/ (the rest)      the library: never imports the Temporal side, the CLI or @temporalio/*
 *   src/shared/          plain types and pure functions shared with the workflow sandbox: imports nothing
 *   src/io/              tensor file formats: below checkpoint, data, model and convert
 */
const TEMPORAL_SIDE = '^(workflows|activities)/|^src/(temporal|cli)/|^src/index\\.ts$';
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycles hide which module owns a concept.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'library-not-temporal',
      severity: 'error',
      comment: 'The library runs without Temporal (unit tests, `ttt-curriculum train`, the training child).',
      from: { path: '^src/', pathNot: '^src/(temporal|cli)/|^src/index\\.ts$' },
      to: { path: [TEMPORAL_SIDE, '@temporalio/'] },
    },
    {
      name: 'workflows-only-definitions-and-shared',
      severity: 'error',
      comment: 'Workflow code is replayed in a sandbox: only its definitions, shared plain types and the SDK.',
      from: { path: '^workflows/' },
      to: { pathNot: ['^workflows/', '^src/shared/', '@temporalio/(workflow|common)'] },
    },
    {
      name: 'shared-imports-nothing',
      severity: 'error',
      from: { path: '^src/shared/' },
      to: { pathNot: '^src/shared/' },
    },
    {
      name: 'io-below-the-rest',
      severity: 'error',
      comment: 'File formats know nothing of checkpoints, data, models or conversion.',
      from: { path: '^src/io/' },
      to: { path: '^src/(checkpoint|data|model|convert|train|config|optim|diffusion)/' },
    },
    {
      name: 'model-takes-plain-dimensions',
      severity: 'error',
      comment: 'The model is a function of tensors and plain dimensions, not of the TOML schema.',
      from: { path: '^src/model/' },
      to: { path: '^src/(config|data|train|checkpoint|convert)/' },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
  },
};
