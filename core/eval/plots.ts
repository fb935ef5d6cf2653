import { readFileSync } from 'node:fs';
import * as echarts from 'echarts';
import { Resvg, initWasm } from '@resvg/resvg-wasm';
import { isTrainMetricsKey, runKeys } from '../store-layout';
import type { MetricRecord } from './evaluate';

/**
 * The plots people look at, regenerated after each evaluation: training loss (and its EMA), learning rate,
 * held-out bits/dim, and sample quality (classifier FID, confident share, FID) over steps. Charts are drawn
 * by Apache ECharts' server-side SVG renderer (pure JS) and rasterised to PNG by resvg's WebAssembly build
 * with the DejaVu Sans font shipped on npm, so no native module or system font is needed. The HTML page
 * embeds the same SVG and a table of every evaluation: one self-contained file.
 */
export interface TrainPoint {
  step: number;
  loss: number;
  lr?: number;
}

export interface RunHistory {
  runId: string;
  train: TrainPoint[];
  evals: MetricRecord[];
}

interface HistoryObjects {
  get(key: string): Promise<Uint8Array>;
  list(prefix: string): Promise<string[]>;
  put(key: string, body: Uint8Array | string): Promise<void>;
}

function jsonLines<T>(bytes: Uint8Array): T[] {
  return Buffer.from(bytes)
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as T];
      } catch {
        return []; // a torn line never hides the rest
      }
    });
}

export async function readRunHistory(store: HistoryObjects, runId: string): Promise<RunHistory> {
  const trainKeys = (await store.list(runKeys.metricsPrefix(runId))).filter(isTrainMetricsKey);
  const byStep = new Map<number, TrainPoint>();
  for (const key of trainKeys) {
    for (const p of jsonLines<TrainPoint>(await store.get(key))) {
      if (Number.isFinite(p.step) && Number.isFinite(p.loss)) byStep.set(p.step, p);
    }
  }
  const evals: MetricRecord[] = [];
  for (const key of await store.list(runKeys.evalMetricsPrefix(runId))) {
    if (key.endsWith('.jsonl')) evals.push(...jsonLines<MetricRecord>(await store.get(key)));
  }
  evals.sort((a, b) => a.step - b.step || a.evaluatedAt.localeCompare(b.evaluatedAt));
  return { runId, train: [...byStep.values()].sort((a, b) => a.step - b.step), evals };
}

/** Exponential moving average with bias correction (as TensorBoard's smoothing). */
export function emaSeries(values: number[], decay = 0.98): number[] {
  let avg = 0;
  return values.map((v, i) => {
    avg = decay * avg + (1 - decay) * v;
    return avg / (1 - decay ** (i + 1));
  });
}

/** Latest value per step of a metric (a re-evaluated step shows its newest number). */
function metricSeries(evals: MetricRecord[], metric: MetricRecord['metric']): Array<[number, number]> {
  const byStep = new Map<number, number>();
  for (const r of evals) if (r.metric === metric && typeof r.value === 'number') byStep.set(r.step, r.value);
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]);
}

const WIDTH = 1000;
const PANEL_HEIGHT = 230;

export function renderSvg(h: RunHistory): string {
  const chart = echarts.init(null, null, {
    renderer: 'svg',
    ssr: true,
    width: WIDTH,
    height: PANEL_HEIGHT * 4 + 60,
  });
  const steps = h.train.map((p) => p.step);
  const losses = h.train.map((p) => p.loss);
  const ema = emaSeries(losses);
  const lr = h.train.filter((p) => p.lr !== undefined).map((p) => [p.step, p.lr as number]);
  const bpd = metricSeries(h.evals, 'bits_per_dim');
  const classifierFid = metricSeries(h.evals, 'classifier_fid');
  const confident = metricSeries(h.evals, 'classifier_confident_share');
  const fid = metricSeries(h.evals, 'fid');
  const top = (i: number) => 50 + i * PANEL_HEIGHT;
  const grid = (i: number) => ({ left: 80, right: 80, top: top(i) + 30, height: PANEL_HEIGHT - 80 });
  const title = (i: number, text: string) => ({
    text,
    top: top(i),
    left: 'center',
    textStyle: { fontSize: 14 },
  });
  const xAxis = (i: number) => ({ type: 'value' as const, gridIndex: i, name: 'step', min: 0, nameGap: 8 });
  const positive = losses.length > 0 && losses.every((l) => l > 0);
  chart.setOption({
    animation: false,
    backgroundColor: '#ffffff',
    textStyle: { fontFamily: 'DejaVu Sans' },
    title: [
      { text: `run ${h.runId}`, left: 'center', top: 8 },
      title(0, 'training loss (L_simple) and its EMA'),
      title(1, 'learning rate'),
      title(2, 'bits/dim (variational bound, held-out images)'),
      title(3, 'sample quality: classifier FID / FID (left), confidently classified share (right)'),
    ],
    legend: [
      { data: ['loss', 'loss EMA'], top: top(0) + 22, left: 90 },
      { data: ['classifier FID', 'FID', 'confident share'], top: top(3) + 22, left: 90 },
    ],
    grid: [0, 1, 2, 3].map(grid),
    xAxis: [0, 1, 2, 3].map(xAxis),
    yAxis: [
      { type: positive ? 'log' : 'value', gridIndex: 0, name: 'loss', scale: true },
      { type: 'value', gridIndex: 1, name: 'lr' },
      { type: 'value', gridIndex: 2, name: 'bits/dim', scale: true },
      { type: 'value', gridIndex: 3, name: 'FID', scale: true },
      { type: 'value', gridIndex: 3, name: 'share', min: 0, max: 1, position: 'right' },
    ],
    series: [
      {
        name: 'loss',
        type: 'line',
        xAxisIndex: 0,
        yAxisIndex: 0,
        showSymbol: false,
        lineStyle: { width: 1, opacity: 0.45 },
        data: steps.map((s, i) => [s, losses[i]]),
      },
      {
        name: 'loss EMA',
        type: 'line',
        xAxisIndex: 0,
        yAxisIndex: 0,
        showSymbol: false,
        lineStyle: { width: 2 },
        data: steps.map((s, i) => [s, ema[i]]),
      },
      { name: 'lr', type: 'line', xAxisIndex: 1, yAxisIndex: 1, showSymbol: false, data: lr },
      { name: 'bits/dim', type: 'line', xAxisIndex: 2, yAxisIndex: 2, symbolSize: 7, data: bpd },
      {
        name: 'classifier FID',
        type: 'line',
        xAxisIndex: 3,
        yAxisIndex: 3,
        symbolSize: 7,
        data: classifierFid,
      },
      { name: 'FID', type: 'line', xAxisIndex: 3, yAxisIndex: 3, symbolSize: 7, data: fid },
      {
        name: 'confident share',
        type: 'line',
        xAxisIndex: 3,
        yAxisIndex: 4,
        symbolSize: 7,
        lineStyle: { type: 'dashed' },
        data: confident,
      },
    ],
  });
  const svg = chart.renderToSVGString();
  chart.dispose();
  return svg;
}

