/**
 * `ttt-curriculum plot`: the loss of every stage on one time axis with the stage boundaries
 * marked, the validation loss (fixed samples, timesteps and noise) on the same panel, the
 * gradient norm and both learning rates, drawn from the stages' metrics.jsonl.
 * Vega-Lite compiles the chart, Vega renders it to SVG headless (no browser, no canvas), and
 * resvg (prebuilt binaries from npm) turns the SVG into PNG.
 *
 * Every data point carries an aria-label "<series> stage <s> step <n> = <value>" with the exact
 * value from the metrics file (points are drawn up to POINT_LIMIT rows; lines always; validation
 * points always).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { metricsFile } from '../paths';
import { type MetricsLine, readMetricsFile, type ValidationLine } from '../train/metrics';

/** A step line of a stage's metrics.jsonl (written by ShardRun.commit). */
export type MetricRow = MetricsLine;
/** A validation line of a stage's metrics.jsonl (written by ShardRun when the validation loss is due). */
export type ValidationRow = ValidationLine;

/** Rows above which points are left out (lines only): a 5000-step stage would make a huge SVG. */
export const POINT_LIMIT = 3000;

/** The stage folders of a job in curriculum order ("3s" < "9s" < "18s" ...). */
export function stageNames(jobDirPath: string): string[] {
  if (!fs.existsSync(jobDirPath)) return [];
  return fs
    .readdirSync(jobDirPath)
    .filter((d) => /^\d+s$/.test(d) && fs.existsSync(metricsFile(path.join(jobDirPath, d))))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
}

/** Every line of every stage of a job, step lines and validation lines apart, each in time order. */
export function readJobLines(jobDirPath: string): { steps: MetricRow[]; validation: ValidationRow[] } {
  const steps: MetricRow[] = [];
  const validation: ValidationRow[] = [];
  for (const stage of stageNames(jobDirPath)) {
    const m = readMetricsFile(metricsFile(path.join(jobDirPath, stage)));
    steps.push(...m.steps.map((r) => ({ ...r, stage: r.stage ?? stage })));
    validation.push(...m.validation.map((r) => ({ ...r, stage: r.stage ?? stage })));
  }
  const byTime = (a: { time: string }, b: { time: string }): number => Date.parse(a.time) - Date.parse(b.time);
  return { steps: steps.sort(byTime), validation: validation.sort(byTime) };
}

/** Every step line of every stage of a job, in time order. Throws a UserError naming the bad line. */
export function readJobMetrics(jobDirPath: string): MetricRow[] {
  return readJobLines(jobDirPath).steps;
}

/** Every validation line of every stage of a job, in time order. */
export function readJobValidation(jobDirPath: string): ValidationRow[] {
  return readJobLines(jobDirPath).validation;
}

/**
 * The Vega-Lite spec: three panels (loss with the validation loss, gradient norm, learning
 * rates) sharing the time axis.
 */
export function plotSpec(rows: MetricRow[], title: string, validation: ValidationRow[] = []): Record<string, unknown> {
  const time = timeAxis([...rows, ...validation]);
  const all = [...rows, ...validation].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const stages = [...new Set(all.map((r) => r.stage))];
  const starts = (s: string): number => time.elapsed(all.find((r) => r.stage === s)!);
  const axes: Axes = {
    points: rows.length <= POINT_LIMIT,
    x: {
      field: 'time',
      type: 'quantitative',
      title: `time since training started (${time.unit})`,
      scale: { nice: false },
    },
    color: { field: 'stage', type: 'nominal', sort: stages, title: 'stage' },
    boundaries: stages.map((s) => ({ stage: s, time: starts(s) })),
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    background: 'white',
    data: { values: stepValues(rows, time.elapsed) },
    vconcat: [
      lossPanel(axes, validationValues(validation, time.elapsed)),
      seriesPanel(axes, 'grad_norm', 'gradient norm', { zero: false }, false),
      lrPanel(axes, lrValues(rows, time.elapsed)),
    ],
    resolve: { scale: { x: 'shared', color: 'shared', strokeDash: 'independent' } },
  };
}

/** What every panel shares: the time axis, the stage colours, the stage boundaries, and whether points are drawn. */
interface Axes {
  x: Record<string, unknown>;
  color: Record<string, unknown>;
  boundaries: { stage: string; time: number }[];
  points: boolean;
}

