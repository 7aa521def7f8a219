/**
 * One in-process actor per lobby: a mailbox that runs the lobby's commands, and the steps of
 * its measurement sessions, one at a time, on a cached copy of the lobby's aggregate.
 *
 * A command decides from the cached state, then writes through with one `lobby_apply` call
 * that checks the lobby's version under its row lock. If another replica changed the lobby
 * meanwhile, the call changes nothing and returns the fresh state; the command is decided again
 * on it. So a decision is only ever applied to the state it was taken from, and a command that
 * finds its lobby cached costs one round trip. Decisions that write nothing (refusals,
 * duplicates, no-ops) are confirmed against the lobby's current version before they are
 * answered: nothing is refused or answered from a stale cache.
 *
 * A session's steps run in its lobby's mailbox: each step also writes the lobby's event log, and
 * the lobby row lock orders a lobby's events. The session actor is thus hosted by its lobby's.
 * Steps of one session that queue up while a write is under way (four microphones saying
 * `ready` at once) are decided one after another on one draft and committed together: one round
 * trip for the lot, instead of each waiting for the previous one's.
 *
 * The cache is bounded (least recently used lobbies without queued work are dropped); a dropped
 * lobby is loaded again, in one round trip, by its next command.
 */
import type { Logger } from 'pino';
import { fail, ServiceError } from '../errors.js';
import type { EventRow, HandedBatch } from '../outbox/event-row.js';
import { isKeyRace, type IdempotencySpec } from '../transport/idempotency.js';
import { Draft } from './draft.js';
import { aggregateFromJson, type Aggregate, type LobbyRow, type ParticipantRow, type SessionRecord } from './model.js';
import { isUuid, type LobbyStore } from './store.js';

/** What a command brings besides its decision (a `CommandContext` fits). */
export interface RunOptions {
  /** The request's key: its reply is stored with its writes. */
  idempotency?: IdempotencySpec;
  /** The request's W3C trace context, carried into its broadcasts. */
  traceparent?: string;
  /** The request's subject and arrival (`performance.now()`), carried on its first broadcast for metrics. */
  subject?: string;
  receivedAt?: number;
  /** Told which lobby the command runs on, once `run` / `create` knows (for its log line). */
  located?: (lobbyId: string) => void;
  /** The refusal when the lobby does not exist (default `lobby_not_found` / `session_not_found`). */
  notFound?: () => ServiceError;
}

/** How a command names its lobby. */
export type LobbyRef = { lobbyId: string } | { code: string } | { sessionId: string };

export interface LobbiesOptions {
  /** Whether the v1 sink is on: its rows then start undelivered. */
  sink: boolean;
  /** Called after every commit that wrote events (hands them to the relays). */
  onCommit: (batch: HandedBatch) => void;
  /** Most lobbies kept in memory. */
  maxCached?: number;
  log: Logger;
}

/** Attempts before a command gives up on a lobby that other replicas keep changing. */
const MAX_ATTEMPTS = 20;
const DEFAULT_MAX_CACHED = 4_096;
/** Most queued steps of one session committed in one write. */
const MAX_BATCH = 64;

type Outcome = { kind: 'reply'; reply: unknown } | { kind: 'error'; error: unknown } | { kind: 'resolve_again' };

/** A command waiting in (or running in) its lobby's mailbox. */
interface Job {
  ref: LobbyRef;
  /** The aggregate its reference was resolved with, when it had to be loaded for that. */
  preloaded: Aggregate | null;
  decide: (tx: Draft) => unknown;
  opts: RunOptions;
  notFound: () => ServiceError;
  settle: (outcome: Outcome) => void;
}

/** Steps of one session may share a write; anything else runs alone. */
const batchKey = (job: Job): string | null => ('sessionId' in job.ref ? job.ref.sessionId : null);
/** A job's Idempotency-Key (or a value no other job has). */
const idempotencyOf = (job: Job): unknown => (job.opts.idempotency ? `${job.opts.idempotency.deviceId}\n${job.opts.idempotency.key}` : job);

export class Lobbies {
  private readonly cache = new Map<string, Aggregate>();
  /** Code -> lobby id of cached lobbies that are not closed. */
  private readonly codes = new Map<string, string>();
  /** Session id -> lobby id of cached sessions. */
  private readonly sessionLobby = new Map<string, string>();
  /** Each lobby's mailbox: the jobs waiting, while a drain works through them. */
  private readonly queues = new Map<string, Job[]>();
  private readonly drains = new Set<Promise<void>>();
  private readonly maxCached: number;
  /** Commands decided again after a conflict with another replica (for logs and benchmarks). */
  conflicts = 0;
  /** Writes that committed several queued steps at once, and the steps in them. */
  batches = { writes: 0, steps: 0 };

