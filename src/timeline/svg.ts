/**
 * The timeline as a standalone SVG sequence chart for a browser: a lane per device (and one for
 * the service), one row per step or broadcast with its arrow, offsets and phase bands on the
 * left, words on the right, trouble in red. Hand-built: every piece of text passes through
 * `esc`, since device ids, slot labels and error messages come from clients.
 */
import type { Phase, SessionTimeline, TimelineRow } from '../../subjects/index.js';
import { describeMark, describeRow, namesOf } from './describe.js';

/** XML text and attribute escaping. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const ROW = 24;
const HEAD = 132;
const LANE = 170;
const FIRST_LANE = 300;
/** Room for the words column at least, and a generous width per character of the longest line. */
const WORDS_MIN = 420;
const CHAR = 7.2;
const RED = '#c62828';
const STEP = '#1565c0';
const BROADCAST = '#37474f';

/** Background of each phase's band (light, so arrows and words stay readable). */
const BAND: Record<Phase, string> = {
  idle: '#f5f5f5',
  waiting_ready: '#e3f2fd',
  speaker_downloading: '#e8eaf6',
  starting_recording: '#f3e5f5',
  playing: '#e8f5e9',
  uploading: '#fff8e1',
  speaker_complete: '#e0f2f1',
  failed: '#ffebee',
  completed: '#f1f8e9',
  cancelled: '#efebe9',
};

const n = (v: number) => Math.round(v * 10) / 10;

function arrowHead(x: number, y: number, dir: 1 | -1, color: string): string {
  const p = [`${x},${y}`, `${x - 7 * dir},${y - 4}`, `${x - 7 * dir},${y + 4}`].join(' ');
  return `<polygon points="${p}" fill="${color}"/>`;
}

function cross(x: number, y: number): string {
  return `<path d="M${x - 5},${y - 5}L${x + 5},${y + 5}M${x - 5},${y + 5}L${x + 5},${y - 5}" stroke="${RED}" stroke-width="2.5"/>`;
}

export function renderSvg(t: SessionTimeline): string {
  const names = namesOf(t);
  const laneX = (i: number) => FIRST_LANE + i * LANE;
  const index = new Map(t.columns.map((c, i) => [c.device_id, i + 1]));
  const wordsX = laneX(t.columns.length) + 40;
  const longest = Math.max(0, ...t.rows.map((r) => describeRow(r).length + (r.mark ? describeMark(r.mark, names).length + 3 : 0)));
  const width = Math.ceil(wordsX + Math.max(WORDS_MIN, longest * CHAR + 24));
  const height = HEAD + t.rows.length * ROW + 40;
  const rowY = (i: number) => HEAD + i * ROW + ROW / 2;
  const parts: string[] = [];

  // Phase bands: one rectangle per run of rows in the same phase, named at its first row.
  for (let i = 0; i < t.rows.length; ) {
    const phase = t.rows[i]!.phase;
    let j = i;
    while (j < t.rows.length && t.rows[j]!.phase === phase) j++;
    const y = HEAD + i * ROW;
    parts.push(`<rect class="band" x="0" y="${y}" width="${width}" height="${(j - i) * ROW}" fill="${BAND[phase] ?? '#fafafa'}"/>`);
    parts.push(`<text class="phase" x="90" y="${y + 16}">${esc(phase)}</text>`);
    i = j;
  }

  // Lanes: a header (name, short id, role) and a lifeline.
  const lanes = [
    { x: laneX(0), title: ['service', 'lobby service', ''] },
    ...t.columns.map((c, i) => ({
      x: laneX(i + 1),
      title: [c.name, `(${c.short_id})`, c.role === 'other' ? (c.admin ? 'admin' : 'other') : `${c.role}${c.admin ? ', admin' : ''}`],
    })),
  ];
  for (const l of lanes) {
    parts.push(`<line class="life" x1="${l.x}" y1="${HEAD - 8}" x2="${l.x}" y2="${height - 24}"/>`);
    parts.push(
      `<text class="lane" x="${l.x}" y="${HEAD - 68}" text-anchor="middle"><tspan class="name" x="${l.x}">${esc(l.title[0]!)}</tspan>` +
        `<tspan class="id" x="${l.x}" dy="17"> ${esc(l.title[1]!)}</tspan><tspan class="role" x="${l.x}" dy="15"> ${esc(l.title[2]!)}</tspan></text>`,
    );
  }

  t.rows.forEach((row, i) => parts.push(drawRow(row, rowY(i), laneX, index, wordsX, names)));

  const title = `Session ${t.session_id} (${t.state}, phase ${t.phase})`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<style>.life{stroke:#9e9e9e;stroke-dasharray:4 3}.name{font-weight:bold;font-size:13px}.id,.role{fill:#616161;font-size:11px}` +
      `.phase{fill:#616161;font-style:italic}.offset{fill:#424242;font-variant-numeric:tabular-nums}.words{fill:#212121}.trouble{fill:${RED};font-weight:bold}</style>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="40" fill="#616161">${esc(`job ${t.job_id} · lobby ${t.lobby_id} · created ${t.created_at} · ${t.rows.length} rows over ${t.duration_ms} ms`)}</text>`,
    `<text x="12" y="${HEAD - 8}" fill="#616161">offset ms</text><text x="90" y="${HEAD - 8}" fill="#616161">phase</text>`,
    ...parts,
    `</svg>`,
    '',
  ].join('\n');
}

