/**
 * The contract's zod schemas as JSON Schema (draft-07, the dialect an AsyncAPI 3.0 Schema
 * Object extends), for the AsyncAPI document and for `$SRV.INFO.lobby`.
 *
 * Everything is derived from `subjects/` at the time it runs, so a schema change shows up in
 * the documents without touching this file. Requests are converted as zod *inputs* (what a
 * caller may send), replies and broadcasts as *outputs* (what the service sends).
 */
import { z } from 'zod';
import * as contract from '../../subjects/index.js';
import { commands, events, type EventName, type Subject } from '../../subjects/index.js';

export type Json = Record<string, unknown>;
export type Io = 'input' | 'output';

/** `lobby.start_speaker` -> `LobbyStartSpeaker`. */
export function pascal(name: string): string {
  return name
    .split(/[._-]/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
}

/**
 * The export name of every zod schema of `subjects/`, so shared schemas (e.g. `LobbyRef`, used by
 * four subjects) appear once under the name the code gives them. A module namespace lists its
 * exports in alphabetical order, which keeps the choice stable.
 */
function exportNames(): Map<z.ZodType, string> {
  const names = new Map<z.ZodType, string>();
  for (const [name, value] of Object.entries(contract)) {
    if (value instanceof z.ZodType && !names.has(value)) names.set(value, name);
  }
  return names;
}

/** Drops the keys a schema embedded in a larger document must not carry. */
function embedded(schema: unknown): Json {
  const { $schema: _s, $id: _i, ...rest } = schema as Json;
  return rest;
}

/**
 * Converts named schemas in one pass, so a named schema used inside another one becomes a
 * `$ref` (`refBase` + name) instead of a copy.
 */
export function namedSchemas(named: Map<z.ZodType, string>, io: Io, refBase: string): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of named) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-07', io, uri: (id) => `${refBase}${id}` });
  return Object.fromEntries(Object.entries(schemas).map(([id, s]) => [id, embedded(s)]));
}

/** One schema, self-contained (no `$ref` outside itself), with its `$schema` dialect. */
export function standaloneSchema(schema: z.ZodType, io: Io): Json {
  return z.toJSONSchema(schema, { target: 'draft-07', io }) as Json;
}

/** One schema, inline, for embedding (no `$schema`). */
export function inlineSchema(schema: z.ZodType, io: Io): Json {
  return embedded(z.toJSONSchema(schema, { target: 'draft-07', io }));
}

/**
 * A broadcast body with its event's `data`: the contract's `Envelope` with `event` fixed and
 * `data` replaced by that event's schema.
 */
export function broadcastSchema(event: EventName): z.ZodType {
  return contract.Envelope.extend({ event: z.literal(event), data: events[event] });
}

export interface ContractSchemas {
  /** Request schema -> component name (converted as inputs). */
  requests: Map<z.ZodType, string>;
  /** Reply, broadcast and shared output schema -> component name (converted as outputs). */
  outputs: Map<z.ZodType, string>;
  /** Per event, its data schema and its whole broadcast body. */
  broadcasts: Map<EventName, { data: z.ZodType; body: z.ZodType }>;
}

/**
 * Names every schema the documents refer to: requests and replies by their export names (or,
 * when not exported, after their subject), event data after the event (`MeasurementErrorData`),
 * and the shared objects (`Lobby`, `Participant`, `SessionStatus`, `ErrorBody`, `Envelope`).
 */
export function contractSchemas(): ContractSchemas {
  const exported = exportNames();
  const requests = new Map<z.ZodType, string>();
  const outputs = new Map<z.ZodType, string>();
  const nameOf = (schema: z.ZodType, fallback: string) => exported.get(schema) ?? fallback;

  for (const shared of [contract.Lobby, contract.Participant, contract.Recording, contract.SessionStatus]) {
    outputs.set(shared, nameOf(shared, 'Shared'));
  }
  for (const subject of Object.keys(commands) as Subject[]) {
    const { request, reply } = commands[subject];
    if (!requests.has(request)) requests.set(request, nameOf(request, `${pascal(subject)}Request`));
    if (!outputs.has(reply)) outputs.set(reply, nameOf(reply, `${pascal(subject)}Reply`));
  }
  outputs.set(contract.ErrorBody, 'ErrorBody');
  const broadcasts = new Map<EventName, { data: z.ZodType; body: z.ZodType }>();
  for (const event of contract.eventNames) {
    const data = events[event];
    const body = broadcastSchema(event);
    outputs.set(data, `${pascal(event)}Data`);
    outputs.set(body, `${pascal(event)}Broadcast`);
    broadcasts.set(event, { data, body });
  }
  return { requests, outputs, broadcasts };
}
