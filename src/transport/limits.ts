/**
 * Abuse limits (CONTRACT section 4): a token bucket per device for every command, and a cap
 * on wrong join codes per device per minute. Kept per replica, in memory: a device spread over
 * N replicas gets at most N times the rate, which is still bounded.
 */
import { ErrorCode } from '../../subjects/index.js';
import { ServiceError } from '../errors.js';

const rateLimited = (retryAfterMs: number, message: string) =>
  new ServiceError(ErrorCode.rate_limited, message, { retry_after_ms: Math.max(1, Math.ceil(retryAfterMs)) });

/** Forgets idle keys so that memory stays bounded by the active devices. */
const MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
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
      throw rateLimited(((1 - b.tokens) / this.perSecond) * 1000, 'too many requests from this device');
    }
    b.tokens -= 1;
    // Re-insert so iteration order is least-recently-used first.
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/** Wrong join codes: at most `perMinute` in any sliding minute per device. */
export class JoinGuard {
  private readonly failures = new Map<string, number[]>();
  constructor(
    private readonly perMinute: number,
    private readonly clock: () => number = Date.now,
  ) {}

  private recent(deviceId: string, now: number): number[] {
    const list = (this.failures.get(deviceId) ?? []).filter((t) => t > now - 60_000);
    if (list.length) this.failures.set(deviceId, list);
    else this.failures.delete(deviceId);
    return list;
  }

  /** Throws `rate_limited` while the device has used up its wrong codes for this minute. */
  check(deviceId: string): void {
    const now = this.clock();
    const list = this.recent(deviceId, now);
    if (list.length >= this.perMinute) {
      throw rateLimited(list[0]! + 60_000 - now, 'too many wrong lobby codes; try again later');
    }
  }

  recordFailure(deviceId: string): void {
    const now = this.clock();
    const list = this.recent(deviceId, now);
    list.push(now);
    this.failures.set(deviceId, list);
    if (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value!);
  }
}
