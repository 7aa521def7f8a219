/**
 * The timeline SVG in a real browser: Debian's chromium (headless, driven by playwright-core,
 * no browser download) loads `GET /sessions/{id}/timeline.svg` of a real measurement from the
 * running service and shows every device's label; a label full of markup characters arrives as
 * text. Skipped, saying why, only where /usr/bin/chromium is missing (.ci/run installs it).
 * Screenshots go to a temporary directory, kept (and named) with KEEP_SCREENSHOTS=1.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SessionTimeline } from '../../subjects/index.js';
import { Measurement } from '../../src/sim/measurement.js';
import { NatsPhoneTransport } from '../../src/sim/nats-transport.js';
import { createSession, setupLobby, step } from '../helpers/measurement.js';
import { startHarness } from '../helpers/service.js';

const CHROMIUM = '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
const keep = process.env.KEEP_SCREENSHOTS === '1';
if (!present) console.warn(`timeline browser test skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);

type Harness = Awaited<ReturnType<typeof startHarness>>;
let h: Harness;
let transport: NatsPhoneTransport;
let browser: Browser;
let shots: string;

describe.skipIf(!present)('timeline SVG - in chromium', () => {
  beforeAll(async () => {
    [h, browser, shots] = await Promise.all([
      startHarness({ NEXT_SPEAKER_DELAY_MS: '50' }),
      chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      }),
      mkdtemp(join(tmpdir(), 'timeline-svg-')),
    ]);
    transport = new NatsPhoneTransport(h.client.nc, { prefix: h.env.prefix });
    await h.client.nc.flush();
  });

  afterAll(async () => {
    await browser?.close();
    await transport?.close();
    await h?.stop();
    if (keep) console.info(`timeline screenshots kept in ${shots}`);
    else if (shots) await rm(shots, { recursive: true, force: true });
  });

  /** Loads the SVG; returns the text of each <text> element that the browser lays out with a size. */
  async function shownTexts(sessionId: string, shot: string): Promise<string[]> {
    const page = await browser.newPage();
    try {
      const res = await page.goto(`${h.app.httpUrl}/sessions/${sessionId}/timeline.svg`);
      expect(res?.status()).toBe(200);
      expect(res?.headers()['content-type']).toMatch(/^image\/svg\+xml/);
      // A malformed document is shown as a parser error page, not as an <svg>.
      expect(await page.evaluate(`[document.documentElement.localName, document.querySelector('parsererror') === null]`)).toEqual(['svg', true]);
      // The whole chart in the viewport (a fullPage screenshot needs an HTML body).
      const size = await page.evaluate<{ width: number; height: number }>(
        `({ width: document.documentElement.width.baseVal.value, height: document.documentElement.height.baseVal.value })`,
      );
      await page.setViewportSize({ width: Math.ceil(size.width), height: Math.ceil(size.height) });
      await page.screenshot({ path: join(shots, shot) });
      // Scripts run in the page (this project has no DOM types), as text.
      return await page.evaluate<string[]>(`[...document.querySelectorAll('text')]
        .filter((t) => { const box = t.getBBox(); return box.width > 0 && box.height > 0; })
        .map((t) => (t.textContent ?? '').replace(/\\s+/g, ' ').trim())`);
    } finally {
      await page.close();
    }
  }

  const timelineOf = async (sessionId: string) =>
    SessionTimeline.parse(await (await fetch(`${h.app.httpUrl}/sessions/${sessionId}/timeline`)).json());

  it('svg - a real 2 x 2 measurement shows every device label, every row and the phases', async () => {
    const r = await new Measurement(transport, { speakers: 2, microphones: 2, timeoutMs: 10_000 }).run();
    expect(r.outcome, r.reason).toBe('completed');
    const t = await timelineOf(r.sessionId!);
    const texts = await shownTexts(r.sessionId!, 'completed.png');
    expect(t.columns).toHaveLength(4);
    for (const c of t.columns) expect(texts.some((x) => x.includes(c.label)), c.label).toBe(true);
    for (const row of t.rows) expect(texts).toContain(`+${row.offset_ms}`);
    for (const phase of ['waiting_ready', 'playing', 'uploading', 'completed']) expect(texts).toContain(phase);
  }, 60_000);

  it('svg - labels and error messages with markup characters are shown as text', async () => {
    const L = await setupLobby(h.client, { speakers: 1, microphones: 1 });
    L.speakers[0]!.slot_label = `Spk <b>"1"</b> & 'co'`;
    const sessionId = await createSession(h.client, L);
    await step(h.client, { subject: 'measurement.start_speaker', device: L.admin, data: { session_id: sessionId } });
    const mic = L.microphones[0]!.device_id;
    await step(h.client, { subject: 'measurement.error', device: mic, data: { session_id: sessionId, error_message: '<img src=x onerror=alert(1)>' } });
    const t = await timelineOf(sessionId);
    const texts = await shownTexts(sessionId, 'error.png');
    // Speaker, microphone and the admin (outside the session: it started the speaker).
    expect(t.columns.map((c) => c.role)).toEqual(['speaker', 'microphone', 'other']);
    for (const c of t.columns) expect(texts.some((x) => x.includes(c.label)), c.label).toBe(true);
    expect(t.columns[0]!.label).toBe(`Spk <b>"1"</b> & 'co' (${L.speakers[0]!.device_id.slice(0, 8)})`);
    expect(texts.some((x) => x.includes(`error device_error from ${t.columns[1]!.name}: <img`))).toBe(true);
    expect(texts.some((x) => x.includes('<img src=x onerror=alert(1)>'))).toBe(true);
  }, 60_000);
});
