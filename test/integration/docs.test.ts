/**
 * The contract as a running service publishes it: `GET /asyncapi.json` (with the auth of
 * `/openapi.json`), `$SRV.INFO.lobby` with each endpoint's JSON Schemas, and the replay recipe
 * of subjects/README.md run against a real stream.
 */
import { readFileSync } from 'node:fs';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HttpHeader,
  SERVICE,
  allBroadcastsFilter,
  broadcastSubject,
  commands,
  lobbyBroadcastFilter,
  subjectNames,
  type Envelope,
  type Subject,
} from '../../subjects/index.js';
import { asyncApiDocument } from '../../src/docs/asyncapi.js';
import { standaloneSchema } from '../../src/docs/schemas.js';
import { waitFor } from '../helpers/infra.js';
import { lobbyWith } from '../helpers/lobby.js';
import { device, startHarness } from '../helpers/service.js';

type Harness = Awaited<ReturnType<typeof startHarness>>;
const TOKEN = 'docs-test-token';

let h: Harness;
let locked: Harness;
beforeAll(async () => {
  [h, locked] = await Promise.all([
    startHarness(),
    startHarness({ HTTP_AUTH_TOKEN: TOKEN }),
  ]);
});
afterAll(async () => {
  await Promise.all([h?.stop(), locked?.stop()]);
});

describe('docs - served documents', () => {
  it('asyncapi - GET /asyncapi.json serves the generated AsyncAPI document', async () => {
    const r = await fetch(`${h.app.httpUrl}/asyncapi.json`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await r.json()).toEqual(asyncApiDocument());
  });

  it('asyncapi - /asyncapi.json needs the token exactly when /openapi.json does', async () => {
    const cases: Array<[string, Record<string, string>]> = [
      [h.app.httpUrl, {}],
      [locked.app.httpUrl, {}],
      [locked.app.httpUrl, { [HttpHeader.internalToken]: `${TOKEN}x` }],
      [locked.app.httpUrl, { [HttpHeader.internalToken]: TOKEN }],
      [locked.app.httpUrl, { authorization: `Bearer ${TOKEN}` }],
    ];
    const statuses = [];
    for (const [base, headers] of cases) {
      const [openapi, asyncapi] = await Promise.all(
        ['/openapi.json', '/asyncapi.json'].map((p) => fetch(`${base}${p}`, { headers }).then((r) => r.status)),
      );
      expect(asyncapi, JSON.stringify(headers)).toBe(openapi);
      statuses.push(asyncapi);
    }
    expect(statuses).toEqual([200, 401, 401, 200, 200]);
  });
});

describe('docs - $SRV.INFO.lobby', () => {
  /** This test's replica among all `lobby` services on the shared server: the one with our prefix. */
  async function ourInfo(nc: NatsConnection, prefix: string) {
    const replies = await nc.requestMany(`$SRV.INFO.${SERVICE.name}`, undefined, { strategy: 'stall', maxWait: 5_000, stall: 300 });
    for await (const m of replies) {
      const info = m.json<any>();
      if (info.endpoints?.some((e: any) => e.subject.startsWith(prefix))) return info;
    }
    throw new Error('no lobby service with this prefix answered $SRV.INFO');
  }

  it('micro - INFO lists every endpoint with its subject, queue group and request/reply JSON Schemas', async () => {
    const info = await ourInfo(h.client.nc, h.env.prefix);
    expect(info.type).toBe('io.nats.micro.v1.info_response');
    expect(info.name).toBe(SERVICE.name);
    const bySubject = new Map<string, any>(info.endpoints.map((e: any) => [e.subject, e]));
    expect(bySubject.size).toBe(subjectNames.length);
    for (const subject of subjectNames) {
      const e = bySubject.get(`${h.env.prefix}${subject}`);
      expect(e, subject).toBeDefined();
      expect(e.queue_group).toBe(SERVICE.queue);
      expect(e.name).toBe(subject.replace(/\./g, '_'));
      // The micro protocol allows only strings in metadata.
      for (const v of Object.values(e.metadata)) expect(typeof v).toBe('string');
      expect(e.metadata.description).toBe(commands[subject].description);
      expect(JSON.parse(e.metadata.request_schema)).toEqual(standaloneSchema(commands[subject].request, 'input'));
      expect(JSON.parse(e.metadata.response_schema)).toEqual(standaloneSchema(commands[subject].reply, 'output'));
    }
  });

  it('micro - a client can validate a request with the schema INFO gives it, as the service would', async () => {
    const info = await ourInfo(h.client.nc, h.env.prefix);
    const schemaOf = (s: Subject) => JSON.parse(info.endpoints.find((e: any) => e.subject === `${h.env.prefix}${s}`).metadata.request_schema);
    const ajv = new Ajv({ strict: false });
    const validJoin = ajv.compile(schemaOf('lobby.join'));
    expect(validJoin({ code: 'ABC234' })).toBe(true);
    expect(validJoin({})).toBe(false);
    const validRole = ajv.compile(schemaOf('role.assign'));
    expect(validRole({ lobby_id: 'l', target_device_id: 'd', role: 'speaker' })).toBe(true);
    expect(validRole({ lobby_id: 'l', target_device_id: 'd', role: 'conductor' })).toBe(false);
    // And the service refuses what the schema refuses.
    const refused = await h.client.send('role.assign', device('x'), { lobby_id: 'l', target_device_id: 'd', role: 'conductor' });
    expect(refused.error?.code).toBe('invalid_request');
  });
});

