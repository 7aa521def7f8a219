/**
 * Idempotency keys (CONTRACT section 2): a retried request with the same key from the same
 * device returns the first reply and changes nothing again, across restarts and replicas.
 *
 * A success reply is stored by the command's own write (`lobby_apply`), so it exists exactly
 * when the change does. A command that writes nothing of a lobby (a read, or presence across
 * lobbies) has its reply stored afterwards. A refusal the caller cannot fix by retrying
 * (403/404/409) is stored afterwards too. Validation errors, rate limits and failures of the
 * service itself are never stored: retrying those must be able to succeed.
 */
import { createHash } from 'node:crypto';
import { ErrorStatus, type ErrorBody } from '../../subjects/index.js';
import type { Sql } from '../db/sql.js';
import { json } from '../db/sql.js';
import { ServiceError, toWire } from '../errors.js';

/** Records are kept this long (the contract asks for at least 10 minutes). */
export const IDEMPOTENCY_RETENTION_MS = 24 * 3_600_000;

const STORED_STATUSES = new Set([403, 404, 409]);

/** The key of a request, and what it must match to be a retry of the same request. */
export interface IdempotencySpec {
  deviceId: string;
  key: string;
  subject: string;
  requestHash: string;
  /** Set once the command's own write stored the reply. */
  kept?: boolean;
}

export type Prior = { ok: true; reply: unknown } | { ok: false; error: ServiceError };

/** The first outcome of a key. */
const FIND = `select subject, request_hash, status, reply from idempotency_keys where device_id = $1 and key = $2`;
/** Stores an outcome unless one is stored already (a concurrent retry's stands). */
const STORE = `
  insert into idempotency_keys (device_id, key, subject, request_hash, status, reply, created_at)
  values ($1, $2, $3, $4, $5, $6::jsonb, now()) on conflict (device_id, key) do nothing`;
/** Drops records past their retention. */
const PURGE = `delete from idempotency_keys where created_at < $1::timestamptz`;

export function requestHash(subject: string, body: string): string {
  return createHash('sha256').update(subject).update('\n').update(body).digest('hex');
}

export class IdempotencyStore {
  constructor(private readonly sql: Sql) {}

  /** The first outcome of this key, or null if it has none yet. */
  async find(spec: IdempotencySpec): Promise<Prior | null> {
    const row = await this.sql.one<{ subject: string; request_hash: string; status: number; reply: unknown }>(FIND, [
      spec.deviceId,
      spec.key,
    ]);
    if (!row) return null;
    if (row.subject !== spec.subject || row.request_hash !== spec.requestHash) {
      return {
        ok: false,
        error: new ServiceError(
          'invalid_request',
          'this Idempotency-Key was already used for a different request',
          { subject: row.subject },
        ),
      };
    }
    // Replies are stored as JSON text (key order kept); rows written before that hold objects.
    const stored: unknown = typeof row.reply === 'string' ? JSON.parse(row.reply) : row.reply;
    if (Number(row.status) === 0) return { ok: true, reply: stored };
    const { error } = stored as ErrorBody;
    return { ok: false, error: new ServiceError(error.code, error.message, error.details) };
  }

  /** Stores a success whose command wrote nothing of a lobby (and so did not store it). */
  async storeSuccess(spec: IdempotencySpec, reply: unknown): Promise<void> {
    await this.store(spec, 0, JSON.stringify(reply));
  }

  /** Stores a refusal as the key's first outcome, if it is one worth repeating. */
  async storeRefusal(spec: IdempotencySpec, err: ServiceError): Promise<void> {
    if (!STORED_STATUSES.has(ErrorStatus[err.code])) return;
    await this.store(spec, err.status, JSON.stringify(toWire(err).body));
  }

  private async store(spec: IdempotencySpec, status: number, text: string): Promise<void> {
    await this.sql.query(STORE, [spec.deviceId, spec.key, spec.subject, spec.requestHash, status, json(text)]);
  }

  /** Deletes records past their retention; returns how many. */
  async purge(now = Date.now()): Promise<number> {
    const rows = await this.sql.query(`${PURGE} returning 1`, [new Date(now - IDEMPOTENCY_RETENTION_MS).toISOString()]);
    return rows.length;
  }
}

/** Whether `err` is the loss of a race between two requests with the same key. */
export function isKeyRace(err: unknown): boolean {
  const e = err as { code?: unknown; constraint?: unknown; message?: unknown } | null;
  return e?.code === '23505' && (e.constraint === 'idempotency_keys_pkey' || /idempotency_keys/.test(String(e.message)));
}
