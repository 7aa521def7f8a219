/**
 * Abuse limits (CONTRACT section 4): a token bucket per device for every command, and a cap
 * on wrong join codes per device per minute.
 *
 * The token bucket is kept per replica, in memory: a device spread over N replicas gets at most
 * N times the rate, which is still bounded (and the Gateway usually keeps one device on one
 * connection). Wrong join codes are what a guesser spends, so their count is shared by every
 * replica (`SharedJoinFailures`, a NATS KV bucket): two replicas do not double the budget.
 */
import { ErrorCode } from '../../subjects/index.js';
import { ServiceError } from '../errors.js';

const rateLimited = (retryAfterMs: number, message: string) =>
  new ServiceError(ErrorCode.rate_limited, message, { retry_after_ms: Math.max(1, Math.ceil(retryAfterMs)) });

/** Forgets idle keys so that memory stays bounded by the active devices. */
const MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Told of every refusal (metrics). */
  onRefused: () => void = () => undefined;
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Takes one token for `key` or throws `rate_limited` with the time until the next one. */
  take(key: string): void {
    const now = this.clock();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      this.onRefused();
      throw rateLimited(((1 - b.tokens) / this.perSecond) * 1000, 'too many requests from this device');
    }
    b.tokens -= 1;
    // Re-insert so iteration order is least-recently-used first.
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/**
 * Where wrong join codes are kept: times (ms since the epoch) per device. `LocalFailureLog` is
 * one replica's memory; `SharedJoinFailures` (join-failures.ts) is shared by every replica.
 */
export interface FailureLog {
  /**
   * The device's wrong codes at or after `since`, oldest first. Once `enough` are known the
   * answer may stop there (the device is refused anyway; no need to look further).
   */
  recent(deviceId: string, since: number, enough: number): Promise<number[]>;
  record(deviceId: string, at: number): Promise<void>;
}

/** An in-memory `FailureLog` (one replica, or a unit test). */
export class LocalFailureLog implements FailureLog {
  private readonly failures = new Map<string, number[]>();

  /** Synchronous twin of `recent`, also used by the shared log for its local view. */
  recentNow(deviceId: string, since: number): number[] {
    const list = (this.failures.get(deviceId) ?? []).filter((t) => t >= since);
    if (list.length) this.failures.set(deviceId, list);
    else this.failures.delete(deviceId);
    return list;
  }

  async recent(deviceId: string, since: number): Promise<number[]> {
    return this.recentNow(deviceId, since);
  }

  /** Adds `at` (kept sorted, so out-of-order arrivals from other replicas stay oldest first). */
  add(deviceId: string, at: number): void {
    const list = this.failures.get(deviceId) ?? [];
    let i = list.length;
    while (i > 0 && list[i - 1]! > at) i--;
    list.splice(i, 0, at);
    // Re-insert so iteration order is least-recently-failed first.
    this.failures.delete(deviceId);
    this.failures.set(deviceId, list);
    if (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value!);
  }

  async record(deviceId: string, at: number): Promise<void> {
    this.add(deviceId, at);
  }

  /** Forgets every failure before `since` (periodic sweep). */
  prune(since: number): void {
    for (const [device, list] of this.failures) {
      if (list.at(-1)! < since) this.failures.delete(device);
    }
  }
}

const WINDOW_MS = 60_000;

/** Wrong join codes: at most `perMinute` in any sliding minute per device. */
export class JoinGuard {
  /** Told of every refusal (metrics). */
  onRefused: () => void = () => undefined;
  constructor(
    private readonly perMinute: number,
    private readonly log: FailureLog = new LocalFailureLog(),
    private readonly clock: () => number = Date.now,
  ) {}

  /** Throws `rate_limited` while the device has used up its wrong codes for this minute. */
  async check(deviceId: string): Promise<void> {
    const now = this.clock();
    const list = await this.log.recent(deviceId, now - WINDOW_MS + 1, this.perMinute);
    if (list.length >= this.perMinute) {
      // The oldest of the last `perMinute` failures frees its slot first.
      const oldest = list[list.length - this.perMinute]!;
      this.onRefused();
      throw rateLimited(oldest + WINDOW_MS - now, 'too many wrong lobby codes; try again later');
    }
  }

  async recordFailure(deviceId: string): Promise<void> {
    await this.log.record(deviceId, this.clock());
  }
}
