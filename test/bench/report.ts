/**
 * The bench's output: one row per figure (scenario, our figure, its floor from the same run,
 * ratio, goal, met?), printed as a table and written as JSON with each scenario's details.
 */
import { writeFileSync } from 'node:fs';

/** A goal on a figure: on the ratio to its floor, or on the figure itself. */
export type Goal =
  | { on: 'ratio'; op: '>=' | '<='; value: number }
  | { on: 'figure'; op: '>=' | '<='; value: number };

export interface Row {
  /** Scenario letter and figure, e.g. `(a) join+leave pairs/s`. */
  scenario: string;
  figure: number;
  unit: string;
  /** The same work done bare in the same run (same unit), when there is one. */
  floor?: number;
  goal?: Goal;
  /** Free text shown after the table (sizes, failures). */
  note?: string;
}

export interface RowResult extends Row {
  /** figure / floor. */
  ratio?: number;
  met?: boolean;
}

const check = (x: number, op: '>=' | '<=', v: number) => (op === '>=' ? x >= v : x <= v);

export function evaluate(row: Row): RowResult {
  const ratio = row.floor !== undefined && row.floor > 0 && Number.isFinite(row.figure) ? row.figure / row.floor : undefined;
  let met: boolean | undefined;
  if (row.goal?.on === 'ratio') met = ratio !== undefined && check(ratio, row.goal.op, row.goal.value);
  else if (row.goal?.on === 'figure') met = Number.isFinite(row.figure) && check(row.figure, row.goal.op, row.goal.value);
  return { ...row, ratio, met };
}

function fmt(x: number | undefined): string {
  if (x === undefined) return '';
  if (!Number.isFinite(x)) return 'n/a';
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1000 ? x.toFixed(0) : a >= 100 ? x.toFixed(1) : a >= 10 ? x.toFixed(2) : x.toFixed(3).replace(/\.?0+$/, '') || '0';
}

function goalText(g: Goal | undefined, unit: string): string {
  if (!g) return '';
  return g.on === 'ratio' ? `${g.op} ${g.value}x floor` : `${g.op} ${fmt(g.value)} ${unit}`;
}

/** The table as text lines (fixed-width columns). */
export function table(rows: RowResult[]): string {
  const header = ['scenario', 'ours', 'floor', 'ratio', 'goal', 'met?'];
  const withUnit = (x: number, unit: string) => (Number.isFinite(x) ? `${fmt(x)} ${unit}`.trimEnd() : 'n/a');
  const cells = rows.map((r) => [
    r.scenario,
    withUnit(r.figure, r.unit),
    r.floor === undefined ? '' : withUnit(r.floor, r.unit),
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`,
    goalText(r.goal, r.unit),
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
  const notes = rows.filter((r) => r.note).map((r) => `  ${r.scenario}: ${r.note}`);
  if (notes.length) out.push('', 'notes:', ...notes);
  return out.join('\n');
}

export interface Report {
  meta: Record<string, unknown>;
  rows: RowResult[];
  /** Per scenario: sizes, raw summaries, failures. */
  details: Record<string, unknown>;
  /** Scenarios that could not run (an error, sessions failing): makes the exit code non-zero. */
  errors: { scenario: string; message: string }[];
}

export function writeJson(file: string, report: Report): void {
  // NaN (a figure not measured) is not JSON: write null.
  writeFileSync(file, `${JSON.stringify(report, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
}
