import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMITTED_CONFIG, NATS_USERS, renderNatsConfig } from '../../deploy/nats/render.js';
import { natsServerBinary } from '../helpers/infra.js';

describe('deploy/nats', () => {
  it('deploy - the committed nats-server.conf is the rendering for the default prefix and stream (npm run nats:config)', () => {
    expect(readFileSync(COMMITTED_CONFIG, 'utf8')).toBe(renderNatsConfig());
  });

  it('deploy - nats-server accepts the committed configuration, and refuses it without the passwords', () => {
    const passwords = Object.fromEntries(Object.values(NATS_USERS).map((v) => [v, 'x']));
    const check = (env: Record<string, string>) =>
      spawnSync(natsServerBinary(), ['-c', COMMITTED_CONFIG, '-t'], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });
    expect(check(passwords).status).toBe(0);
    const missing = check({});
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/NATS_LOBBY_PASSWORD/);
  });

  it('deploy - a prefix and stream reach every deployment subject, never $SRV, _INBOX or the JetStream API roots', () => {
    const conf = renderNatsConfig({ prefix: 'staging.', stream: 'EV_STAGING' });
    expect(conf).toContain('"staging.lobby.*.>"');
    expect(conf).toContain('"staging.lobby.*"');
    expect(conf).toContain('"staging._lobby.outbox.kick"');
    expect(conf).toContain('"$JS.API.STREAM.CREATE.EV_STAGING"');
    expect(conf).toContain('"$KV.EV_STAGING_JOIN_FAILURES.>"');
    expect(conf).not.toMatch(/staging\.(\$SRV|_INBOX|\$JS|\$KV)/);
    expect(conf).not.toContain('LOBBY_EVENTS');
    // Passwords are references to the environment, never values.
    expect(conf.match(/password: .*/g)).toEqual(Object.values(NATS_USERS).map((v) => `password: $${v}`));
  });
});
