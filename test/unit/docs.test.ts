/**
 * The generated documents: committed copies are current, the AsyncAPI document is valid
 * AsyncAPI 3.0 (checked by the AsyncAPI project's own parser) and covers every subject, event,
 * error code and header of `subjects/`.
 */
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  Header,
  aliases,
  commands,
  errorCodes,
  eventNames,
  events,
  subjectNames,
  type EventName,
} from '../../subjects/index.js';
import { renderDocs } from '../../src/docs/render.js';

const root = new URL('../../', import.meta.url);
type Doc = Record<string, any>;

describe('docs - committed documents', () => {
  it('docs - subjects/asyncapi.json and subjects/openapi.json equal a fresh rendering', () => {
    for (const doc of renderDocs()) {
      const committed = readFileSync(new URL(doc.path, root), 'utf8');
      // Compared byte for byte; the message says how to fix it.
      expect(committed === doc.text, `${doc.path} is stale: run npm run docs and commit the result`).toBe(true);
    }
  });

  it('docs - rendering twice gives the same bytes', () => {
    expect(renderDocs()).toEqual(renderDocs());
  });
});

describe('docs - AsyncAPI', () => {
  const text = readFileSync(new URL('subjects/asyncapi.json', root), 'utf8');
  const doc: Doc = JSON.parse(text);

  it('asyncapi - validates as AsyncAPI 3.0 with the AsyncAPI parser (no errors, no warnings)', async () => {
    const { document, diagnostics } = await new Parser().parse(text);
    // Severity 0 = error, 1 = warning; 2 and 3 are information and hints (e.g. "3.1 exists").
    const problems = diagnostics.filter((d) => d.severity <= 1).map((d) => `${d.code} ${d.path.join('/')}: ${d.message}`);
    expect(problems).toEqual([]);
    expect(document?.version()).toBe('3.0.0');
    expect(doc.asyncapi).toBe('3.0.0');
  });

  it('asyncapi - the parser rejects a broken variant (the validation above can fail)', async () => {
    const broken = structuredClone(doc);
    broken.components.schemas.Lobby.type = 'objekt';
    delete broken.channels['lobby.get'].messages;
    const { document, diagnostics } = await new Parser().parse(JSON.stringify(broken));
    expect(document).toBeUndefined();
    expect(diagnostics.filter((d) => d.severity === 0).length).toBeGreaterThan(0);
  });

  it('asyncapi - every command subject and alias is a request-reply operation with its schemas', () => {
    for (const subject of subjectNames) {
      const channel = doc.channels[subject];
      expect(channel?.address, subject).toBe(subject);
      const op = doc.operations[subject];
      expect(op.action).toBe('receive');
      expect(op.channel.$ref).toBe(`#/channels/${subject}`);
      expect(op.bindings.nats.queue).toBe('lobby');
      const replyMessages = op.reply.messages.map((m: Doc) => m.$ref);
      expect(replyMessages).toEqual([`#/channels/${subject}.reply/messages/reply`, `#/channels/${subject}.reply/messages/error`]);
      // An alias points at its target's messages.
      const target = aliases[subject] ?? subject;
      expect(channel.messages.request.$ref).toBe(`#/components/messages/${target}.request`);
      const request = doc.components.messages[`${target}.request`];
      expect(request.headers.$ref).toBe('#/components/schemas/RequestHeaders');
      const schema = resolve(doc, request.payload.$ref);
      expect(schema.type).toBe('object');
      // The request's fields are the zod schema's fields.
      const shape = (commands[subject].request as unknown as { shape?: Record<string, unknown> }).shape;
      if (shape) expect(Object.keys(schema.properties ?? {}).sort()).toEqual(Object.keys(shape).sort());
      const reply = doc.components.messages[`${target}.reply`];
      expect(resolve(doc, reply.payload.$ref).type).toBe('object');
    }
  });

  it('asyncapi - every broadcast event has a channel lobby.{lobby_id}.<event> and a payload with its data', () => {
    const broadcastChannels = Object.values(doc.channels).filter((c: any) => String(c.address).startsWith('lobby.{lobby_id}.'));
    expect(broadcastChannels.length).toBe(eventNames.length);
    for (const event of eventNames) {
      const channel = doc.channels[`broadcast.${event}`];
      expect(channel.address).toBe(`lobby.{lobby_id}.${event}`);
      expect(doc.operations[`broadcast.${event}`].action).toBe('send');
      const message = resolve(doc, channel.messages.broadcast.$ref);
      expect(resolve(doc, message.headers.$ref).required).toEqual([Header.msgId]);
      const body = resolve(doc, message.payload.$ref);
      expect(body.required).toEqual(expect.arrayContaining(['id', 'event', 'lobby_id', 'session_id', 'data', 'targets', 'created_at']));
      expect(body.properties.event.const).toBe(event);
      expect(body.properties.data.$ref).toBe(`#/components/schemas/${dataName(event)}`);
    }
  });

  it('asyncapi - the error reply lists every error code and carries the Nats-Service-Error headers', () => {
    const error = doc.components.messages.Error;
    const headers = resolve(doc, error.headers.$ref);
    expect(headers.required).toEqual([Header.serviceErrorCode, Header.serviceError]);
    const body = resolve(doc, error.payload.$ref);
    expect(body.properties.error.properties.code.enum).toEqual(errorCodes);
    for (const code of errorCodes) expect(error.description).toContain(`\`${code}\``);
  });

  it('asyncapi - every header of the contract is documented, Device-Id required on requests', () => {
    const places = ['RequestHeaders', 'ReplyHeaders', 'ErrorHeaders', 'BroadcastHeaders'].map((n) => doc.components.schemas[n]);
    const documented = new Set(places.flatMap((p) => Object.keys(p.properties)));
    expect([...documented].sort()).toEqual(Object.values(Header).sort());
    expect(doc.components.schemas.RequestHeaders.required).toEqual([Header.deviceId]);
  });

  it('asyncapi - payload schemas accept what the service sends and refuse what it refuses', () => {
    // The documents' schemas are usable by a JSON Schema validator, and mean what the zod ones do.
    const ajv = new Ajv({ strict: false, allErrors: true });
    ajv.addSchema({ components: doc.components }, 'doc');
    const check = (name: string, value: unknown) => ajv.validate({ $ref: `doc#/components/schemas/${name}` }, value);
    expect(check('LobbyJoin', { code: 'ABC234' })).toBe(true);
    expect(check('LobbyJoin', { code: 42 })).toBe(false);
    const sample = { session_id: 's', speaker_slot_id: 'speaker-1', expected_duration_seconds: 15 };
    expect(events['measurement.start_recording'].safeParse(sample).success).toBe(true);
    const envelope = {
      id: 7,
      event: 'measurement.start_recording',
      lobby_id: 'l',
      session_id: 's',
      data: sample,
      targets: { device_ids: ['mic-1'] },
      created_at: new Date().toISOString(),
    };
    expect(check('MeasurementStartRecordingBroadcast', envelope)).toBe(true);
    expect(check('MeasurementStartRecordingBroadcast', { ...envelope, event: 'lobby.updated' })).toBe(false);
    expect(check('MeasurementStartRecordingBroadcast', { ...envelope, data: { session_id: 's' } })).toBe(false);
  });
});

function dataName(event: EventName): string {
  return `${event.split(/[._]/).map((w) => w[0]!.toUpperCase() + w.slice(1)).join('')}Data`;
}

/** Follows a local `$ref` (`#/a/b/c`) in the document. */
function resolve(doc: Doc, ref: string): Doc {
  let node: any = doc;
  for (const part of ref.replace(/^#\//, '').split('/')) node = node?.[part];
  if (node === undefined) throw new Error(`unresolved ${ref}`);
  return node.$ref ? resolve(doc, node.$ref) : node;
}

beforeAll(() => {
  // A subject table and an event table that are not empty, or every loop above proves nothing.
  expect(subjectNames.length).toBeGreaterThan(20);
  expect(eventNames.length).toBeGreaterThan(10);
});
