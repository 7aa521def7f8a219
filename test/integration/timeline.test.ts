/**
 * The session timeline against real sessions on the in-process service: `GET
 * /sessions/{id}/timeline` (JSON), `.../timeline.svg`, and `npm run timeline` (the CLI, over HTTP
 * and straight from the database). A whole app-like measurement, a deadline that fires and an
 * error a device reports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventName, HttpHeader, SessionFailure, SessionTimeline, type TimelineRow } from '../../subjects/index.js';
import { Measurement } from '../../src/sim/measurement.js';
import { NatsPhoneTransport } from '../../src/sim/nats-transport.js';
import { timelineCli } from '../../src/timeline/cli.js';
import { waitFor } from '../helpers/infra.js';
import { createSession, micIds, setupLobby, step } from '../helpers/measurement.js';
import { startHarness } from '../helpers/service.js';

type Harness = Awaited<ReturnType<typeof startHarness>>;
const TOKEN = 'timeline-test-token';

let h: Harness;
let locked: Harness;
let transport: NatsPhoneTransport;
/** The session of a completed 2 x 2 measurement. */
let completed: { sessionId: string; lobbyId: string };

beforeAll(async () => {
  [h, locked] = await Promise.all([startHarness({ NEXT_SPEAKER_DELAY_MS: '50' }), startHarness({ HTTP_AUTH_TOKEN: TOKEN })]);
  transport = new NatsPhoneTransport(h.client.nc, { prefix: h.env.prefix });
  await h.client.nc.flush();
  const r = await new Measurement(transport, { speakers: 2, microphones: 2, timeoutMs: 10_000 }).run();
  expect(r.outcome, r.reason).toBe('completed');
  completed = { sessionId: r.sessionId!, lobbyId: r.lobbyId! };
});

afterAll(async () => {
  await transport?.close();
  await Promise.all([h?.stop(), locked?.stop()]);
});