/** One time axis for all stages: wall time since the job's first metrics line, in a unit that suits its length. */
function timeAxis(rows: { time: string }[]): { unit: string; elapsed: (r: { time: string }) => number } {
  const times = rows.map((r) => Date.parse(r.time));
  const t0 = times.length ? Math.min(...times) : 0;
  const span = times.length ? (Math.max(...times) - t0) / 1000 : 0;
  const [unit, perUnit] = span < 600 ? ['s', 1] : span < 36_000 ? ['min', 60] : ['h', 3600];
  return { unit, elapsed: (r) => (Date.parse(r.time) - t0) / 1000 / perUnit };
}

/** The loss and gradient-norm panels' data: one value per step, with the points' aria-labels. */
function stepValues(rows: MetricRow[], elapsed: (r: MetricRow) => number): Record<string, unknown>[] {
  return rows.map((r) => ({
    series: TRAINING,
    stage: r.stage,
    step: r.step,
    time: elapsed(r),
    loss: r.loss,
    grad_norm: r.grad_norm,
    lr: r.lr,
    lr_ssm: r.lr_ssm,
    d_loss: `loss stage ${r.stage} step ${r.step} = ${r.loss}`,
    d_grad_norm: `grad_norm stage ${r.stage} step ${r.step} = ${r.grad_norm}`,
  }));
}

const TRAINING = 'training step';
const VALIDATION = 'validation';

/** The validation points' data: one value per validation line (but those not finite), with the points' aria-labels. */
function validationValues(rows: ValidationRow[], elapsed: (r: ValidationRow) => number): Record<string, unknown>[] {
  return rows
    .filter((r) => r.val_loss !== null)
    .map((r) => ({
      series: VALIDATION,
      stage: r.stage,
      step: r.step,
      time: elapsed(r),
      val_loss: r.val_loss,
      d_val_loss: `val_loss stage ${r.stage} step ${r.step} = ${r.val_loss}`,
    }));
}

/**
 * The loss panel: the single-step training loss (solid line per stage, its points) and the
 * validation loss (dashed line per stage through diamonds), on one log scale.
 */
function lossPanel(axes: Axes, validation: Record<string, unknown>[]) {
  const { x, color } = axes;
  const scale = { type: 'log' };
  const dash = {
    field: 'series',
    type: 'nominal',
    title: 'loss',
    scale: {
      domain: [TRAINING, VALIDATION],
      range: [
        [1, 0],
        [5, 3],
      ],
    },
  };
  const panel = seriesPanel(axes, 'loss', 'loss', scale, true);
  panel.layer[0] = {
    mark: { type: 'line', point: false },
    encoding: { x, y: { field: 'loss', type: 'quantitative', title: 'loss', scale }, color, strokeDash: dash },
  };
  if (validation.length === 0) return panel;
  const y = { field: 'val_loss', type: 'quantitative', scale };
  panel.layer.push(
    {
      data: { values: validation },
      mark: { type: 'line', strokeWidth: 2 },
      encoding: { x, y, color, strokeDash: dash },
    },
    {
      data: { values: validation },
      mark: { type: 'point', shape: 'diamond', filled: true, size: 70 },
      encoding: { x, y, color, description: { field: 'd_val_loss' } },
    },
  );
  return panel;
}

/** The learning-rate panel's data: lr and lr_ssm of every step, one row each. */
function lrValues(rows: MetricRow[], elapsed: (r: MetricRow) => number): Record<string, unknown>[] {
  return rows.flatMap((r) => [
    {
      stage: r.stage,
      step: r.step,
      time: elapsed(r),
      group: 'lr',
      value: r.lr,
      d: `lr stage ${r.stage} step ${r.step} = ${r.lr}`,
    },
    {
      stage: r.stage,
      step: r.step,
      time: elapsed(r),
      group: 'lr_ssm',
      value: r.lr_ssm,
      d: `lr_ssm stage ${r.stage} step ${r.step} = ${r.lr_ssm}`,
    },
  ]);
}

