/**
 * One command's working copy of a lobby's aggregate: what it reads (clones of the cached rows),
 * what it changes, and the broadcasts it emits, turned into one `lobby_apply` change at the end.
 * The cached aggregate itself is never touched: a refusal, a failed write or a conflict leaves
 * it as it was.
 */
import type { EventName } from '../../subjects/index.js';
import type { IdempotencySpec } from '../transport/idempotency.js';
import type { Session } from '../measurement/model.js';
import { cloneLobby, cloneMember, lobbyToJson, memberToJson, sameMember, type Aggregate, type LobbyRow, type ParticipantRow, type SessionRecord } from './model.js';
import type { Change, StepRecord } from './store.js';
import type { EventOrigin } from '../outbox/event-row.js';

/** A broadcast to write to the outbox: event, data and the devices it is meant for. */
export interface OutboxEvent {
  sessionId?: string | null;
  event: EventName;
  data: Record<string, unknown>;
  targets: string[];
  /** Stamped by `emit`: the trace context of the command that emitted it. */
  traceparent?: string | null;
  /** Stamped by `emit` on a command's first event: which request caused it (for metrics). */
  origin?: EventOrigin;
}

/** Who a draft is deciding for right now (several commands may share one draft and write). */
export interface CommandMark {
  traceparent: string | null;
  origin?: EventOrigin;
}

/** A lobby row with its participants (join order), as one command works on it. */
export interface Loaded {
  lobby: LobbyRow;
  members: ParticipantRow[];
}

interface SessionWrite {
  id: string;
  /** The version the write expects; null for a new session. */
  expect: number | null;
  doc: Session;
  wakeAt: number | null;
}

export class Draft {
  readonly loaded: Loaded;
  readonly events: OutboxEvent[] = [];
  readonly steps: StepRecord[] = [];
  /** When the events were written (set by `change()`): the relays are handed the same time. */
  eventsAt = new Date();
  private readonly sessionWrites = new Map<string, SessionWrite>();
  /** Replies kept for their Idempotency-Key, written with the change. */
  private readonly kept: Array<{ spec: IdempotencySpec; reply: unknown }> = [];
  private current: CommandMark = { traceparent: null };

  constructor(
    private readonly base: Aggregate,
    private readonly loadSession: (id: string) => Promise<SessionRecord | null>,
    /** A new lobby (lobby.create): inserted rather than updated. */
    private readonly isNew = false,
  ) {
    this.loaded = { lobby: cloneLobby(base.lobby), members: base.members.map(cloneMember) };
  }

  /** The command deciding from now on (its trace context and origin go on its events). */
  begin(mark: CommandMark): void {
    this.current = { ...mark };
  }

  /** Keeps a command's reply for its Idempotency-Key, in the same write as its effects. */
  keep(spec: IdempotencySpec, reply: unknown): void {
    // The reply a retry replays must be the command's reply, made inside this transaction.
    if (reply === undefined) throw new Error(`${spec.subject}: no reply to keep for its Idempotency-Key`);
    this.kept.push({ spec, reply });
  }

  get lobby(): LobbyRow {
    return this.loaded.lobby;
  }

  get members(): ParticipantRow[] {
    return this.loaded.members;
  }

  /** Queues a broadcast; it is inserted at commit, in call order (so in id order). */
  emit(event: OutboxEvent): void {
    const { traceparent, origin } = this.current;
    this.events.push(origin ? { ...event, traceparent, origin } : { ...event, traceparent });
    // Only a command's first broadcast measures how long the command took to be broadcast.
    this.current.origin = undefined;
  }

  /** Records a step that changed a session, for its timeline. */
  recordStep(step: Omit<StepRecord, 'at'>): void {
    this.steps.push({ ...step, at: new Date().toISOString() });
  }

