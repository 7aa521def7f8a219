/**
 * The AsyncAPI 3.0 document of the NATS interface, generated from `subjects/`: every command
 * subject (aliases included) as a request-reply operation with its request, reply and error
 * messages and their headers, every broadcast `lobby.{lobby_id}.<event>` with its envelope and
 * `data`, and the `$SRV` discovery subjects. Written to `subjects/asyncapi.json` by
 * `npm run docs` and served at `GET /asyncapi.json`.
 *
 * The document is described from the service's side: it *receives* commands and *sends*
 * broadcasts.
 */
import {
  BROADCAST_ROOT,
  ErrorStatus,
  Header,
  MAX_BODY_BYTES,
  SERVICE,
  aliases,
  commands,
  errorCodes,
  eventNames,
  subjectNames,
  type Caller,
  type EventName,
  type Subject,
} from '../../subjects/index.js';
import { headersSchema } from './headers.js';
import { contractSchemas, namedSchemas, type Json } from './schemas.js';

export const DOC_VERSION = '0.1.0';
const SCHEMAS = '#/components/schemas/';
const ref = ($ref: string) => ({ $ref });

/** Who may send each kind of command, in words. */
const CALLERS: Record<Caller, string> = {
  any: 'any device',
  member: 'a device that has joined the lobby (joined or left)',
  admin: "the lobby's current admin",
  gateway: 'the Gateway, for the device it names in `Device-Id`',
  session_device: 'a device of the session (the step says which)',
};

const TAGS = {
  lobby: { name: 'lobby', description: 'Lobby and role commands (`lobby.*`, `role.*`)' },
  measurement: { name: 'measurement', description: 'Measurement session commands (`measurement.*`)' },
  broadcast: { name: 'broadcast', description: 'Per-lobby broadcasts `lobby.{lobby_id}.<event>`' },
  discovery: { name: 'discovery', description: 'NATS micro service discovery (`$SRV.*`)' },
} as const;

const tagOf = (subject: Subject) => (subject.startsWith('measurement.') ? TAGS.measurement : TAGS.lobby);

function errorTable(): string {
  const rows = errorCodes.map((c) => `| \`${c}\` | ${ErrorStatus[c]} |`);
  return ['| code | status |', '|---|---|', ...rows].join('\n');
}

/** A component name, refused if two schemas would get it. */
function mergeSchemas(...parts: Array<Record<string, Json>>): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const part of parts) {
    for (const [name, schema] of Object.entries(part)) {
      if (name in out) throw new Error(`asyncapi: two schemas named ${name}`);
      out[name] = schema;
    }
  }
  return out;
}

const INFO_DESCRIPTION = [
  `The NATS interface of the Sonalyze lobby service (micro service \`${SERVICE.name}\`, every`,
  `endpoint in queue group \`${SERVICE.queue}\`). The human-readable contract, with the rules`,
  'behind these schemas, is `subjects/README.md` in the repository.',
  '',
  '**Commands** are NATS request-reply: the body is the command\'s data as a JSON object (an empty',
  `body means \`{}\`; at most ${MAX_BODY_BYTES / 1024} KiB), the acting device is the \`${Header.deviceId}\``,
  'header. A success reply is the JSON object of the reply schema. An error reply carries the headers',
  `\`${Header.serviceErrorCode}\` (the status) and \`${Header.serviceError}\` (the message) and the body`,
  '`{"error": {code, message, details?}}`. Every request is answered.',
  '',
  errorTable(),
  '',
  `**Broadcasts** are published on \`${BROADCAST_ROOT}.{lobby_id}.<event>\`, in \`id\` order per lobby,`,
  `with \`${Header.msgId}: <lobby_id>:<id>\`, and captured by the JetStream stream \`LOBBY_EVENTS\``,
  `(name from \`NATS_STREAM\`) on \`${BROADCAST_ROOT}.*.>\`. A core subscriber drops an \`id\` it has`,
  'already seen for that lobby; `targets.device_ids` names the devices a Gateway relays it to.',
].join('\n');

