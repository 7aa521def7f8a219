/**
 * The Dockerfile's HEALTHCHECK command, run as Docker would run it (the same argv, the port from
 * HTTP_PORT) against a real service: healthy when the service answers, unhealthy when it does not.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execForm, readDockerfile } from '../helpers/containers.js';
import { freePort } from '../helpers/infra.js';
import { startHarness } from '../helpers/service.js';

let h: Awaited<ReturnType<typeof startHarness>>;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Runs the HEALTHCHECK argv with HTTP_PORT set; resolves with its exit code. */
function healthcheck(port: number): Promise<number> {
  const hc = readDockerfile().at(-1)!.instructions.find((i) => i.op === 'HEALTHCHECK')!;
  const [cmd, ...args] = execForm(hc.args);
  return new Promise((resolve) => {
    execFile(cmd!, args, { env: { ...process.env, HTTP_PORT: String(port) }, timeout: 10_000 }, (err) => {
      resolve(err ? (typeof err.code === 'number' ? err.code : -1) : 0);
    });
  });
}

describe('containers - HEALTHCHECK', () => {
  it('healthcheck - exits 0 against a healthy service and 1 where nothing answers', async () => {
    const port = Number(new URL(h.app.httpUrl).port);
    expect(await healthcheck(port)).toBe(0);
    expect(await healthcheck(await freePort())).toBe(1);
  });
});
