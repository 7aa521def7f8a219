/**
 * `npm run replay` (src/replay/cli.ts, run in-process) against the service's real stream and
 * database: a lobby's history in order (`--from`, `--json`), and `--rebuild-stream` filling an
 * empty stream of another prefix with exactly what the relay published, refusing a stream that
 * holds messages or a prefix a service still serves.
 */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Header, type Envelope } from '../../subjects/index.js';
import { replayCli } from '../../src/replay/cli.js';
import { natsUrl, uniqueId, waitFor, withPgClient } from '../helpers/infra.js';
import { lobbyWith } from '../helpers/lobby.js';
import { deleteStream, startHarness } from '../helpers/service.js';

type Harness = Awaited<ReturnType<typeof startHarness>>;
let h: Harness;
let nc: NatsConnection;
let a: Awaited<ReturnType<typeof lobbyWith>>;
let b: Awaited<ReturnType<typeof lobbyWith>>;
/** Streams this file creates besides the harness's. */
const extraStreams: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  nc = await connect({ servers: natsUrl(), noAsyncTraces: true });
  a = await lobbyWith(h.client, 2);
  b = await lobbyWith(h.client, 1);
  for (let i = 0; i < 3; i++) await h.client.call('lobby.step_update', a.admin, { lobby_id: a.lobby.lobby_id, step_index: i });
  await h.client.call('lobby.step_update', b.admin, { lobby_id: b.lobby.lobby_id, step_index: 5 });
  // 6 events of A (created, 2 joins, 3 steps), 3 of B. The relay publishes after each commit:
  // wait until the stream holds the whole log.
  await waitFor(async () => (await jetstreamManager(nc)).streams.info(h.env.stream).then((i) => i.state.messages === 9));
});

afterAll(async () => {
  for (const stream of extraStreams) await deleteStream({ stream }).catch(() => undefined);
  await nc?.close();
  await h?.stop();
});

