/**
 * Wrong join codes shared by every replica (CONTRACT section 4: 10 a minute per device), in a
 * NATS KV bucket `<NATS_STREAM>_JOIN_FAILURES`.
 *
 * - One key per wrong code, `f.<device hash>.<ms>_<nuid>`: no read-modify-write, so replicas
 *   never conflict, and the time is in the key's name.
 * - The bucket's max age is the window (nats-server 2.9 has no per-key TTL, and needs none
 *   here): a key disappears when its failure leaves the sliding minute, so the keys of a device
 *   are exactly its failures of the last minute.
 * - Every replica watches the bucket into a local view. A device the view has no failure for
 *   passes without any round trip: that is every honest join. A device with failures on record
 *   asks the bucket for its keys (one STREAM.INFO filtered on the device): a failure recorded a
 *   moment ago on another replica, not yet delivered by the watch, still counts at the limit.
 *   The view is only trusted to say "none" (or "already over the limit"); the watch delivers
 *   a failure to every replica within a route hop, far quicker than a phone can guess again.
 *   A look-up costs the server a scan of the bucket's keys (the last minute's wrong codes).
 * - Fail open: with NATS or the bucket unreachable, a join is decided from the local view and a
 *   wrong code is kept locally (one warning per outage), never refused for the outage.
 */
import { createHash } from 'node:crypto';
import { Empty, nanos, nuid, type NatsConnection } from '@nats-io/nats-core';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { effectiveReplicas, ensureStreamConfig } from '../outbox/jetstream.js';
import type { FailureLog } from './limits.js';
import { natsConnected } from './nats.js';

/** The bucket of a deployment: one per event stream, so test runs and prefixes stay apart. */
export const joinFailuresBucket = (stream: string) => `${stream}_JOIN_FAILURES`;

const WINDOW_MS = 60_000;
/** A join waits at most this long for the bucket before deciding from the local view. */
const STORE_TIMEOUT_MS = 1_000;
/** How long start-up waits for the watch to deliver the failures already in the bucket. */
const CATCH_UP_MS = 2_000;
/** Bounds the bucket if a flood of device ids guesses at once (the oldest keys go first). */
const MAX_BUCKET_BYTES = 64 * 1024 * 1024;
/** Bounds the local view the same way (least-recently-failed device first). */
const MAX_DEVICES = 100_000;
const KEY_ROOT = 'f';

/** Device ids are up to 200 printable characters: a hash makes a key token (and hides them). */
const deviceToken = (deviceId: string) => createHash('sha256').update(deviceId).digest('hex').slice(0, 32);
/** `<ms>_<nuid>` -> ms. */
const timeOf = (suffix: string) => Number(suffix.slice(0, suffix.indexOf('_')));

