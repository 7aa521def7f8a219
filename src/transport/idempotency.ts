/**
 * Idempotency keys (CONTRACT section 2): a retried request with the same key from the same
 * device returns the first reply and changes nothing again, across restarts and replicas.
 *
 * A success reply is stored by the command's own transaction (see UnitOfWork), so it exists
 * exactly when the change does. A refusal the caller cannot fix by retrying (403/404/409) is
 * stored afterwards in its own small transaction. Validation errors, rate limits and failures
 * of the service itself are never stored: retrying those must be able to succeed.
 */
import { createHash } from 'node:crypto';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { ErrorStatus, type ErrorBody } from '../../subjects/index.js';
import { IdempotencyEntity } from '../db/entities.js';
import type { Database } from '../db/orm.js';
import { ServiceError, toWire } from '../errors.js';
import type { IdempotencySpec } from '../outbox/unit-of-work.js';

/** Records are kept this long (the contract asks for at least 10 minutes). */
export const IDEMPOTENCY_RETENTION_MS = 24 * 3_600_000;

const STORED_STATUSES = new Set([403, 404, 409]);

export type Prior = { ok: true; reply: unknown } | { ok: false; error: ServiceError };

export function requestHash(subject: string, body: string): string {
  return createHash('sha256').update(subject).update('\n').update(body).digest('hex');
}

export class IdempotencyStore {
  constructor(private readonly db: Database) {}

  /** The first outcome of this key, or null if it has none yet. */
  async find(spec: IdempotencySpec): Promise<Prior | null> {
    const row = await this.db.read((em) =>
      em.findOne(IdempotencyEntity, { deviceId: spec.deviceId, key: spec.key }),
    );
    if (!row) return null;
    if (row.subject !== spec.subject || row.requestHash !== spec.requestHash) {
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
    if (row.status === 0) return { ok: true, reply: stored };
    const { error } = stored as ErrorBody;
    return { ok: false, error: new ServiceError(error.code, error.message, error.details) };
  }

  /** Stores a refusal as the key's first outcome, if it is one worth repeating. */
  async storeRefusal(spec: IdempotencySpec, err: ServiceError): Promise<void> {
    if (!STORED_STATUSES.has(ErrorStatus[err.code])) return;
    try {
      await this.db.transaction(async (em) => {
        em.create(IdempotencyEntity, {
          ...spec,
          status: err.status,
          reply: JSON.stringify(toWire(err).body),
          createdAt: new Date(),
        });
      });
    } catch (e) {
      // A concurrent retry stored its outcome first: that one stands.
      if (!(e instanceof UniqueConstraintViolationException)) throw e;
    }
  }

  /** Deletes records past their retention; returns how many. */
  async purge(now = Date.now()): Promise<number> {
    return this.db.transaction((em) =>
      em.nativeDelete(IdempotencyEntity, { createdAt: { $lt: new Date(now - IDEMPOTENCY_RETENTION_MS) } }),
    );
  }
}

/** Whether `err` is the loss of a race between two requests with the same key. */
export function isKeyRace(err: unknown): boolean {
  return (
    err instanceof UniqueConstraintViolationException &&
    /idempotency_keys/.test(String((err as Error).message))
  );
}