function commandParts(subject: Subject, names: ReturnType<typeof contractSchemas>) {
  const { request, reply } = commands[subject];
  const requestName = names.requests.get(request)!;
  const replyName = names.outputs.get(reply)!;
  return { requestName, replyName };
}

/** Builds the document. Deterministic: the same `subjects/` give the same JSON, key for key. */
export function asyncApiDocument(): Json {
  const names = contractSchemas();
  const schemas = mergeSchemas(
    namedSchemas(names.requests, 'input', SCHEMAS),
    namedSchemas(names.outputs, 'output', SCHEMAS),
    {
      RequestHeaders: headersSchema('request'),
      ReplyHeaders: headersSchema('reply'),
      ErrorHeaders: headersSchema('error'),
      BroadcastHeaders: headersSchema('broadcast'),
    },
  );
  const channels: Record<string, Json> = {};
  const operations: Record<string, Json> = {};
  const messages: Record<string, Json> = {
    Error: {
      name: 'Error',
      title: 'Error reply',
      summary: 'The reply to a refused or failed command',
      description: `\`${Header.serviceErrorCode}\` is the status of \`error.code\`:\n\n${errorTable()}`,
      headers: ref(`${SCHEMAS}ErrorHeaders`),
      payload: ref(`${SCHEMAS}ErrorBody`),
      correlationId: { location: `$message.header#/${Header.requestId}` },
    },
  };

  for (const subject of subjectNames) {
    const target = aliases[subject] ?? subject;
    const { requestName, replyName } = commandParts(target, names);
    const { caller, description } = commands[subject];
    // An alias shares its target's messages: same body, same reply.
    if (target === subject) {
      messages[`${subject}.request`] = {
        name: subject,
        title: `${subject} request`,
        summary: description,
        headers: ref(`${SCHEMAS}RequestHeaders`),
        payload: ref(`${SCHEMAS}${requestName}`),
        correlationId: { location: `$message.header#/${Header.requestId}` },
      };
      messages[`${subject}.reply`] = {
        name: `${subject}.reply`,
        title: `${subject} reply`,
        headers: ref(`${SCHEMAS}ReplyHeaders`),
        payload: ref(`${SCHEMAS}${replyName}`),
        correlationId: { location: `$message.header#/${Header.requestId}` },
      };
    }
    const what = target === subject ? `${description}.` : `Alias of \`${target}\`: same request, reply and handler.`;
    channels[subject] = {
      address: subject,
      title: subject,
      description: `${what} Who may call: ${CALLERS[caller]}.`,
      messages: { request: ref(`#/components/messages/${target}.request`) },
    };
    channels[`${subject}.reply`] = {
      address: null,
      title: `${subject} reply`,
      description: "The request's reply subject (an `_INBOX.` subject chosen by the requester).",
      messages: {
        reply: ref(`#/components/messages/${target}.reply`),
        error: ref('#/components/messages/Error'),
      },
    };
    operations[subject] = {
      action: 'receive',
      channel: ref(`#/channels/${subject}`),
      title: subject,
      summary: description,
      tags: [tagOf(subject)],
      bindings: { nats: { queue: SERVICE.queue, bindingVersion: '0.1.0' } },
      messages: [ref(`#/channels/${subject}/messages/request`)],
      reply: {
        channel: ref(`#/channels/${subject}.reply`),
        messages: [ref(`#/channels/${subject}.reply/messages/reply`), ref(`#/channels/${subject}.reply/messages/error`)],
      },
    };
  }

  for (const event of eventNames) addBroadcast(event, names, channels, operations, messages);
  addDiscovery(channels, operations, messages);

  return {
    asyncapi: '3.0.0',
    id: 'urn:sonalyze:lobby-service',
    info: {
      title: 'Sonalyze Lobby Service',
      version: DOC_VERSION,
      description: INFO_DESCRIPTION,
      tags: Object.values(TAGS),
    },
    defaultContentType: 'application/json',
    servers: {
      nats: {
        host: 'localhost:4222',
        protocol: 'nats',
        description: 'The NATS server or cluster of `NATS_URL` (JetStream enabled).',
      },
    },
    channels,
    operations,
    components: { schemas, messages },
  };
}