export class SharedJoinFailures implements FailureLog {
  /** Device token -> (key suffix -> time): failures this replica knows of. */
  private readonly view = new Map<string, Map<string, number>>();
  private stopped = false;
  private degraded = false;
  private watcher?: { stop(): void };
  private readonly sweep: NodeJS.Timeout;
  private readonly subjectRoot: string;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly stream: string,
    bucket: string,
    private readonly log: Logger,
  ) {
    this.subjectRoot = `$KV.${bucket}.${KEY_ROOT}`;
    this.sweep = setInterval(() => this.prune(Date.now() - WINDOW_MS), 10_000);
    this.sweep.unref();
  }

  /** Creates (or updates) the bucket, starts the watch and waits until it has caught up. */
  static async open(nc: NatsConnection, config: Config['nats'], log: Logger): Promise<SharedJoinFailures> {
    const bucket = joinFailuresBucket(config.stream);
    const stream = `KV_${bucket}`;
    // Creating a replicated stream takes a cluster round or two: a longer timeout than look-ups.
    const admin = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
    const jsm = await jetstreamManager(nc, { timeout: STORE_TIMEOUT_MS, checkAPI: false });
    // The stream behind the bucket, as `nats kv add` makes it, with the window as max age.
    await ensureStreamConfig(
      admin,
      {
        name: stream,
        subjects: [`$KV.${bucket}.>`],
        max_age: nanos(WINDOW_MS),
        max_msgs_per_subject: 1,
        max_bytes: MAX_BUCKET_BYTES,
        allow_rollup_hdrs: true,
        deny_delete: true,
      },
      { storage: StorageType.File, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old },
      effectiveReplicas(nc, config.streamReplicas, log, stream),
      log,
    );
    const kv = await new Kvm(jetstream(nc, { timeout: STORE_TIMEOUT_MS })).open(bucket);
    const store = new SharedJoinFailures(nc, jsm, kv, stream, bucket, log);
    const empty = (await admin.streams.info(stream)).state.messages === 0;
    await store.startWatch(empty);
    return store;
  }

  async recent(deviceId: string, since: number, enough: number): Promise<number[]> {
    const token = deviceToken(deviceId);
    const known = this.known(token, since);
    // Nobody saw this device fail: the fast path, no round trip.
    if (known.size === 0) return [];
    // Known here to be over the limit already (a guesser retrying): no round trip either.
    if (known.size < enough && this.usable()) {
      try {
        const info = await this.jsm.streams.info(this.stream, { subjects_filter: `${this.subjectRoot}.${token}.*` });
        for (const subject of Object.keys(info.state.subjects ?? {})) {
          const suffix = subject.slice(subject.lastIndexOf('.') + 1);
          const at = timeOf(suffix);
          if (at >= since) known.set(suffix, at);
        }
        this.reachable();
      } catch (err) {
        this.unreachable(err);
      }
    }
    return [...known.values()].sort((a, b) => a - b);
  }

  async record(deviceId: string, at: number): Promise<void> {
    const token = deviceToken(deviceId);
    const suffix = `${at}_${nuid.next()}`;
    // Known here at once; the watch brings the same key back later, which changes nothing.
    this.remember(token, suffix, at);
    if (!this.usable()) return this.unreachable(new Error('NATS is disconnected'));
    try {
      // Awaited: the caller replies only once every replica can see this failure.
      await this.kv.put(`${KEY_ROOT}.${token}.${suffix}`, Empty, { timeout: STORE_TIMEOUT_MS });
      this.reachable();
    } catch (err) {
      this.unreachable(err);
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.sweep);
    this.watcher?.stop();
  }

  /** The device's failures at or after `since` that this replica knows of (a copy). */
  private known(token: string, since: number): Map<string, number> {
    const mine = this.view.get(token);
    const out = new Map<string, number>();
    if (!mine) return out;
    for (const [suffix, at] of mine) {
      if (at >= since) out.set(suffix, at);
      else mine.delete(suffix);
    }
    if (mine.size === 0) this.view.delete(token);
    return out;
  }

  private remember(token: string, suffix: string, at: number): void {
    if (at < Date.now() - WINDOW_MS) return;
    const mine = this.view.get(token) ?? new Map<string, number>();
    mine.set(suffix, at);
    this.view.delete(token);
    this.view.set(token, mine);
    if (this.view.size > MAX_DEVICES) this.view.delete(this.view.keys().next().value!);
  }

  private prune(since: number): void {
    for (const token of [...this.view.keys()]) this.known(token, since);
  }

  /**
   * Watches the bucket for the rest of the process (restarting the watch if it ends) and
   * resolves once the failures already stored have been delivered, or after `CATCH_UP_MS`.
   */
  private startWatch(empty: boolean): Promise<void> {
    let caughtUp!: () => void;
    const ready = new Promise<void>((resolve) => (caughtUp = resolve));
    if (empty) caughtUp();
    const onEntry = (e: KvWatchEntry) => {
      const [, token, suffix] = e.key.split('.');
      if (e.operation === 'PUT' && token && suffix) this.remember(token, suffix, timeOf(suffix));
      // `delta` is how many stored entries follow this one: 0 is the end of the backlog.
      if (e.delta === 0) caughtUp();
    };
    void (async () => {
      while (!this.stopped) {
        try {
          const iter = await this.kv.watch({ key: `${KEY_ROOT}.>` });
          this.watcher = iter;
          if (this.stopped) iter.stop();
          for await (const e of iter) onEntry(e);
        } catch (err) {
          if (!this.stopped) this.unreachable(err);
        }
        if (!this.stopped) await new Promise((r) => setTimeout(r, STORE_TIMEOUT_MS).unref());
      }
    })();
    const timer = new Promise<void>((resolve) => setTimeout(resolve, CATCH_UP_MS).unref());
    return Promise.race([ready, timer]);
  }

  private usable(): boolean {
    return !this.stopped && natsConnected(this.nc);
  }

  private unreachable(err: unknown): void {
    if (this.degraded) return;
    this.degraded = true;
    this.log.warn(
      { error: err instanceof Error ? err.message : String(err) },
      'join-failure store unreachable: wrong join codes are counted by this replica alone until it is back',
    );
  }

  private reachable(): void {
    if (!this.degraded) return;
    this.degraded = false;
    this.log.info('join-failure store reachable again');
  }
}
