/**
 * MikroORM entities (defineEntity; listed explicitly in `entities`). Column names follow the
 * underscore naming strategy (`adminDeviceId` -> `admin_device_id`); the tables themselves are
 * created by the migrations in `migrations.ts`, which are the schema's source of truth.
 */
import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import type { LobbyState, ParticipantStatus, Role } from '../../subjects/index.js';
import type { Session } from '../measurement/model.js';

export const LobbyEntity = defineEntity({
  name: 'Lobby',
  tableName: 'lobbies',
  properties: {
    id: p.uuid().primary(),
    code: p.string().length(6),
    creatorDeviceId: p.text(),
    adminDeviceId: p.text(),
    state: p.string().$type<LobbyState>(),
    maxParticipants: p.integer(),
    room: p.json<Record<string, unknown>>().nullable(),
    stepIndex: p.integer().nullable(),
    profileId: p.text().nullable(),
    activeSessionId: p.uuid().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    closedAt: p.datetime().nullable(),
  },
});
export type LobbyRow = InferEntity<typeof LobbyEntity>;

export const ParticipantEntity = defineEntity({
  name: 'Participant',
  tableName: 'participants',
  properties: {
    /** Ascending in join order. */
    id: p.bigint('number').primary().autoincrement(),
    lobbyId: p.uuid(),
    deviceId: p.text(),
    role: p.string().$type<Role>(),
    roleSlotId: p.text().nullable(),
    roleSlotLabel: p.text().nullable(),
    status: p.string().$type<ParticipantStatus>(),
    connected: p.boolean(),
    /** Kicked devices may not rejoin and are not listed. */
    kicked: p.boolean(),
    joinedAt: p.datetime(),
    leftAt: p.datetime().nullable(),
  },
});
export type ParticipantRow = InferEntity<typeof ParticipantEntity>;

/** The event log and transactional outbox of broadcasts. */
export const LobbyEventEntity = defineEntity({
  name: 'LobbyEvent',
  tableName: 'lobby_events',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    lobbyId: p.uuid(),
    sessionId: p.uuid().nullable(),
    /** The broadcast event name (`lobby.updated`, `measurement.start_recording`, ...). */
    type: p.text(),
    /** The broadcast's `data`. */
    payload: p.json<Record<string, unknown>>(),
    targets: p.json<string[]>(),
    createdAt: p.datetime(),
    /** Set once the event is stored in the JetStream stream. */
    publishedAt: p.datetime().nullable(),
    /** Set once the v1 Gateway sink accepted it (only used with GATEWAY_URL). */
    sinkDeliveredAt: p.datetime().nullable(),
  },
});
export type LobbyEventRow = InferEntity<typeof LobbyEventEntity>;

/** First replies of requests sent with an `Idempotency-Key`. */
export const IdempotencyEntity = defineEntity({
  name: 'IdempotencyRecord',
  tableName: 'idempotency_keys',
  properties: {
    deviceId: p.text().primary(),
    key: p.text().primary(),
    subject: p.text(),
    /** SHA-256 of the request body: a key reused for another request is refused. */
    requestHash: p.text(),
    /** 0 for a success reply, else the error status. */
    status: p.integer(),
    reply: p.json<unknown>(),
    createdAt: p.datetime(),
  },
  primaryKeys: ['deviceId', 'key'],
});
export type IdempotencyRow = InferEntity<typeof IdempotencyEntity>;

/** A measurement session: query columns plus the pure session document. */
export const SessionEntity = defineEntity({
  name: 'MeasurementSession',
  tableName: 'measurement_sessions',
  properties: {
    id: p.uuid().primary(),
    lobbyId: p.uuid(),
    jobId: p.text(),
    state: p.string(),
    phase: p.string(),
    /** Earliest time a tick could change the session (phase deadline or presence grace). */
    wakeAt: p.datetime().nullable(),
    doc: p.json<Session>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    /** Optimistic concurrency: two replicas can never both apply a transition. */
    version: p.integer().version(),
  },
});
export type SessionRow = InferEntity<typeof SessionEntity>;

/** Time-limited leases (one outbox relay at a time across replicas). */
export const LeaseEntity = defineEntity({
  name: 'Lease',
  tableName: 'leases',
  properties: {
    name: p.text().primary(),
    holder: p.text(),
    expiresAt: p.datetime(),
  },
});

export const entities = [
  LobbyEntity,
  ParticipantEntity,
  LobbyEventEntity,
  IdempotencyEntity,
  SessionEntity,
  LeaseEntity,
];