// ---- README sample: relay (the text between the markers is quoted in subjects/README.md) ----
// README-SAMPLE-START relay
/** Relays every broadcast to the devices it targets, each event once (`send` writes to a socket). */
function relayBroadcasts(nc: NatsConnection, send: (deviceId: string, event: string, data: object) => void, prefix = ''): Subscription {
  const lastId = new Map<string, number>(); // per lobby, the highest id relayed
  return nc.subscribe(allBroadcastsFilter(prefix), {
    callback: (err, msg) => {
      if (err) return;
      const envelope = msg.json<Envelope>();
      // A lobby's events come in id order; an id not above the last one is a re-delivery.
      if (envelope.id <= (lastId.get(envelope.lobby_id) ?? 0)) return;
      lastId.set(envelope.lobby_id, envelope.id);
      for (const deviceId of envelope.targets.device_ids) send(deviceId, envelope.event, envelope.data);
    },
  });
}
// README-SAMPLE-END relay

describe('docs - the README relay recipe', () => {
  it('relay - each targeted device gets each broadcast once, a re-delivered id is dropped', async () => {
    const got: Array<{ deviceId: string; event: string; data: any }> = [];
    const sub = relayBroadcasts(h.client.nc, (deviceId, event, data) => got.push({ deviceId, event, data }), h.env.prefix);
    await h.client.nc.flush();
    try {
      const l = await lobbyWith(h.client, 1);
      const [guest] = l.guests as [string];
      const forLobby = () => got.filter((g) => g.data.lobby_id === l.id);
      // lobby_created to the admin; participant_joined to both.
      await waitFor(() => forLobby().length === 3);
      expect(forLobby().map((g) => `${g.deviceId}:${g.data.type}`).sort()).toEqual(
        [`${l.admin}:lobby_created`, `${l.admin}:participant_joined`, `${guest}:participant_joined`].sort(),
      );
      // A second copy of the join, as a core subscriber may see after a service crash.
      const joined = h.client.of(l.id, 'lobby.updated').find((b) => b.data.type === 'participant_joined')!;
      h.client.nc.publish(broadcastSubject(l.id, 'lobby.updated', h.env.prefix), JSON.stringify(joined));
      await h.client.nc.flush();
      // Anything published after the copy arrives after it: a later event proves it was dropped.
      await h.client.call('lobby.step_update', l.admin, { lobby_id: l.id, step_index: 2 });
      await waitFor(() => forLobby().some((g) => g.event === 'lobby.step_update'));
      expect(forLobby().filter((g) => g.data.type === 'participant_joined')).toHaveLength(2);
      expect(forLobby().filter((g) => g.event === 'lobby.step_update').map((g) => g.deviceId)).toEqual([guest]);
    } finally {
      sub.unsubscribe();
    }
  });
});

// ---- README sample: replay (the text between the markers is quoted in subjects/README.md) ----
// README-SAMPLE-START replay
/** Every broadcast of one lobby still held by the stream, oldest first. */
async function replayLobby(nc: NatsConnection, lobbyId: string, stream = 'LOBBY_EVENTS', prefix = ''): Promise<Envelope[]> {
  const js = jetstream(nc);
  // An ordered consumer: ephemeral, no acks, in stream order, only this lobby's subjects.
  const consumer = await js.consumers.get(stream, { filter_subjects: lobbyBroadcastFilter(lobbyId, prefix) });
  const events: Envelope[] = [];
  if ((await consumer.info(true)).num_pending === 0) return events;
  const messages = await consumer.consume();
  for await (const m of messages) {
    events.push(m.json<Envelope>());
    if (m.info.pending === 0) break; // caught up; keep iterating instead to follow live events
  }
  return events;
}
// README-SAMPLE-END replay

describe('docs - the README replay recipe', () => {
  it('replay - an ordered consumer on lobby.<id>.> returns the lobby\'s broadcasts in id order, no other lobby\'s', async () => {
    const a = await lobbyWith(h.client, 2);
    const b = await lobbyWith(h.client, 1);
    // Both lobbies have published everything they logged.
    const logged = async (lobbyId: string, admin: string) =>
      (await h.client.call('lobby.events', admin, { lobby_id: lobbyId, limit: 1000 })).events;
    const expected = await logged(a.lobby.lobby_id, a.admin);
    expect(expected.length).toBe(3); // created, two joins
    await h.client.waitFor(b.lobby.lobby_id, 'lobby.updated', 2);

    // The relay publishes after the commit: wait until the stream holds all of lobby A.
    const replayed = await waitFor(async () => {
      const r = await replayLobby(h.client.nc, a.lobby.lobby_id, h.env.stream, h.env.prefix);
      return r.length >= expected.length ? r : undefined;
    });
    expect(replayed.map((e) => e.id)).toEqual(expected.map((e) => e.id));
    expect(replayed.every((e) => e.lobby_id === a.lobby.lobby_id)).toBe(true);
    expect(await replayLobby(h.client.nc, crypto.randomUUID(), h.env.stream, h.env.prefix)).toEqual([]);
  });

  it('samples - subjects/README.md quotes the relay and replay samples that this file runs', () => {
    const source = readFileSync(new URL(import.meta.url), 'utf8');
    const readme = readFileSync(new URL('../../subjects/README.md', import.meta.url), 'utf8');
    for (const name of ['relay', 'replay']) {
      const sample = new RegExp(`// README-SAMPLE-START ${name}\\n([\\s\\S]*?)// README-SAMPLE-END ${name}`).exec(source)![1]!;
      expect(readme.includes(sample.trim()), `the ${name} sample in subjects/README.md differs from test/integration/docs.test.ts`).toBe(true);
    }
  });
});