function drawRow(
  row: TimelineRow,
  y: number,
  laneX: (i: number) => number,
  index: Map<string, number>,
  wordsX: number,
  names: (id: string) => string,
): string {
  const out: string[] = [];
  const svc = laneX(0);
  const color = row.mark ? RED : row.kind === 'step' ? STEP : BROADCAST;
  if (row.kind === 'step') {
    const lane = row.device_id === null ? undefined : index.get(row.device_id);
    if (lane === undefined) {
      out.push(`<path d="M${svc},${y - 7}L${svc + 7},${y}L${svc},${y + 7}L${svc - 7},${y}Z" fill="${color}"/>`);
    } else {
      const x = laneX(lane);
      out.push(`<line x1="${x}" y1="${y}" x2="${svc + 8}" y2="${y}" stroke="${color}" stroke-width="1.6"/>`);
      out.push(arrowHead(svc + 1, y, -1, color), `<circle cx="${x}" cy="${y}" r="4.5" fill="${color}"/>`);
    }
  } else {
    const targets = row.targets.map((d) => index.get(d)).filter((i): i is number => i !== undefined);
    const far = Math.max(0, ...targets);
    if (far > 0) out.push(`<line x1="${svc}" y1="${y}" x2="${laneX(far) - 2}" y2="${y}" stroke="${color}" stroke-width="1.2"/>`);
    out.push(`<circle cx="${svc}" cy="${y}" r="3.5" fill="${color}"/>`);
    for (const i of targets) out.push(arrowHead(laneX(i), y, 1, color));
  }
  for (const d of row.mark?.device_ids ?? []) {
    const i = index.get(d);
    if (i !== undefined) out.push(cross(laneX(i), y));
  }
  const words = describeRow(row);
  const mark = row.mark ? describeMark(row.mark, names) : '';
  const tip = `+${row.offset_ms} ms, ${row.at}: ${words}${mark ? ` - ${mark}` : ''}`;
  out.push(`<text class="offset" x="70" y="${n(y + 4)}" text-anchor="end">+${row.offset_ms}</text>`);
  out.push(
    `<text class="words" x="${wordsX}" y="${n(y + 4)}">${esc(words)}${mark ? `<tspan class="trouble"> ${esc(`✖ ${mark}`)}</tspan>` : ''}</text>`,
  );
  return `<g class="row ${row.kind}"><title>${esc(tip)}</title>${out.join('')}</g>`;
}