  constructor(
    readonly store: LobbyStore,
    private readonly opts: LobbiesOptions,
  ) {
    this.maxCached = opts.maxCached ?? DEFAULT_MAX_CACHED;
  }

  /** Lobbies currently cached. */
  get cached(): number {
    return this.cache.size;
  }

  /**
   * Loads the lobbies of unfinished sessions into the cache, in one round trip (after a
   * restart, so that the steps their phones send next need one round trip, not two). A lobby
   * a command has meanwhile cached at the same or a newer version is left as it is. Returns
   * how many were loaded.
   */
  async warm(): Promise<number> {
    const loaded = await this.store.loadUnfinished(Math.floor(this.maxCached / 2));
    for (const agg of loaded.reverse()) {
      const cached = this.cache.get(agg.lobby.id);
      if (!cached || cached.version < agg.version) this.remember(agg);
    }
    this.trim('');
    return loaded.length;
  }

  /** Resolves when every command queued so far has been answered (graceful shutdown). */
  async idle(): Promise<void> {
    while (this.drains.size > 0) await Promise.allSettled([...this.drains]);
  }

  /**
   * Runs `decide` on the lobby's aggregate in its mailbox and commits what it changed, with
   * the command's reply for its Idempotency-Key, in one transaction. Throws `lobby_not_found`
   * (or `notFound()`) when the lobby does not exist.
   */
  async run<T>(ref: LobbyRef, decide: (tx: Draft) => T | Promise<T>, opts: RunOptions = {}): Promise<T> {
    const notFound = opts.notFound ?? (() => ('sessionId' in ref ? fail.sessionNotFound() : fail.lobbyNotFound()));
    // A code can come to name another lobby (the one it named closed): then resolve it again.
    for (let resolved = 1; ; resolved++) {
      let preloaded: Aggregate | null = null;
      let lobbyId = this.resolve(ref);
      if (lobbyId === null) {
        preloaded = await this.loadRef(ref);
        if (!preloaded) throw notFound();
        lobbyId = preloaded.lobby.id;
      }
      opts.located?.(lobbyId);
      const outcome = await new Promise<Outcome>((resolve) => {
        let settled = false;
        this.enqueue(lobbyId, {
          ref,
          preloaded,
          decide,
          opts,
          notFound,
          settle: (o) => {
            if (settled) return;
            settled = true;
            resolve(o);
          },
        });
      });
      if (outcome.kind === 'reply') return outcome.reply as T;
      if (outcome.kind === 'error') throw outcome.error;
      if (preloaded || resolved >= 3) throw notFound();
    }
  }

  private enqueue(key: string, job: Job): void {
    const queue = this.queues.get(key);
    if (queue) {
      queue.push(job);
      return;
    }
    const fresh = [job];
    this.queues.set(key, fresh);
    const drain = this.drain(key, fresh).finally(() => this.drains.delete(drain));
    this.drains.add(drain);
  }

  /** Works through a lobby's mailbox in arrival order; the mailbox goes when it is empty. */
  private async drain(key: string, queue: Job[]): Promise<void> {
    try {
      while (queue.length > 0) {
        const group = [queue.shift()!];
        const batch = batchKey(group[0]!);
        const keys = new Set([idempotencyOf(group[0]!)]);
        // A retry of a step already in the group waits for the next write: there its key's
        // stored reply answers it (a key kept twice in one write would fail the whole write).
        while (batch !== null && group.length < MAX_BATCH && queue.length > 0 && batchKey(queue[0]!) === batch && !keys.has(idempotencyOf(queue[0]!))) {
          keys.add(idempotencyOf(queue[0]!));
          group.push(queue.shift()!);
        }
        try {
          await this.attempt(key, group);
        } catch (err) {
          if (group.length > 1 && isKeyRace(err)) {
            // A key of the group was stored meanwhile (by another replica): one at a time, so
            // only its own command learns of it.
            for (const job of group) await this.attempt(key, [job]).catch((e: unknown) => job.settle({ kind: 'error', error: e }));
          }
          // Answers whatever the attempt left unanswered (settling twice is a no-op).
          for (const job of group) job.settle({ kind: 'error', error: err });
        }
        this.trim(key);
      }
    } finally {
      this.queues.delete(key);
    }
  }

