import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../src/errors.js';
import { JoinGuard, LocalFailureLog, TokenBuckets } from '../../src/transport/limits.js';

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** The `rate_limited` error `fn` throws, or a failure if it does not. */
function limited(fn: () => void): ServiceError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe('rate_limited');
    expect((err as ServiceError).status).toBe(429);
    return err as ServiceError;
  }
  throw new Error('expected rate_limited');
}
/** The `rate_limited` error the promise of `fn` rejects with. */
async function limitedAsync(fn: () => Promise<void>): Promise<ServiceError> {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected rate_limited').toBeInstanceOf(ServiceError);
  expect((err as ServiceError).code).toBe('rate_limited');
  return err as ServiceError;
}
const retryAfter = (e: ServiceError) => e.details?.retry_after_ms as number;

describe('token bucket', () => {
  it('limits - a burst passes at once, then the rate, with retry_after_ms to the next token', () => {
    const clock = manualClock();
    const b = new TokenBuckets(2, 3, clock.now);
    for (let i = 0; i < 3; i++) b.take('d');
    expect(retryAfter(limited(() => b.take('d')))).toBe(500);
    clock.advance(200);
    expect(retryAfter(limited(() => b.take('d')))).toBe(300);
    clock.advance(300);
    b.take('d'); // one token after 500 ms at 2/s
    expect(retryAfter(limited(() => b.take('d')))).toBe(500);
  });

  it('limits - refused requests do not use up tokens', () => {
    const clock = manualClock();
    const b = new TokenBuckets(2, 1, clock.now);
    b.take('d');
    for (let i = 0; i < 10; i++) limited(() => b.take('d'));
    clock.advance(500);
    b.take('d');
  });

  it('limits - an idle bucket refills to the burst and no further', () => {
    const clock = manualClock();
    const b = new TokenBuckets(10, 4, clock.now);
    for (let i = 0; i < 4; i++) b.take('d');
    limited(() => b.take('d'));
    clock.advance(3_600_000);
    for (let i = 0; i < 4; i++) b.take('d');
    expect(retryAfter(limited(() => b.take('d')))).toBe(100);
  });

  it('limits - each device has its own bucket', () => {
    const clock = manualClock();
    const b = new TokenBuckets(1, 1, clock.now);
    b.take('a');
    limited(() => b.take('a'));
    b.take('b');
    limited(() => b.take('b'));
  });

  it('limits - retry_after_ms is a whole number of at least 1', () => {
    const clock = manualClock();
    const b = new TokenBuckets(3, 1, clock.now);
    b.take('d');
    clock.advance(333); // 0.999 tokens: a third of a millisecond short
    const ms = retryAfter(limited(() => b.take('d')));
    expect(Number.isInteger(ms)).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(1);
    expect(ms).toBeLessThanOrEqual(1);
  });
});

describe('join guard', () => {
  it('limits - 10 wrong codes a minute, then rate_limited until the oldest is a minute old', async () => {
    const clock = manualClock();
    const g = new JoinGuard(10, new LocalFailureLog(), clock.now);
    for (let i = 0; i < 10; i++) {
      await g.check('d');
      await g.recordFailure('d');
      clock.advance(1_000);
    }
    // The 11th attempt, 10 s after the first failure.
    const e = await limitedAsync(() => g.check('d'));
    expect(retryAfter(e)).toBe(50_000);
    expect(e.message).toMatch(/code/);
  });

  it('limits - the window slides: each failure frees its slot a minute later', async () => {
    const clock = manualClock();
    const g = new JoinGuard(3, new LocalFailureLog(), clock.now);
    await g.recordFailure('d'); // t = 0
    clock.advance(20_000);
    await g.recordFailure('d'); // t = 20 s
    clock.advance(20_000);
    await g.recordFailure('d'); // t = 40 s
    expect(retryAfter(await limitedAsync(() => g.check('d')))).toBe(20_000);
    clock.advance(19_999);
    expect(retryAfter(await limitedAsync(() => g.check('d')))).toBe(1);
    clock.advance(1); // t = 60 s: the first failure is out of the window
    await g.check('d');
    await g.recordFailure('d'); // t = 60 s
    expect(retryAfter(await limitedAsync(() => g.check('d')))).toBe(20_000); // until the one at 20 s expires
    clock.advance(60_000);
    await g.check('d'); // all expired
  });

  it('limits - successful checks cost nothing and devices are independent', async () => {
    const clock = manualClock();
    const g = new JoinGuard(2, new LocalFailureLog(), clock.now);
    for (let i = 0; i < 100; i++) await g.check('d');
    await g.recordFailure('d');
    await g.recordFailure('d');
    await limitedAsync(() => g.check('d'));
    await g.check('other');
  });

  it('limits - more failures than the limit (concurrent guesses): the retry waits for enough of them to expire', async () => {
    const clock = manualClock();
    const g = new JoinGuard(2, new LocalFailureLog(), clock.now);
    for (let i = 0; i < 4; i++) {
      await g.recordFailure('d'); // t = 0, 1, 2, 3 s
      clock.advance(1_000);
    }
    // Four in the window, two allowed: the device may guess again once the one at 2 s expires.
    expect(retryAfter(await limitedAsync(() => g.check('d')))).toBe(58_000);
  });
});