function addBroadcast(
  event: EventName,
  names: ReturnType<typeof contractSchemas>,
  channels: Record<string, Json>,
  operations: Record<string, Json>,
  messages: Record<string, Json>,
): void {
  const body = names.outputs.get(names.broadcasts.get(event)!.body)!;
  const id = `broadcast.${event}`;
  messages[id] = {
    name: event,
    title: `${event} broadcast`,
    summary: `The envelope of a \`${event}\` broadcast; \`data\` is its data.`,
    headers: ref(`${SCHEMAS}BroadcastHeaders`),
    payload: ref(`${SCHEMAS}${body}`),
  };
  channels[id] = {
    address: `${BROADCAST_ROOT}.{lobby_id}.${event}`,
    title: event,
    description: `Every \`${event}\` of one lobby. Subscribe to \`${BROADCAST_ROOT}.*.>\` (all lobbies) or \`${BROADCAST_ROOT}.<lobby_id>.>\` (one lobby).`,
    parameters: { lobby_id: { description: 'The lobby id, as in `Lobby.lobby_id`.' } },
    messages: { broadcast: ref(`#/components/messages/${id}`) },
  };
  operations[id] = {
    action: 'send',
    channel: ref(`#/channels/${id}`),
    title: event,
    summary: `Publishes \`${event}\` to the lobby's subject (through the outbox, in id order).`,
    tags: [TAGS.broadcast],
    messages: [ref(`#/channels/${id}/messages/broadcast`)],
  };
}

/** `$SRV.PING|INFO|STATS.lobby`: the NATS micro protocol's discovery requests. */
function addDiscovery(channels: Record<string, Json>, operations: Record<string, Json>, messages: Record<string, Json>): void {
  const verbs = {
    PING: 'Who is there: name, id and version of each replica',
    INFO: 'Each replica\'s endpoints: subject, queue group and, in `metadata`, the JSON Schemas of request and reply as JSON text (`request_schema`, `response_schema`)',
    STATS: 'Per endpoint request and error counts and processing times',
  } as const;
  for (const [verb, summary] of Object.entries(verbs)) {
    const id = `$SRV.${verb}.${SERVICE.name}`;
    const key = `discovery.${verb.toLowerCase()}`;
    messages[`${key}.request`] = { name: id, title: `${id} request`, payload: { type: 'object', description: 'Empty body.' } };
    messages[`${key}.reply`] = {
      name: `${id}.reply`,
      title: `${id} reply`,
      payload: {
        type: 'object',
        properties: {
          type: { type: 'string', const: `io.nats.micro.v1.${verb.toLowerCase()}_response` },
          name: { type: 'string', const: SERVICE.name },
          id: { type: 'string' },
          version: { type: 'string' },
        },
        required: ['type', 'name', 'id', 'version'],
      },
    };
    channels[key] = {
      address: id,
      title: id,
      description: `${summary}. \`$SRV.${verb}\` and \`${id}.<id>\` answer the same; never prefixed.`,
      messages: { request: ref(`#/components/messages/${key}.request`) },
    };
    channels[`${key}.reply`] = {
      address: null,
      title: `${id} reply`,
      messages: { reply: ref(`#/components/messages/${key}.reply`) },
    };
    operations[key] = {
      action: 'receive',
      channel: ref(`#/channels/${key}`),
      title: id,
      summary,
      tags: [TAGS.discovery],
      messages: [ref(`#/channels/${key}/messages/request`)],
      reply: { channel: ref(`#/channels/${key}.reply`), messages: [ref(`#/channels/${key}.reply/messages/reply`)] },
    };
  }
}