  /**
   * One turn of the mailbox for `group` (one command, or queued steps of one session): decide
   * each on one draft, write once, and decide all again after a conflict.
   */
  private async attempt(key: string, group: Job[]): Promise<void> {
    const { ref } = group[0]!;
    const cached = this.cache.get(key);
    const preloaded = group.reduce<Aggregate | null>(
      (best, j) => (j.preloaded && (!best || j.preloaded.version > best.version) ? j.preloaded : best),
      null,
    );
    // Just loaded is at least as fresh as cached, unless a command here has moved on since.
    let agg = preloaded && (!cached || preloaded.version >= cached.version) ? preloaded : (cached ?? null);
    let fresh = agg !== null && agg === preloaded;
    if (!agg) {
      agg = await this.store.load(key, 'sessionId' in ref ? ref.sessionId : null);
      fresh = true;
    }
    for (let attempt = 1; ; attempt++) {
      if (!agg || !this.stillMatches(ref, agg)) {
        this.forget(key);
        // A cached lobby that no longer matches: the reference may name another one now.
        for (const job of group) job.settle(fresh ? { kind: 'error', error: job.notFound() } : { kind: 'resolve_again' });
        return;
      }
      this.remember(agg);
      const draft = new Draft(agg, (id) => this.store.loadSession(id, key));
      const outcomes: Outcome[] = [];
      for (const job of group) {
        const { opts } = job;
        draft.begin({
          traceparent: opts.traceparent ?? null,
          origin: opts.subject !== undefined && opts.receivedAt !== undefined ? { subject: opts.subject, receivedAt: opts.receivedAt } : undefined,
        });
        try {
          const reply = await job.decide(draft);
          if (opts.idempotency) draft.keep(opts.idempotency, reply);
          outcomes.push({ kind: 'reply', reply });
        } catch (error) {
          // A step's decision is pure (src/measurement/transition.ts): refused, it left the
          // draft as it was. A lone command that fails unexpectedly writes nothing at all.
          if (!(error instanceof ServiceError) && group.length === 1) throw error;
          outcomes.push({ kind: 'error', error });
        }
      }
      if (!draft.changed) {
        // Nothing to write: answer only if the state decided from is still the current one.
        if (fresh || (await this.store.version(key)) === agg.version) return this.settleAll(group, outcomes);
        agg = await this.reload(key, ref);
        fresh = true;
        continue;
      }
      const applied = await this.store.apply(draft.change({ sink: this.opts.sink }));
      if (applied.ok) {
        for (const spec of draft.keptKeys) spec.kept = true;
        if (group.length > 1) {
          this.batches.writes++;
          this.batches.steps += group.length;
        }
        this.committed(agg, draft, applied);
        return this.settleAll(group, outcomes);
      }
      if (applied.reason === 'missing') {
        agg = null;
        fresh = true;
        continue;
      }
      this.conflicts++;
      if (attempt >= MAX_ATTEMPTS) throw new Error(`lobby ${key}: still conflicting after ${attempt} attempts`);
      agg = aggregateFromJson(applied.state);
      fresh = true;
    }
  }

  private settleAll(group: Job[], outcomes: Outcome[]): void {
    group.forEach((job, i) => job.settle(outcomes[i]!));
  }

  /**
   * Creates a lobby: `decide` emits its broadcasts; the row is inserted (a code taken by another
   * open lobby raises a unique violation, for the caller to draw again). No other command can
   * name the lobby before this one answers, so it needs no mailbox.
   */
  async create<T>(lobby: LobbyRow, creator: ParticipantRow, decide: (tx: Draft) => T, opts: RunOptions = {}): Promise<T> {
    const agg: Aggregate = { lobby, members: [], version: 0, sessions: new Map() };
    opts.located?.(lobby.id);
    const draft = new Draft(agg, async () => null, true);
    draft.begin({
      traceparent: opts.traceparent ?? null,
      origin: opts.subject !== undefined && opts.receivedAt !== undefined ? { subject: opts.subject, receivedAt: opts.receivedAt } : undefined,
    });
    draft.members.push(creator);
    const reply = decide(draft);
    if (opts.idempotency) draft.keep(opts.idempotency, reply);
    const applied = await this.store.apply(draft.change({ sink: this.opts.sink }));
    if (!applied.ok) throw new Error(`lobby ${lobby.id}: create refused (${applied.reason})`);
    if (opts.idempotency) opts.idempotency.kept = true;
    this.committed(agg, draft, applied);
    this.trim(lobby.id);
    return reply;
  }

