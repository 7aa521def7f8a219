/**
 * `npm run timeline -- <session_id>` (run by src/cli/timeline.ts): a session's steps and
 * broadcasts as a sequence chart in the terminal (one lane per device), or as JSON (`--json`).
 *
 * Where it reads from:
 * - `--url URL`: a running service's `GET /sessions/{id}/timeline` (token from `--token` or
 *   HTTP_AUTH_TOKEN);
 * - else, with DATABASE_URL set: that database, directly, as the service would read it (read
 *   only, no migrations). An embedded `pglite:` directory only while its service is stopped:
 *   the embedded database serves one process;
 * - else: the service on this machine, `http://127.0.0.1:<HTTP_PORT or 8001>`.
 */
import { parseArgs } from 'node:util';
import { SessionTimeline } from '../../subjects/index.js';
import { loadConfig } from '../config.js';
import { CliRefusal, runCli, withSql, type CliIo } from '../cli/io.js';
import { createTimelineStore } from './store.js';
import { renderText } from './text.js';

const USAGE = `usage: npm run timeline -- <session_id> [options]

  --url URL       ask a running service (GET /sessions/{id}/timeline)
  --token TOKEN   the service's HTTP_AUTH_TOKEN (default $HTTP_AUTH_TOKEN)
  --json          print the timeline as JSON instead of the chart
  --color         colours even when not on a terminal (default: only on a terminal, never with NO_COLOR)
  -h, --help      this text

Without --url it reads DATABASE_URL's database directly when that is set (postgresql://, or a
pglite: directory whose service is stopped), else asks http://127.0.0.1:$HTTP_PORT (8001).`;

async function fromHttp(base: string, sessionId: string, token: string | undefined): Promise<SessionTimeline> {
  const url = `${base.replace(/\/+$/, '')}/sessions/${encodeURIComponent(sessionId)}/timeline`;
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    const why = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    throw new CliRefusal(`no service answers at ${base} (${why}); start one, pass --url, or set DATABASE_URL to read the database`);
  }
  if (res.status === 404) throw new CliRefusal(`session not found: ${sessionId}`);
  if (res.status === 401) throw new CliRefusal(`${base} wants its token: set HTTP_AUTH_TOKEN or pass --token`);
  if (!res.ok) throw new CliRefusal(`${url} answered ${res.status}: ${await res.text()}`);
  return SessionTimeline.parse(await res.json());
}

async function fromDatabase(databaseUrl: string, sessionId: string): Promise<SessionTimeline> {
  const t = await withSql(loadConfig({ DATABASE_URL: databaseUrl }).database, (sql) => createTimelineStore(sql).timeline(sessionId));
  if (!t) throw new CliRefusal(`session not found: ${sessionId}`);
  return t;
}

/** Runs `npm run timeline` with `argv`; resolves with the exit code (failures are written to stderr). */
export async function timelineCli(argv: string[], io: CliIo): Promise<number> {
  return runCli('timeline', io, () => run(argv, io));
}

async function run(argv: string[], { env, stdout, stderr }: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean', default: false },
        color: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    stderr.write(`timeline: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) {
    stderr.write(`timeline: give one session id\n\n${USAGE}\n`);
    return 2;
  }
  const sessionId = positionals[0]!;
  const databaseUrl = env.DATABASE_URL?.trim();
  const t =
    values.url === undefined && databaseUrl
      ? await fromDatabase(databaseUrl, sessionId)
      : await fromHttp(values.url ?? `http://127.0.0.1:${env.HTTP_PORT?.trim() || '8001'}`, sessionId, values.token ?? env.HTTP_AUTH_TOKEN);
  if (values.json) {
    stdout.write(`${JSON.stringify(t, null, 2)}\n`);
  } else {
    const color = values.color || (stdout.isTTY === true && !env.NO_COLOR);
    stdout.write(`${renderText(t, { color })}\n`);
  }
  return 0;
}

