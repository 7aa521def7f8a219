// Abuse limits from the environment (CONTRACT section 4): the per-device token bucket and the
// cap on wrong join codes, each in a service started with low limits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/infra.js';
import { device, startHarness } from '../helpers/service.js';
import { expectError } from '../helpers/lobby.js';

let rate: Awaited<ReturnType<typeof startHarness>>;
let codes: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  [rate, codes] = await Promise.all([
    startHarness({ RATE_LIMIT_PER_SECOND: '2', RATE_LIMIT_BURST: '3' }),
    startHarness({ JOIN_CODE_FAILURES_PER_MINUTE: '3', MAX_PARTICIPANTS: '3' }),
  ]);
});
afterAll(async () => {
  await Promise.all([rate?.stop(), codes?.stop()]);
});

describe('rate limit', () => {
  it('limits - the 4th immediate request of a device is rate_limited with retry_after_ms', async () => {
    const phone = device('phone');
    const replies = await Promise.all(Array.from({ length: 4 }, () => rate.client.send('lobby.create', phone, {})));
    expect(replies.filter((r) => r.ok)).toHaveLength(3);
    const [limited] = replies.filter((r) => !r.ok);
    const e = expectError(limited!, 'rate_limited');
    expect(e.details?.retry_after_ms).toBeGreaterThan(0);
    expect(e.details?.retry_after_ms).toBeLessThanOrEqual(500); // one token at 2 a second
    // Another device is not held back.
    expect((await rate.client.send('lobby.create', device('other'), {})).ok).toBe(true);
    // The bucket refills at the rate: the device gets through again.
    await waitFor(async () => (await rate.client.send('lobby.get', phone, { code: 'ZZZZZ2' })).error?.code === 'lobby_not_found', {
      intervalMs: 100,
      message: 'the bucket did not refill',
    });
  });

  it('limits - refused and invalid requests count against the bucket too', async () => {
    const phone = device('phone');
    for (let i = 0; i < 3; i++) expectError(await rate.client.send('lobby.get', phone, {}), 'invalid_request');
    expectError(await rate.client.send('lobby.create', phone, {}), 'rate_limited');
  });

  it('limits - the HTTP shim\'s own reads are not held back by a device bucket', async () => {
    const lobby = await rate.client.call('lobby.create', device('admin'), {});
    const statuses = await Promise.all(
      Array.from({ length: 8 }, () => fetch(`${rate.app.httpUrl}/lobbies/${lobby.lobby_id}`).then((r) => r.status)),
    );
    expect(statuses).toEqual(Array(8).fill(200));
  });
});

describe('join code limit', () => {
  it('limits - JOIN_CODE_FAILURES_PER_MINUTE wrong codes, then rate_limited', async () => {
    const lobby = await codes.client.call('lobby.create', device('admin'), {});
    const guesser = device('guesser');
    for (const wrong of ['ZZZZZ2', 'nope', 'YYYYY3']) {
      expectError(await codes.client.send('lobby.join', guesser, { code: wrong }), 'lobby_not_found');
    }
    const e = expectError(await codes.client.send('lobby.join', guesser, { code: lobby.code }), 'rate_limited');
    expect(e.details?.retry_after_ms).toBeGreaterThan(55_000);
    expect(e.details?.retry_after_ms).toBeLessThanOrEqual(60_000);
    // Other commands of the device and joins of other devices go on.
    expect((await codes.client.send('lobby.get', guesser, { lobby_id: lobby.lobby_id })).ok).toBe(true);
    expect((await codes.client.send('lobby.join', device('friend'), { code: lobby.code })).ok).toBe(true);
  });

  it('limits - MAX_PARTICIPANTS sets the default lobby size', async () => {
    const lobby = await codes.client.call('lobby.create', device('admin'), {});
    expect(lobby.max_participants).toBe(3);
    for (let i = 0; i < 2; i++) await codes.client.call('lobby.join', device('g'), { code: lobby.code });
    expectError(await codes.client.send('lobby.join', device('g'), { code: lobby.code }), 'lobby_full');
    expect((await codes.client.call('lobby.create', device('admin'), { max_participants: 10 })).max_participants).toBe(10);
  });

  it('limits - successful joins do not count as wrong codes', async () => {
    const phone = device('phone');
    for (let i = 0; i < 5; i++) {
      const l = await codes.client.call('lobby.create', device('admin'), {});
      expect((await codes.client.send('lobby.join', phone, { code: l.code })).ok).toBe(true);
    }
  });
});