  /** The lobby id a reference names, if the cache knows it. */
  private resolve(ref: LobbyRef): string | null {
    if ('lobbyId' in ref) {
      if (!isUuid(ref.lobbyId)) return null;
      return ref.lobbyId;
    }
    if ('code' in ref) return this.codes.get(ref.code) ?? null;
    return this.sessionLobby.get(ref.sessionId) ?? null;
  }

  private loadRef(ref: LobbyRef): Promise<Aggregate | null> {
    if ('lobbyId' in ref) return Promise.resolve(null); // not a UUID: no such lobby
    if ('code' in ref) return this.store.loadByCode(ref.code);
    return this.store.loadBySession(ref.sessionId);
  }

  /** A code names the lobby that is not closed with that code: a closed one is another lobby. */
  private stillMatches(ref: LobbyRef, agg: Aggregate): boolean {
    if ('code' in ref) return agg.lobby.code === ref.code && agg.lobby.state !== 'closed';
    return true;
  }

  private async reload(key: string, ref: LobbyRef): Promise<Aggregate | null> {
    if ('code' in ref) {
      const byId = await this.store.load(key);
      // The lobby closed (its code may already name another lobby): resolve the code afresh.
      if (byId && byId.lobby.state !== 'closed') return byId;
      this.forget(key);
      return null;
    }
    return this.store.load(key, 'sessionId' in ref ? ref.sessionId : null);
  }

  private committed(
    agg: Aggregate,
    draft: Draft,
    applied: { version: number; session_version: number | null; prev_event_id: number | null; event_ids: number[] },
  ): void {
    // Kept: the active session and the ones this command wrote (a finished session is still
    // asked about for a while: late duplicates, results). Older ones are loaded again if named.
    const sessions = new Map<string, SessionRecord>();
    const active = draft.lobby.activeSessionId;
    const kept = agg.sessions.get(active ?? '');
    if (active && kept) sessions.set(active, kept);
    for (const w of draft.writtenSessions.values()) {
      sessions.set(w.id, { doc: w.doc, version: applied.session_version ?? (w.expect ?? 0) + 1 });
    }
    for (const id of agg.sessions.keys()) if (!sessions.has(id)) this.sessionLobby.delete(id);
    const next: Aggregate = { lobby: draft.lobby, members: draft.members, version: applied.version, sessions };
    this.remember(next);
    if (applied.event_ids.length > 0) {
      const lobbyId = draft.lobby.id;
      const createdAt = draft.eventsAt;
      this.opts.onCommit({
        lobbyId,
        prevEventId: applied.prev_event_id === null ? null : Number(applied.prev_event_id),
        rows: draft.events.map((e, i): EventRow => ({
          id: Number(applied.event_ids[i]),
          lobbyId,
          sessionId: e.sessionId ?? null,
          type: e.event,
          payload: e.data,
          targets: e.targets,
          createdAt,
          traceparent: e.traceparent ?? null,
          ...(e.origin ? { origin: e.origin } : {}),
        })),
      });
    }
  }

  /** Puts an aggregate in the cache (most recently used) with its code and sessions. */
  private remember(agg: Aggregate): void {
    const id = agg.lobby.id;
    this.cache.delete(id);
    this.cache.set(id, agg);
    if (agg.lobby.state === 'closed') this.codes.delete(agg.lobby.code);
    else this.codes.set(agg.lobby.code, id);
    for (const sid of agg.sessions.keys()) this.sessionLobby.set(sid, id);
  }

  private forget(id: string): void {
    const agg = this.cache.get(id);
    if (!agg) return;
    this.cache.delete(id);
    if (this.codes.get(agg.lobby.code) === id) this.codes.delete(agg.lobby.code);
    for (const sid of agg.sessions.keys()) this.sessionLobby.delete(sid);
  }

  /** Drops least recently used lobbies beyond the bound (never one with work queued). */
  private trim(current: string): void {
    if (this.cache.size <= this.maxCached) return;
    for (const id of this.cache.keys()) {
      if (this.cache.size <= this.maxCached) break;
      if (id === current || this.queues.has(id)) continue;
      this.forget(id);
    }
  }
}