async function replay(args: string[], env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await replayCli(args, {
    env: { NATS_URL: natsUrl(), NATS_SUBJECT_PREFIX: h.env.prefix, NATS_STREAM: h.env.stream, ...env },
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr, lines: stdout.split('\n').filter(Boolean) };
}

const logOf = async (lobbyId: string, admin: string) =>
  (await h.client.call('lobby.events', admin, { lobby_id: lobbyId, limit: 1000 })).events;

describe('replay - a lobby from the stream', () => {
  it('replay - --json prints the lobby\'s envelopes in id order, exactly its event log, no other lobby', async () => {
    const log = await logOf(a.lobby.lobby_id, a.admin);
    expect(log).toHaveLength(6);
    const r = await replay(['--lobby', a.lobby.lobby_id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const envelopes = r.lines.map((l) => JSON.parse(l) as Envelope);
    expect(envelopes.map((e) => [e.id, e.event, e.data])).toEqual(log.map((e) => [e.id, e.type, e.payload]));
    expect(envelopes.every((e) => e.lobby_id === a.lobby.lobby_id)).toBe(true);
    expect(r.stderr).toContain(`6 event(s) of lobby ${a.lobby.lobby_id}`);
  });

  it('replay - readable lines; --from starts at the first id >= it', async () => {
    const log = await logOf(a.lobby.lobby_id, a.admin);
    const from = log[3]!.id;
    const r = await replay(['--lobby', a.lobby.lobby_id, '--from', String(from)]);
    expect(r.code).toBe(0);
    expect(r.lines.map((l) => l.split(/\s+/)[0])).toEqual(log.slice(3).map((e) => `#${e.id}`));
    expect(r.lines[0]).toContain('lobby.step_update');
    // To the two guests (not to the admin who sent it).
    expect(r.lines[0]).toMatch(/→ 2 \[guest1-d,guest2-d\]/);
    expect(r.lines[0]).toContain('step_index=0');
    // Nothing of the lobby that far on, and a lobby the stream never saw: no lines, exit 0.
    expect((await replay(['--lobby', a.lobby.lobby_id, '--from', String(log.at(-1)!.id + 1)])).lines).toEqual([]);
    expect((await replay(['--lobby', crypto.randomUUID()])).lines).toEqual([]);
  });

  it('replay - a missing stream and bad arguments are refused', async () => {
    const missing = await replay(['--lobby', a.lobby.lobby_id], { NATS_STREAM: 'NO_SUCH_STREAM_X' });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/stream NO_SUCH_STREAM_X not found/);
    for (const args of [[], ['--lobby', 'x', '--rebuild-stream'], ['--lobby', 'x', '--from', 'abc'], ['--rebuild-stream', '--json'], ['--lobby', 'x', '--all']]) {
      expect((await replay(args)).code, args.join(' ')).toBe(2);
    }
  });
});

describe('replay - --rebuild-stream', () => {
  /** Every message of a stream: subject, Nats-Msg-Id, body. */
  async function contents(stream: string) {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: Array<{ subject: string; msgId: string; body: Envelope }> = [];
    for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      out.push({ subject: m!.subject, msgId: m!.header?.get(Header.msgId) ?? '', body: m!.json<Envelope>() });
    }
    return out;
  }

  it('rebuild - refused while a service serves the prefix, and into a stream that holds messages', async () => {
    const stream = `LOBBY_${uniqueId('rb').toUpperCase()}`;
    const served = await replay(['--rebuild-stream'], { DATABASE_URL: h.env.databaseUrl, NATS_STREAM: stream });
    expect(served.code).toBe(1);
    expect(served.stderr).toMatch(/a lobby service answers on prefix/);
    const full = await replay(['--rebuild-stream'], { DATABASE_URL: h.env.databaseUrl, NATS_SUBJECT_PREFIX: `${uniqueId('rb')}.` });
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(new RegExp(`stream ${h.env.stream} holds 9 messages`));
  });

  it('rebuild - an empty stream of another prefix gets the event log: the relay\'s subjects, ids and bodies, in order', async () => {
    // As in a real recovery, the service is stopped first (its relay would also mark the rows below).
    const logA = await logOf(a.lobby.lobby_id, a.admin);
    await h.app.stop();
    // Rows never marked published (as after a crash) are marked by the rebuild.
    await withPgClient(h.env.databaseUrl, (c) => c.query(`update lobby_events set published_at = null where lobby_id = $1`, [b.lobby.lobby_id]));
    const prefix = `${uniqueId('rb')}.`;
    const stream = `LOBBY_${uniqueId('rb').toUpperCase()}`;
    extraStreams.push(stream);
    const r = await replay(['--rebuild-stream'], { DATABASE_URL: h.env.databaseUrl, NATS_SUBJECT_PREFIX: prefix, NATS_STREAM: stream });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^stream ${stream} rebuilt: 9 events of 2 lobbies published, 3 newly marked published, 0 older`));

    const original = await contents(h.env.stream);
    const rebuilt = await contents(stream);
    expect(rebuilt.map((m) => m.body)).toEqual(original.map((m) => m.body));
    expect(rebuilt.map((m) => m.msgId)).toEqual(original.map((m) => m.msgId));
    expect(rebuilt.map((m) => m.subject)).toEqual(original.map((m) => `${prefix}${m.subject.slice(h.env.prefix.length)}`));
    // In event log order (global id order, so each lobby's ids ascend).
    const ids = rebuilt.map((m) => m.body.id);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    const unmarked = await withPgClient(h.env.databaseUrl, (c) => c.query(`select count(*)::int as n from lobby_events where published_at is null`));
    expect(unmarked.rows[0].n).toBe(0);
    // The rebuilt stream replays like the original.
    const lobbyA = await replay(['--lobby', a.lobby.lobby_id, '--json'], { NATS_SUBJECT_PREFIX: prefix, NATS_STREAM: stream });
    expect(lobbyA.lines.map((l) => (JSON.parse(l) as Envelope).id)).toEqual(logA.map((e) => e.id));
    // And a second rebuild is refused: the stream is no longer empty.
    const again = await replay(['--rebuild-stream'], { DATABASE_URL: h.env.databaseUrl, NATS_SUBJECT_PREFIX: prefix, NATS_STREAM: stream });
    expect(again.stderr).toMatch(/holds 9 messages/);
  });
});
