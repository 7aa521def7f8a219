/**
 * subjects/README.md, the human-readable contract, against the contract as code: every subject,
 * alias, broadcast event, error code (with its status), header, `lobby.updated` type and phase of
 * `subjects/` is written down, and the limits it states are the code's; the README's configuration
 * table names every variable config.ts reads. Also: no file of the repository points outside it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ErrorStatus,
  EVENTS_PAGE,
  Header,
  LOBBY_CODE,
  LobbyUpdateType,
  MAX_BODY_BYTES,
  MAX_DEVICE_ID,
  MAX_IDEMPOTENCY_KEY,
  MAX_PARTICIPANTS,
  NEXT_SPEAKER_DELAY,
  Phase,
  SESSION_LIMITS,
  SERVICE,
  StepStatus,
  TIMEOUT_BOUNDS,
  errorCodes,
  eventNames,
  httpRoutes,
  readRoutes,
  subjectNames,
} from '../../subjects/index.js';
import { IDEMPOTENCY_RETENTION_MS } from '../../src/transport/idempotency.js';
import { configVariableNames } from '../helpers/containers.js';

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('subjects/README.md', root), 'utf8');
/** Everything the README writes as inline code (`like.this`), code blocks left aside. */
const quoted = new Set(
  [...readme.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\s+/g, ' ')),
);
const missing = (names: readonly string[]) => names.filter((n) => !quoted.has(n));

/** The text of section `n` (`## n. Title` up to the next `## `). */
function section(n: number): string {
  const start = readme.indexOf(`\n## ${n}. `);
  if (start < 0) throw new Error(`subjects/README.md has no section ${n}`);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** The cells of the table row of section `n` whose first cell is `first`. */
function row(n: number, first: string): string[] {
  const line = section(n).split('\n').find((l) => l.startsWith(`| ${first} |`));
  if (!line) throw new Error(`subjects/README.md section ${n} has no table row for ${first}`);
  return line.split('|').slice(1, -1).map((c) => c.trim());
}

describe('contract README - completeness', () => {
  it('contract - every command subject and alias of subjects/ is in subjects/README.md', () => {
    expect(missing(subjectNames), 'add these subjects to subjects/README.md').toEqual([]);
  });

  it('contract - every broadcast event is in the broadcast table', () => {
    expect(missing(eventNames)).toEqual([]);
    for (const event of eventNames) expect(row(5, `\`${event}\``).length, event).toBe(3);
  });

  it('contract - every error code has a row in the error table with its status', () => {
    for (const code of errorCodes) {
      expect(row(2, `\`${code}\``)[1], code).toBe(String(ErrorStatus[code]));
    }
  });

  it('contract - every header, lobby.updated type, phase and step status is named', () => {
    expect(missing(Object.values(Header))).toEqual([]);
    expect(missing(LobbyUpdateType.options)).toEqual([]);
    expect(missing(Phase.options)).toEqual([]);
    expect(missing(StepStatus.options)).toEqual([]);
    expect(missing([SERVICE.name, `$SRV.INFO.${SERVICE.name}`])).toEqual([]);
  });

  it('contract - every HTTP route (commands and reads) is in the HTTP shim table', () => {
    const routes = [...Object.values(httpRoutes), ...Object.values(readRoutes)].map((r) => `${r.method} ${r.path}`);
    expect(routes.length).toBeGreaterThan(8);
    expect(routes.filter((r) => !section(6).includes(`| \`${r}\``))).toEqual([]);
  });
});

describe('contract README - limits', () => {
  it('limits - the limits table states the values of the code', () => {
    expect(row(4, 'request body')[1]).toBe(`${MAX_BODY_BYTES / 1024} KiB`);
    expect(row(4, '`Idempotency-Key`')[1]).toBe(
      `1-${MAX_IDEMPOTENCY_KEY} characters; remembered ${IDEMPOTENCY_RETENTION_MS / 3_600_000} hours`,
    );
    expect(row(4, 'lobby size (`max_participants`)')[1]).toBe(
      `${MAX_PARTICIPANTS.min}-${MAX_PARTICIPANTS.max}, default ${MAX_PARTICIPANTS.default} (\`MAX_PARTICIPANTS\`)`,
    );
    expect(row(4, 'lobby code')[1]).toBe(`${LOBBY_CODE.length} characters`);
    expect(row(4, 'session')[1]).toBe(`1-${SESSION_LIMITS.speakers} speakers, 1-${SESSION_LIMITS.microphones} microphones`);
    expect(row(4, 'phase deadlines (`timeouts`)')[1]).toBe(`${TIMEOUT_BOUNDS.min} ms to ${TIMEOUT_BOUNDS.max / 60_000} min each`);
    expect(row(4, '`lobby.events` page')[1]).toMatch(new RegExp(`^limit 1-${EVENTS_PAGE.max}, default ${EVENTS_PAGE.default};`));
    expect(row(4, '`Device-Id`')[1]).toBe(`1-${MAX_DEVICE_ID} printable ASCII characters`);
    expect(row(4, 'next speaker delay (`next_speaker_delay_ms`)')[1]).toBe(
      `${NEXT_SPEAKER_DELAY.min}-${NEXT_SPEAKER_DELAY.max} ms, default ${NEXT_SPEAKER_DELAY.default} (\`NEXT_SPEAKER_DELAY_MS\`)`,
    );
    expect(quoted.has(LOBBY_CODE.alphabet)).toBe(true);
  });

  it('configuration - every variable config.ts reads is in the README configuration table', () => {
    const main = readFileSync(new URL('README.md', root), 'utf8');
    const start = main.indexOf('\n## Configuration');
    const table = main.slice(start, main.indexOf('\n## ', start + 1));
    expect(configVariableNames().filter((v) => !table.includes(`\`${v}\``))).toEqual([]);
  });
});

describe('repository - self-contained', () => {
  it('repository - no tracked file refers to a file outside the repository (a sibling folder such as the shared contract)', () => {
    const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f && f !== 'package-lock.json');
    const offenders: string[] = [];
    for (const f of files) {
      let text: string;
      try {
        text = readFileSync(new URL(f, root), 'utf8');
      } catch {
        continue; // deleted in the work tree
      }
      text.split('\n').forEach((line, i) => {
        if (/\.\.\/shared\/|\/work\/shared|shared\/CONTRACT\.md/.test(line)) offenders.push(`${f}:${i + 1}`);
      });
    }
    expect(offenders).toEqual([]);
  });
});