  /** A session of this lobby as this command sees it (its own write first), or null. */
  async session(id: string): Promise<SessionRecord | null> {
    const written = this.sessionWrites.get(id);
    if (written) return { doc: written.doc, version: written.expect ?? 0 };
    const cached = this.base.sessions.get(id);
    if (cached) return cached;
    const loaded = await this.loadSession(id);
    // Remembered for this command only; the cache takes it with the commit.
    if (loaded) this.base.sessions.set(id, loaded);
    return loaded;
  }

  /** Writes a session: `base` is the record it was decided from (null: a new session). */
  writeSession(id: string, base: SessionRecord | null, doc: Session, wakeAt: number | null): void {
    const earlier = this.sessionWrites.get(id);
    this.sessionWrites.set(id, { id, expect: earlier ? earlier.expect : (base?.version ?? null), doc, wakeAt });
  }

  /** The keys whose replies this change keeps (marked kept once it commits). */
  get keptKeys(): IdempotencySpec[] {
    return this.kept.map((k) => k.spec);
  }

  /** Sessions this command writes (for the cache after commit). */
  get writtenSessions(): ReadonlyMap<string, SessionWrite> {
    return this.sessionWrites;
  }

  /** Whether the command changed anything at all. */
  get changed(): boolean {
    return (
      this.isNew ||
      this.events.length > 0 ||
      this.kept.length > 0 ||
      this.sessionWrites.size > 0 ||
      !sameLobby(this.base.lobby, this.loaded.lobby) ||
      this.changedMembers().length > 0
    );
  }

  private changedMembers(): ParticipantRow[] {
    const before = new Map(this.base.members.map((m) => [m.deviceId, m]));
    return this.loaded.members.filter((m) => {
      const b = before.get(m.deviceId);
      return !b || !sameMember(b, m);
    });
  }

  /** The change for `lobby_apply`. */
  change(opts: { sink: boolean }): Change {
    this.eventsAt = new Date();
    const createdAt = this.eventsAt.toISOString();
    const c: Change = {
      lobby_id: this.loaded.lobby.id,
      expect_version: this.isNew ? null : this.base.version,
      lobby: lobbyToJson(this.loaded.lobby),
      members: this.changedMembers().map(memberToJson),
      events: this.events.map((e) => ({
        session_id: e.sessionId ?? null,
        type: e.event,
        payload: e.data,
        targets: e.targets,
        created_at: createdAt,
        traceparent: e.traceparent ?? null,
      })),
      sink: opts.sink,
    };
    if (this.steps.length > 0) c.steps = this.steps;
    // One command writes at most one session (steps and lobby commands touch the active one).
    const [w] = [...this.sessionWrites.values()];
    if (w) {
      c.session = {
        id: w.id,
        expect_version: w.expect,
        job_id: w.doc.job_id,
        state: w.doc.state,
        phase: w.doc.phase,
        wake_at: w.wakeAt === null ? null : new Date(w.wakeAt).toISOString(),
        doc: w.doc,
        created_at: new Date(w.doc.created_at).toISOString(),
        updated_at: new Date(w.doc.updated_at).toISOString(),
      };
    }
    if (this.kept.length > 0) {
      // Stored as JSON text, not as an object: jsonb reorders keys, and a replay must be
      // byte-for-byte the first reply.
      c.idempotency = this.kept.map(({ spec, reply }) => ({
        device_id: spec.deviceId,
        key: spec.key,
        subject: spec.subject,
        request_hash: spec.requestHash,
        reply: JSON.stringify(reply),
      }));
    }
    return c;
  }
}

function sameLobby(a: LobbyRow, b: LobbyRow): boolean {
  return (
    a.adminDeviceId === b.adminDeviceId &&
    a.state === b.state &&
    a.room === b.room &&
    a.stepIndex === b.stepIndex &&
    a.profileId === b.profileId &&
    a.activeSessionId === b.activeSessionId &&
    a.updatedAt.getTime() === b.updatedAt.getTime() &&
    a.closedAt?.getTime() === b.closedAt?.getTime()
  );
}
