/**
 * One command = one transaction: state rows, the broadcasts it causes (`lobby_events`, the
 * transactional outbox) and, for a request with an `Idempotency-Key`, its first reply, all
 * committed together. Only after the commit are the relays woken up, so a broadcast is never
 * published for a change that was rolled back.
 */
import type { EventName } from '../../subjects/index.js';
import type { Database, Em } from '../db/orm.js';
import { IdempotencyEntity, LobbyEventEntity } from '../db/entities.js';

/** A broadcast to write: event, data and the devices it is meant for. */
export interface OutboxEvent {
  lobbyId: string;
  sessionId?: string | null;
  event: EventName;
  data: Record<string, unknown>;
  targets: string[];
}

/** The first reply of an idempotent request, stored in the same transaction as its effects. */
export interface IdempotencySpec {
  deviceId: string;
  key: string;
  subject: string;
  requestHash: string;
}

export interface Tx {
  em: Em;
  /** Queues a broadcast; it is inserted at commit, in call order (so in id order). */
  emit(event: OutboxEvent): void;
}

export interface UnitOfWorkOptions {
  /**
   * Whether the v1 Gateway sink (`GATEWAY_URL`) is on. When it is off, events are written as
   * already delivered to it, so that a Gateway configured later does not receive old events.
   */
  sinkEnabled?: boolean;
}

export class UnitOfWork {
  constructor(
    private readonly db: Database,
    /** Called after a commit that wrote events (wakes the relays). */
    private readonly onEvents: () => void,
    private readonly opts: UnitOfWorkOptions = {},
  ) {}

  /**
   * Runs `fn` in one transaction. The caller must lock the lobby row (`lockLobby`) before it
   * emits events for that lobby: that serialises a lobby's writers, so that its event ids
   * (from one sequence) commit in id order.
   */
  async run<T>(fn: (tx: Tx) => Promise<T>, idempotency?: IdempotencySpec): Promise<T> {
    let emitted = 0;
    const result = await this.db.transaction(async (em) => {
      emitted = 0;
      const tx: Tx = {
        em,
        emit: (e) => {
          emitted++;
          const createdAt = new Date();
          em.create(LobbyEventEntity, {
            lobbyId: e.lobbyId,
            sessionId: e.sessionId ?? null,
            type: e.event,
            payload: e.data,
            targets: e.targets,
            createdAt,
            publishedAt: null,
            sinkDeliveredAt: this.opts.sinkEnabled ? null : createdAt,
          });
        },
      };
      const reply = await fn(tx);
      if (idempotency) {
        // The reply a retry replays must be the command's reply, made inside this transaction.
        if (reply === undefined) throw new Error(`${idempotency.subject}: no reply to keep for its Idempotency-Key`);
        // Stored as JSON text, not as an object: jsonb reorders keys, and a replay must be
        // byte-for-byte the first reply.
        em.create(IdempotencyEntity, { ...idempotency, status: 0, reply: JSON.stringify(reply), createdAt: new Date() });
      }
      return reply;
    });
    if (emitted > 0) this.onEvents();
    return result;
  }
}
