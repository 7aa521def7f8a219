import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration } from '../../src/config.js';

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

describe('config', () => {
  it('config - defaults match CONTRACT section 7', () => {
    const c = loadConfig({});
    expect(c.nats.servers).toEqual(['nats://127.0.0.1:4222']);
    expect(c.nats.stream).toBe('LOBBY_EVENTS');
    expect(c.nats.subjectPrefix).toBe('');
    expect(c.nats.eventsMaxAgeMs).toBe(7 * 24 * 3_600_000);
    expect(c.nats.token).toBeUndefined();
    expect(c.nats.user).toBeUndefined();
    expect(c.database.kind).toBe('embedded');
    expect(c.database.kind === 'embedded' && c.database.dir).toMatch(/^\.\/data(\/|$)/);
    expect(c.http).toMatchObject({ host: '127.0.0.1', port: 8001, authToken: undefined });
    expect(c.gatewayUrl).toBeUndefined();
    expect(c.gatewayToken).toBeUndefined();
    expect(c.limits).toEqual({ maxParticipants: 32, ratePerSecond: 20, rateBurst: 40, joinFailuresPerMinute: 10 });
    expect(c.measurement).toEqual({
      presenceGraceMs: 10_000,
      readyMs: 30_000,
      audioMs: 60_000,
      recordingStartMs: 15_000,
      playbackGraceMs: 30_000,
      uploadMs: 120_000,
      nextSpeakerDelayMs: 1_000,
    });
  });

  it('config - HTTP_AUTH_TOKEN guards inbound HTTP; INTERNAL_AUTH_TOKEN is only sent to the Gateway', () => {
    // v1 wiring: the Gateway and the service share INTERNAL_AUTH_TOKEN; nothing inbound is guarded.
    const v1 = loadConfig({ INTERNAL_AUTH_TOKEN: 'shared', GATEWAY_URL: 'http://gw:8000' });
    expect(v1.http.authToken).toBeUndefined();
    expect(v1.gatewayToken).toBe('shared');
    const both = loadConfig({ INTERNAL_AUTH_TOKEN: 'out', HTTP_AUTH_TOKEN: 'in' });
    expect(both.http.authToken).toBe('in');
    expect(both.gatewayToken).toBe('out');
  });

  it('config - NEXT_SPEAKER_DELAY_MS is 0-60000', () => {
    expect(loadConfig({ NEXT_SPEAKER_DELAY_MS: '0' }).measurement.nextSpeakerDelayMs).toBe(0);
    expect(loadConfig({ NEXT_SPEAKER_DELAY_MS: '60000' }).measurement.nextSpeakerDelayMs).toBe(60_000);
    expect(() => loadConfig({ NEXT_SPEAKER_DELAY_MS: '60001' })).toThrow(/NEXT_SPEAKER_DELAY_MS/);
  });

  it('config - empty variables mean the default', () => {
    const c = loadConfig({ HTTP_PORT: '', MAX_PARTICIPANTS: '', NATS_URL: '' });
    expect(c.http.port).toBe(8001);
    expect(c.limits.maxParticipants).toBe(32);
    expect(c.nats.servers).toEqual(['nats://127.0.0.1:4222']);
  });

  it('config - values are read and typed', () => {
    const c = loadConfig({
      NATS_URL: 'nats://a:4222',
      NATS_STREAM: 'EVENTS_2',
      DATABASE_URL: 'postgresql://u:p@db:5432/lobby',
      HTTP_HOST: '0.0.0.0',
      HTTP_PORT: '9000',
      MAX_PARTICIPANTS: '8',
      RATE_LIMIT_PER_SECOND: '5',
      RATE_LIMIT_BURST: '7',
      JOIN_CODE_FAILURES_PER_MINUTE: '3',
      READY_TIMEOUT_MS: '1000',
      GATEWAY_URL: 'http://gw:8000/',
      NATS_USER: 'u',
      NATS_PASSWORD: 'p',
    });
    expect(c.database).toEqual({ kind: 'postgresql', url: 'postgresql://u:p@db:5432/lobby' });
    expect(c.nats.stream).toBe('EVENTS_2');
    expect(c.http).toMatchObject({ host: '0.0.0.0', port: 9000, publicBaseUrl: 'http://0.0.0.0:9000' });
    expect(c.limits).toEqual({ maxParticipants: 8, ratePerSecond: 5, rateBurst: 7, joinFailuresPerMinute: 3 });
    expect(c.measurement.readyMs).toBe(1000);
    expect(c.gatewayUrl).toBe('http://gw:8000');
    expect(c.nats).toMatchObject({ user: 'u', password: 'p' });
    expect(loadConfig({ DATABASE_URL: 'pglite:/tmp/x' }).database).toEqual({ kind: 'embedded', dir: '/tmp/x' });
  });

  it('config - NATS_URL takes a comma-separated cluster list', () => {
    expect(loadConfig({ NATS_URL: 'nats://a:4222,nats://b:4222' }).nats.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(loadConfig({ NATS_URL: ' nats://a:4222 , nats://b:4223 ,' }).nats.servers).toEqual(['nats://a:4222', 'nats://b:4223']);
    expect(configError({ NATS_URL: 'nats://a:4222,http://b' })).toMatch(/NATS_URL/);
  });

  it('config - EVENTS_MAX_AGE takes durations', () => {
    const age = (v: string) => loadConfig({ EVENTS_MAX_AGE: v }).nats.eventsMaxAgeMs;
    expect(age('7d')).toBe(7 * 86_400_000);
    expect(age('12h')).toBe(12 * 3_600_000);
    expect(age('30m')).toBe(30 * 60_000);
    expect(age('45s')).toBe(45_000);
    expect(age('500ms')).toBe(500);
    expect(age('90')).toBe(90_000); // a plain number is seconds
    expect(age('1.5h')).toBe(5_400_000);
    for (const bad of ['forever', '0', '-1d', '7 days', '1w']) {
      expect(configError({ EVENTS_MAX_AGE: bad }), bad).toMatch(/^invalid configuration: EVENTS_MAX_AGE /);
    }
    expect(parseDuration('0s')).toBeUndefined();
  });

  it('config - every bad value gives one line naming the variable', () => {
    const bad: Record<string, string[]> = {
      NATS_URL: ['http://x', 'a b'],
      NATS_STREAM: ['bad.name', 'x'.repeat(65)],
      NATS_SUBJECT_PREFIX: ['a..b', 'has space'],
      DATABASE_URL: ['mysql://db/x', 'file.db'],
      HTTP_PORT: ['abc', '70000', '-1', '1.5'],
      GATEWAY_URL: ['ftp://x', 'not a url'],
      PUBLIC_BASE_URL: ['gopher://x'],
      LOG_LEVEL: ['loud'],
      EVENTS_MAX_AGE: ['soon'],
      MAX_PARTICIPANTS: ['1', '65', 'many'],
      RATE_LIMIT_PER_SECOND: ['0', 'x'],
      RATE_LIMIT_BURST: ['0'],
      JOIN_CODE_FAILURES_PER_MINUTE: ['0'],
      PRESENCE_GRACE_MS: ['-5', 'x'],
      READY_TIMEOUT_MS: ['50', '600001'],
      AUDIO_TIMEOUT_MS: ['x'],
      RECORDING_START_TIMEOUT_MS: ['99'],
      PLAYBACK_GRACE_MS: ['x'],
      UPLOAD_TIMEOUT_MS: ['0'],
    };
    for (const [name, values] of Object.entries(bad)) {
      for (const value of values) {
        const msg = configError({ [name]: value });
        expect(msg, `${name}=${value}`).toMatch(new RegExp(`^invalid configuration: ${name} `));
        expect(msg).not.toContain('\n');
      }
    }
  });

  it('config - several bad variables still give one line', () => {
    const msg = configError({ HTTP_PORT: 'abc', MAX_PARTICIPANTS: '999', LOG_LEVEL: 'loud' });
    expect(msg).not.toContain('\n');
    expect(msg).toMatch(/^invalid configuration: (HTTP_PORT|MAX_PARTICIPANTS|LOG_LEVEL) /);
  });

  it('config - NATS_USER and NATS_PASSWORD go together', () => {
    expect(configError({ NATS_USER: 'u' })).toMatch(/NATS_USER/);
    expect(configError({ NATS_PASSWORD: 'hunter2' })).not.toContain('hunter2');
  });

  it('config - plain secrets are never echoed in the error', () => {
    // Secret-named variables accept any non-empty value; a refusal elsewhere must not show them.
    const msg = configError({ NATS_TOKEN: 's3cret-token', INTERNAL_AUTH_TOKEN: 'hunter2', NATS_PASSWORD: 'pw-123', HTTP_PORT: 'x' });
    expect(msg).not.toMatch(/s3cret-token|hunter2|pw-123/);
  });

  // Known bug in src/config.ts (reported, not owned here): a refused URL is echoed whole,
  // credentials included. Flip to `it` once fixed.
  it('config - credentials inside a refused URL are not echoed', () => {
    for (const [name, value] of [
      ['DATABASE_URL', 'mysql://lobby:hunter2@db/x'],
      ['NATS_URL', 'nats://lobby:hunter2@a:4222,not a url'],
      ['GATEWAY_URL', 'ftp://lobby:hunter2@gw'],
    ] as const) {
      const msg = configError({ [name]: value });
      expect(msg).toMatch(new RegExp(`^invalid configuration: ${name} `));
      expect(msg, name).not.toContain('hunter2');
    }
  });
});