/** Dashed rules at the stage boundaries, with the stage names when `labels`. */
function boundaryLayers(axes: Axes, labels: boolean): unknown[] {
  const { x, boundaries } = axes;
  return [
    { data: { values: boundaries }, mark: { type: 'rule', strokeDash: [4, 4], color: '#888' }, encoding: { x } },
    ...(labels
      ? [
          {
            data: { values: boundaries },
            mark: { type: 'text', align: 'left', dx: 3, dy: -4, baseline: 'bottom', y: 0, color: '#444' },
            encoding: { x, text: { field: 'stage' } },
          },
        ]
      : []),
  ];
}

/** A panel of one field of stepValues() over time: a line per stage, its points, the stage boundaries. */
function seriesPanel(
  axes: Axes,
  field: string,
  titleY: string,
  scale: Record<string, unknown>,
  labels: boolean,
): { width: number; height: number; layer: unknown[] } {
  const { x, color } = axes;
  return {
    width: 900,
    height: 220,
    layer: [
      {
        mark: { type: 'line', point: false },
        encoding: { x, y: { field, type: 'quantitative', title: titleY, scale }, color },
      },
      ...(axes.points
        ? [
            {
              mark: { type: 'point', filled: true, size: 12 },
              encoding: { x, y: { field, type: 'quantitative', scale }, color, description: { field: `d_${field}` } },
            },
          ]
        : []),
      ...boundaryLayers(axes, labels),
    ],
  };
}

/** The learning-rate panel: lr and lr_ssm as dash styles, a line per stage, its points, the stage boundaries. */
function lrPanel(axes: Axes, values: Record<string, unknown>[]) {
  const { x, color } = axes;
  return {
    width: 900,
    height: 160,
    data: { values },
    layer: [
      {
        mark: 'line',
        encoding: {
          x,
          y: { field: 'value', type: 'quantitative', title: 'learning rate' },
          strokeDash: { field: 'group', type: 'nominal', title: 'learning rate' },
          detail: { field: 'stage' },
          color,
        },
      },
      ...(axes.points
        ? [
            {
              mark: { type: 'point', filled: true, size: 8 },
              encoding: { x, y: { field: 'value', type: 'quantitative' }, color, description: { field: 'd' } },
            },
          ]
        : []),
      ...boundaryLayers(axes, false),
    ],
  };
}

interface VegaModule {
  parse(spec: unknown): unknown;
  View: new (runtime: unknown, opts: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void };
}
interface VegaLiteModule {
  compile(spec: unknown): { spec: unknown };
}

// vega and vega-lite ship as ES modules only, and this package is CommonJS: TypeScript would
// compile `import()` into require(), which cannot load them on Node < 20.19. A real dynamic
// import keeps them loadable on every Node this package supports.
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<unknown>;

export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const vega = (await importEsm('vega')) as VegaModule;
  const vl = (await importEsm('vega-lite')) as VegaLiteModule;
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export function svgToPng(svg: string, scale = 2): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  return new Resvg(svg, { fitTo: { mode: 'zoom', value: scale }, font: { loadSystemFonts: true } }).render().asPng();
}

/** Writes the plot of a job to `out` (.svg or .png); returns the number of steps and validation points drawn. */
export async function plotJob(
  jobDirPath: string,
  out: string,
  title = path.basename(jobDirPath),
): Promise<{ file: string; rows: number; validation: number; stages: string[] }> {
  const ext = path.extname(out).toLowerCase();
  if (ext !== '.svg' && ext !== '.png')
    throw new UserError(`cannot write ${out}: the picture is .svg or .png`, {
      kind: 'InvalidInput',
      fix: 'name the output file *.svg or *.png',
    });
  const { steps: rows, validation } = readJobLines(jobDirPath);
  if (rows.length === 0) {
    throw new UserError(`no metrics under ${jobDirPath}`, {
      kind: 'InvalidInput',
      fix: 'plot a job that has trained at least one step (its <stage>/metrics.jsonl files), or pass --dir <job folder>',
    });
  }
  const svg = await renderSvg(plotSpec(rows, title, validation));
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, ext === '.svg' ? svg : svgToPng(svg));
  return {
    file: path.resolve(out),
    rows: rows.length,
    validation: validation.filter((v) => v.val_loss !== null).length,
    stages: [...new Set(rows.map((r) => r.stage))],
  };
}
