/**
 * The timeline as a terminal sequence chart: one fixed-width lane for the service and one per
 * device, one line per step (an arrow from the device to the service) or broadcast (from the
 * service to each target), with the offset and the phase on the left and words on the right.
 * Colours only when asked (the CLI asks on a TTY), so piped output has no escape codes.
 */
import type { SessionTimeline, TimelineRow } from '../../subjects/index.js';
import { describeMark, describeRow, namesOf } from './describe.js';

export interface TextOptions {
  color?: boolean;
}

const ANSI = { dim: '2', bold: '1', red: '31', cyan: '36', yellow: '33' } as const;
type Style = keyof typeof ANSI;

/** Glyphs of the chart (see the legend line). */
const G = {
  life: '│',
  line: '─',
  sender: '●',
  into: '◀',
  target: '▶',
  own: '◆',
  trouble: '✖',
} as const;

const SERVICE = 'service';
const MIN_LANE = 10;
const MAX_LANE = 20;
const PHASE_WIDTH = 19;
const OFFSET_WIDTH = 8;

function fit(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`;
}

function center(s: string, width: number): string {
  const t = fit(s, width);
  const left = Math.floor((width - t.length) / 2);
  return ' '.repeat(left) + t + ' '.repeat(width - left - t.length);
}

interface Lane {
  title: string[];
  width: number;
  /** Position of the lifeline inside the lanes area. */
  mid: number;
}

function lanesOf(t: SessionTimeline): { lanes: Lane[]; index: Map<string, number>; width: number } {
  const titles: string[][] = [
    [SERVICE, '', ''],
    ...t.columns.map((c) => [c.name, c.short_id, c.role === 'other' ? (c.admin ? '' : '(other)') : `(${c.role}${c.admin ? ', admin' : ''})`]),
  ];
  const lanes: Lane[] = [];
  let x = 0;
  for (const title of titles) {
    const width = Math.min(MAX_LANE, Math.max(MIN_LANE, ...title.map((s) => s.length + 2)));
    lanes.push({ title, width, mid: x + Math.floor(width / 2) });
    x += width;
  }
  return { lanes, index: new Map(t.columns.map((c, i) => [c.device_id, i + 1])), width: x };
}

/** The lanes part of one row as glyphs. */
function drawRow(row: TimelineRow, lanes: Lane[], index: Map<string, number>, width: number): string {
  const cells: string[] = Array.from({ length: width }, () => ' ');
  for (const l of lanes) cells[l.mid] = G.life;
  const span = (from: number, to: number) => {
    for (let x = Math.min(from, to) + 1; x < Math.max(from, to); x++) cells[x] = G.line;
  };
  const svc = lanes[0]!.mid;
  if (row.kind === 'step') {
    const lane = row.device_id === null ? undefined : index.get(row.device_id);
    if (lane === undefined) cells[svc] = G.own;
    else {
      const mid = lanes[lane]!.mid;
      span(svc, mid);
      cells[svc] = G.into;
      cells[mid] = G.sender;
    }
  } else {
    const targets = row.targets.map((d) => index.get(d)).filter((i): i is number => i !== undefined);
    const far = Math.max(0, ...targets);
    if (far > 0) span(svc, lanes[far]!.mid);
    cells[svc] = G.sender;
    for (const i of targets) cells[lanes[i]!.mid] = G.target;
  }
  for (const d of row.mark?.device_ids ?? []) {
    const i = index.get(d);
    if (i !== undefined) cells[lanes[i]!.mid] = G.trouble;
  }
  return cells.join('');
}

/** Renders the chart; every line ends without trailing spaces. */
export function renderText(t: SessionTimeline, opts: TextOptions = {}): string {
  const paint = (s: string, ...styles: Style[]) =>
    opts.color && styles.length && s ? `\x1b[${styles.map((k) => ANSI[k]).join(';')}m${s}\x1b[0m` : s;
  const names = namesOf(t);
  const { lanes, index, width } = lanesOf(t);
  const steps = t.rows.filter((r) => r.kind === 'step').length;
  const marked = t.rows.filter((r) => r.mark).length;
  const out: string[] = [
    `${paint('Session', 'bold')} ${t.session_id}  job ${t.job_id}  lobby ${t.lobby_id}`,
    `${t.state} (phase ${t.phase}), created ${t.created_at}; ${steps} steps, ${t.rows.length - steps} broadcasts over ${t.duration_ms} ms` +
      (marked ? `; ${paint(`${marked} marked`, 'red')}` : ''),
    '',
  ];
  const left = ' '.repeat(OFFSET_WIDTH + 2 + PHASE_WIDTH + 2);
  const head = ['offset', 'phase after'];
  for (let line = 0; line < 3; line++) {
    const prefix = line === 0 ? `${head[0]!.padStart(OFFSET_WIDTH)}  ${head[1]!.padEnd(PHASE_WIDTH)}  ` : left;
    out.push(paint(prefix, 'dim') + paint(lanes.map((l) => center(l.title[line]!, l.width)).join(''), line === 0 ? 'bold' : 'dim'));
  }
  let lastPhase: string | null = null;
  for (const row of t.rows) {
    const offset = `+${row.offset_ms}`.padStart(OFFSET_WIDTH);
    const phase = fit(row.phase, PHASE_WIDTH).padEnd(PHASE_WIDTH);
    const changed = row.phase !== lastPhase;
    lastPhase = row.phase;
    const glyphs = drawRow(row, lanes, index, width);
    const words = describeRow(row) + (row.mark ? `  !! ${describeMark(row.mark, names)}` : '');
    const style: Style[] = row.mark ? ['red'] : row.kind === 'step' ? ['cyan'] : [];
    out.push(
      `${paint(offset, 'dim')}  ${changed ? paint(phase, 'yellow') : paint(phase, 'dim')}  ${paint(glyphs, ...style)}  ${paint(words, ...style)}`.trimEnd(),
    );
  }
  out.push('', paint(`${G.sender} sender  ${G.into}/${G.target} receiver  ${G.own} the service's own step (deadline, next speaker)  ${G.trouble} trouble`, 'dim'));
  return out.map((l) => l.trimEnd()).join('\n');
}