let wasmReady: Promise<void> | null = null;
let font: Buffer | null = null;

export async function svgToPng(svg: string): Promise<Uint8Array> {
  wasmReady ??= initWasm(readFileSync(require.resolve('@resvg/resvg-wasm/index_bg.wasm')));
  await wasmReady;
  font ??= readFileSync(require.resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf'));
  const resvg = new Resvg(svg, {
    font: { fontBuffers: [font], defaultFontFamily: 'DejaVu Sans', loadSystemFonts: false },
    background: '#ffffff',
  });
  const rendered = resvg.render();
  const png = rendered.asPng();
  rendered.free();
  resvg.free();
  return png;
}

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

const fmt = (v: number | undefined, digits = 4) =>
  v === undefined ? '' : String(Number(v.toPrecision(digits)));

export function renderHtml(h: RunHistory, svg: string): string {
  // One row per evaluation (same step and settings → same metric-lines object).
  const rows = new Map<string, Partial<Record<MetricRecord['metric'], MetricRecord>>>();
  for (const r of h.evals) {
    const key = `${r.step}|${r.sampler}|${r.samplingSteps}|${r.seed}|${r.evaluatedAt.slice(0, 16)}`;
    const row = rows.get(key) ?? {};
    row[r.metric] = r;
    rows.set(key, row);
  }
  const value = (r: MetricRecord | undefined) => (r && typeof r.value === 'number' ? r.value : undefined);
  const body = [...rows.values()]
    .map((row) => {
      const any = Object.values(row)[0]!;
      const bpd = row.bits_per_dim;
      const sampled = row.classifier_fid ?? row.fid;
      const histogram = row.classifier_class_histogram?.value;
      return `<tr><td>${any.step}</td><td>${bpd ? `${fmt(value(bpd))} ± ${fmt(bpd.stdErr, 2)}` : ''}</td><td>${fmt(
        value(row.classifier_fid),
      )}</td><td>${fmt(value(row.classifier_confident_share), 3)}</td><td>${
        Array.isArray(histogram) ? histogram.join(' ') : ''
      }</td><td>${fmt(value(row.fid))}</td><td>${
        row.kid ? `${fmt(value(row.kid), 3)} ± ${fmt(row.kid.stdErr, 2)}` : ''
      }</td><td>${sampled ? `${sampled.sampler} ${sampled.samplingSteps}` : ''}</td><td>${
        sampled?.sampleCount ?? ''
      }</td><td>${any.seed}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(h.runId)}: training and evaluation</title>
<style>body{font-family:'DejaVu Sans',sans-serif;margin:20px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}</style></head>
<body><h1>${escape(h.runId)}</h1>
<p>${h.train.length} training steps recorded, ${rows.size} evaluations. "Classifier FID" is a Fréchet distance in the
feature space of this project's small classifier trained on the dataset's labels: compare it across runs on the
same dataset, never with published (Inception) FIDs.</p>
${svg}
<h2>Evaluations</h2>
<table><tr><th>step</th><th>bits/dim ± s.e.</th><th>classifier FID</th><th>confident share</th>
<th>class histogram</th><th>FID</th><th>KID ± s.e.</th><th>sampler</th><th>samples</th><th>seed</th></tr>
${body}
</table></body></html>
`;
}

/** Reads the run's history and rewrites its PNG and HTML plots; returns their keys. */
export async function regeneratePlots(
  store: HistoryObjects,
  runId: string,
): Promise<{ png: string; html: string; history: RunHistory }> {
  const history = await readRunHistory(store, runId);
  const svg = renderSvg(history);
  const keys = runKeys.plots(runId);
  await store.put(keys.png, await svgToPng(svg));
  await store.put(keys.html, renderHtml(history, svg));
  return { ...keys, history };
}