async function getTimeline(sessionId: string, base = h.app.httpUrl, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}/sessions/${sessionId}/timeline`, { headers });
  return { status: r.status, type: r.headers.get('content-type'), body: (await r.json()) as any };
}

const broadcasts = (rows: TimelineRow[]) => rows.filter((r): r is Extract<TimelineRow, { kind: 'broadcast' }> => r.kind === 'broadcast');
const steps = (rows: TimelineRow[]) => rows.filter((r): r is Extract<TimelineRow, { kind: 'step' }> => r.kind === 'step');

describe('timeline - a completed measurement', () => {
  it('timeline - JSON lists the devices, every step and every broadcast of the session in order', async () => {
    const r = await getTimeline(completed.sessionId);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/json/);
    const t = SessionTimeline.parse(r.body);
    expect(t).toMatchObject({ session_id: completed.sessionId, lobby_id: completed.lobbyId, state: 'completed', phase: 'completed' });
    // Speakers, then microphones (the admin is microphone-1), each with its slot's name.
    expect(t.columns.map((c) => [c.role, c.name, c.admin])).toEqual([
      ['speaker', 'Loudspeaker 1', false],
      ['speaker', 'Loudspeaker 2', false],
      ['microphone', 'microphone-1', true],
      ['microphone', 'microphone-2', false],
    ]);
    for (const c of t.columns) expect(c.label).toBe(`${c.name} (${c.device_id.slice(0, 8)})`);

    // Every broadcast the event log holds for the session, once, in id order.
    const admin = t.columns.find((c) => c.admin)!.device_id;
    const logged = (await h.client.call('lobby.events', admin, { lobby_id: completed.lobbyId, limit: 1000 })).events.filter(
      (e) => e.payload.session_id === completed.sessionId,
    );
    expect(logged.length).toBeGreaterThan(20);
    expect(broadcasts(t.rows).map((b) => b.id)).toEqual(logged.map((e) => e.id));
    expect(broadcasts(t.rows).map((b) => b.event)).toEqual(logged.map((e) => e.type));

    // Steps: created by the admin, then the app's steps; 2 cycles of ready x 3, 2 recordings each.
    const s = steps(t.rows);
    expect(s[0]).toMatchObject({ step: 'create_session', device_id: admin, phase_before: 'idle', phase: 'idle' });
    const count = (name: string) => s.filter((x) => x.step === name).length;
    expect([count('start_speaker'), count('ready'), count('recording_uploaded'), count('playback_complete')]).toEqual([1, 6, 4, 2]);
    // The second speaker came from the service itself.
    expect(s.filter((x) => x.step === 'tick').map((x) => x.detail)).toEqual([{ fired: 'next_speaker', current_speaker_index: 1 }]);
    expect(t.rows.every((x) => x.mark === null)).toBe(true);

    // Offsets never go back, and each phase_update sits in the phase it announces: the merge of
    // steps and broadcasts put every broadcast after the step that caused it.
    const offsets = t.rows.map((x) => x.offset_ms);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(t.duration_ms).toBe(offsets.at(-1));
    const updates = broadcasts(t.rows).filter((b) => b.event === EventName['measurement.phase_update']);
    expect(updates.length).toBeGreaterThan(8);
    for (const u of updates) {
      // The last upload passes through speaker_complete to completed in one step.
      const announced = u.data.phase === 'speaker_complete' && u.phase === 'completed' ? 'completed' : u.data.phase;
      expect(u.phase, `#${u.id}`).toBe(announced);
    }
    // Each start_measurement follows the step that started the speaker.
    t.rows.forEach((row, i) => {
      if (row.kind !== 'broadcast' || row.event !== EventName['measurement.start_measurement']) return;
      const before = steps(t.rows.slice(0, i)).at(-1)!;
      expect(['start_speaker', 'tick']).toContain(before.step);
    });
    expect(t.rows.at(-1)!.phase).toBe('completed');
  });

  it('timeline - unknown or malformed session ids are 404 session_not_found', async () => {
    for (const id of [crypto.randomUUID(), 'not-a-uuid']) {
      for (const suffix of ['timeline', 'timeline.svg']) {
        const r = await fetch(`${h.app.httpUrl}/sessions/${id}/${suffix}`);
        expect(r.status, `${id}/${suffix}`).toBe(404);
        expect(((await r.json()) as { error: { code: string } }).error.code).toBe('session_not_found');
      }
    }
  });

  it('timeline - HTTP_AUTH_TOKEN guards both routes like the other paths', async () => {
    // The locked service has no such session: with the token the answer is 404, without it 401.
    const id = crypto.randomUUID();
    for (const suffix of ['timeline', 'timeline.svg']) {
      const url = `${locked.app.httpUrl}/sessions/${id}/${suffix}`;
      expect((await fetch(url)).status).toBe(401);
      expect((await fetch(url, { headers: { [HttpHeader.internalToken]: `${TOKEN}x` } })).status).toBe(401);
      expect((await fetch(url, { headers: { [HttpHeader.internalToken]: TOKEN } })).status).toBe(404);
      expect((await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    }
  });

  it('timeline - /openapi.json documents both routes with their media types and the JSON schema', async () => {
    const doc = (await (await fetch(`${h.app.httpUrl}/openapi.json`)).json()) as any;
    const json = doc.paths['/sessions/{session_id}/timeline'].get;
    expect(json.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/SessionTimeline' });
    expect(json.parameters[0]).toMatchObject({ name: 'session_id', in: 'path', required: true });
    expect(json.responses['4XX']).toBeDefined();
    const svg = doc.paths['/sessions/{session_id}/timeline.svg'].get;
    expect(Object.keys(svg.responses['200'].content)).toEqual(['image/svg+xml']);
    expect(doc.components.schemas.SessionTimeline.properties.rows.type).toBe('array');
  });

  it('timeline - the SVG is image/svg+xml and names every device', async () => {
    const r = await fetch(`${h.app.httpUrl}/sessions/${completed.sessionId}/timeline.svg`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
    const svg = await r.text();
    expect(svg.startsWith('<?xml')).toBe(true);
    const t = SessionTimeline.parse((await getTimeline(completed.sessionId)).body);
    for (const c of t.columns) expect(svg).toContain(c.name);
    expect(svg.match(/<g class="row /g)).toHaveLength(t.rows.length);
  });
});

describe('timeline - trouble', () => {
  it('timeline - a deadline that fired is marked with the devices it waited for', async () => {
    const L = await setupLobby(h.client, { speakers: 1, microphones: 2 });
    const sessionId = await createSession(h.client, L, { timeouts: { ready_ms: 150 } });
    await step(h.client, { subject: 'measurement.start_speaker', device: L.admin, data: { session_id: sessionId } });
    await step(h.client, { subject: 'measurement.ready', device: L.speakers[0]!.device_id, data: { session_id: sessionId } });
    await step(h.client, { subject: 'measurement.ready', device: micIds(L)[0]!, data: { session_id: sessionId } });
    const t = await waitFor(async () => {
      const body = SessionTimeline.parse((await getTimeline(sessionId)).body);
      return body.phase === 'failed' ? body : undefined;
    });
    const tick = steps(t.rows).find((s) => s.step === 'tick')!;
    expect(tick.device_id).toBeNull();
    expect(tick.mark).toEqual({ kind: 'deadline', code: SessionFailure.timeout, device_ids: [micIds(L)[1]], message: null });
    expect(tick).toMatchObject({ phase_before: 'waiting_ready', phase: 'failed' });
    // The measurement.error broadcast that followed names the same device.
    const error = broadcasts(t.rows).find((b) => b.event === EventName['measurement.error'])!;
    expect(t.rows.indexOf(error)).toBeGreaterThan(t.rows.indexOf(tick));
    expect(error.mark).toMatchObject({ kind: 'error', code: SessionFailure.timeout, device_ids: [micIds(L)[1]] });
    // The admin (not in the session) has a column: it sent start_speaker and got the "(all)" error.
    expect(t.columns.map((c) => c.role)).toEqual(['speaker', 'microphone', 'microphone', 'other']);
    expect(t.columns[3]).toMatchObject({ device_id: L.admin, name: 'admin', admin: true });
    expect(error.targets).toContain(L.admin);
  });

  it('timeline - an error a device reports is marked with that device and its code', async () => {
    const L = await setupLobby(h.client, { speakers: 1, microphones: 1 });
    const sessionId = await createSession(h.client, L);
    await step(h.client, { subject: 'measurement.start_speaker', device: L.admin, data: { session_id: sessionId } });
    const mic = micIds(L)[0]!;
    await step(h.client, { subject: 'measurement.error', device: mic, data: { session_id: sessionId, error_code: 'mic_busy', error_message: 'microphone in use <by> "another" app' } });
    const t = SessionTimeline.parse((await getTimeline(sessionId)).body);
    const reported = steps(t.rows).find((s) => s.step === 'error')!;
    expect(reported).toMatchObject({ device_id: mic, phase: 'failed' });
    expect(reported.mark).toEqual({ kind: 'error', code: 'mic_busy', device_ids: [mic], message: 'microphone in use <by> "another" app' });
    // The SVG carries the message escaped (it stays well-formed XML).
    const svg = await (await fetch(`${h.app.httpUrl}/sessions/${sessionId}/timeline.svg`)).text();
    expect(svg).toContain('microphone in use &lt;by&gt; &quot;another&quot; app');
    expect(svg).not.toContain('<by>');
  });
});

describe('timeline - npm run timeline', () => {
  /** Runs the CLI in-process, output piped (not a TTY). */
  async function cli(args: string[], env: Record<string, string> = {}) {
    let stdout = '';
    let stderr = '';
    const code = await timelineCli(args, {
      env,
      stdout: { write: (s: string) => (stdout += s), isTTY: false },
      stderr: { write: (s: string) => (stderr += s) },
    });
    return { code, stdout, stderr };
  }

  it('cli - over HTTP and from DATABASE_URL it prints the same chart, without colour codes when piped', async () => {
    const t = SessionTimeline.parse((await getTimeline(completed.sessionId)).body);
    const viaHttp = await cli([completed.sessionId, '--url', h.app.httpUrl]);
    const viaDb = await cli([completed.sessionId], { DATABASE_URL: h.env.databaseUrl });
    expect(viaDb.stdout).toBe(viaHttp.stdout);
    expect(viaHttp.stdout).not.toContain('\x1b[');
    const lines = viaHttp.stdout.split('\n');
    for (const c of t.columns) {
      expect(lines.some((l) => l.includes(c.name.slice(0, 12))), c.name).toBe(true);
      expect(lines.some((l) => l.includes(c.short_id)), c.short_id).toBe(true);
    }
    // One line per row, each with its offset.
    for (const row of t.rows) expect(lines.some((l) => l.trimStart().startsWith(`+${row.offset_ms} `))).toBe(true);
    expect(lines.filter((l) => /^\s+\+\d+ /.test(l))).toHaveLength(t.rows.length);
  });

  it('cli - --json prints the HTTP JSON; an unknown session exits 1 with a message', async () => {
    const json = await cli([completed.sessionId, '--json', '--url', h.app.httpUrl]);
    expect(JSON.parse(json.stdout)).toEqual((await getTimeline(completed.sessionId)).body);
    const missing = await cli([crypto.randomUUID(), '--url', h.app.httpUrl]);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toMatch(/^timeline: session not found/);
    const fromDb = await cli([crypto.randomUUID()], { DATABASE_URL: h.env.databaseUrl });
    expect(fromDb.stderr).toMatch(/^timeline: session not found/);
    const refused = await cli([crypto.randomUUID(), '--url', locked.app.httpUrl]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/wants its token/);
    const withToken = await cli([crypto.randomUUID(), '--url', locked.app.httpUrl], { HTTP_AUTH_TOKEN: TOKEN });
    expect(withToken.stderr).toMatch(/session not found/);
    expect((await cli([])).code).toBe(2);
  });
});
