/**
 * `npm run replay` (run by src/cli/replay.ts):
 *
 *   npm run replay -- --lobby <lobby_id> [--from <id>] [--json]
 *       a lobby's broadcasts as the JetStream stream holds them, one line each (NDJSON with --json);
 *   npm run replay -- --rebuild-stream [--all]
 *       disaster recovery: republishes the database event log into an empty stream.
 *
 * It reads the service's environment (NATS_URL, credentials, NATS_SUBJECT_PREFIX, NATS_STREAM,
 * DATABASE_URL, EVENTS_MAX_AGE, ...) through config.ts, so it finds what the service uses.
 */
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Envelope } from '../../subjects/index.js';
import { CliRefusal, runCli, withSql, type CliIo } from '../cli/io.js';
import { loadConfig, type Config } from '../config.js';
import { createLogger } from '../log.js';
import { authOptions } from '../transport/nats.js';
import { lobbyHistory, rebuildStream, ReplayRefusal } from './stream.js';

const USAGE = `usage: npm run replay -- --lobby <lobby_id> [--from <id>] [--json]
       npm run replay -- --rebuild-stream [--all]

  --lobby ID        print this lobby's broadcasts held by the stream, oldest first
  --from ID         start at the first event whose envelope id is >= ID
  --json            one envelope per line (NDJSON) instead of the readable line
  --rebuild-stream  republish the database event log (DATABASE_URL) into the stream, which must be
                    empty or absent (it is created like the service creates it); stop the service first
  --all             with --rebuild-stream: also events older than EVENTS_MAX_AGE
  --nats-url URL    NATS server(s) (default $NATS_URL or nats://127.0.0.1:4222)
  --prefix PREFIX   subject prefix (default $NATS_SUBJECT_PREFIX)
  --stream NAME     stream (default $NATS_STREAM or LOBBY_EVENTS)
  -h, --help        this text

Credentials come from NATS_CREDS, NATS_TOKEN or NATS_USER / NATS_PASSWORD, as for the service.`;

const short = (id: string) => id.slice(0, 8);
const UUIDS = /([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
/** Fields every line has already (lobby, session) or too big for one line. */
const LEFT_OUT = new Set(['lobby', 'lobby_id', 'session_id', 'room', 'phase_description']);

/** A value shortened for one line: UUIDs to their first 8 characters, long text cut. */
function brief(v: string): string {
  const s = v.replace(UUIDS, '$1');
  return s.length > 48 ? `${s.slice(0, 47)}…` : s;
}

/** `key=value` for the few fields of `data` that tell events apart (never the whole lobby). */
function summary(data: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(data)) {
    if (LEFT_OUT.has(k)) continue;
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) parts.push(`${k}=${brief(String(v))}`);
    else if (Array.isArray(v)) parts.push(`${k}=[${v.length}]`);
  }
  const text = parts.join(' ');
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

/** One readable line: id, time, event, targets, session, data summary. */
export function formatEnvelope(e: Envelope): string {
  const ids = e.targets.device_ids;
  const targets = `→ ${ids.length} [${ids.slice(0, 4).map(short).join(',')}${ids.length > 4 ? `,+${ids.length - 4}` : ''}]`;
  const session = e.session_id ? ` session ${short(e.session_id)}` : '';
  return `#${e.id}  ${e.created_at}  ${e.event}  ${targets}${session}  ${summary(e.data)}`.trimEnd();
}

async function connectTo(nats: Config['nats']): Promise<NatsConnection> {
  try {
    return await connect({ servers: nats.servers, name: 'lobby-replay', noAsyncTraces: true, maxReconnectAttempts: -1, ...authOptions(nats) });
  } catch (err) {
    throw new CliRefusal(`cannot connect to NATS at ${nats.servers.join(',')}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export async function replayCli(argv: string[], io: CliIo): Promise<number> {
  return runCli('replay', io, () => run(argv, io), (err) => err instanceof ReplayRefusal);
}

async function run(argv: string[], { env, stdout, stderr }: CliIo): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        lobby: { type: 'string' },
        from: { type: 'string' },
        json: { type: 'boolean', default: false },
        'rebuild-stream': { type: 'boolean', default: false },
        all: { type: 'boolean', default: false },
        'nats-url': { type: 'string' },
        prefix: { type: 'string' },
        stream: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    stderr.write(`replay: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    stdout.write(`${USAGE}\n`);
    return 0;
  }
  const rebuild = values['rebuild-stream'];
  const fromId = values.from === undefined ? 0 : Number(values.from);
  const problem =
    rebuild === (values.lobby !== undefined) ? 'give either --lobby or --rebuild-stream'
    : !Number.isSafeInteger(fromId) || fromId < 0 ? `--from must be an event id (got "${values.from}")`
    : rebuild && (values.from !== undefined || values.json) ? '--from and --json go with --lobby'
    : !rebuild && values.all ? '--all goes with --rebuild-stream'
    : null;
  if (problem) {
    stderr.write(`replay: ${problem}\n\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig({
    ...env,
    ...(values['nats-url'] !== undefined ? { NATS_URL: values['nats-url'] } : {}),
    ...(values.prefix !== undefined ? { NATS_SUBJECT_PREFIX: values.prefix } : {}),
    ...(values.stream !== undefined ? { NATS_STREAM: values.stream } : {}),
  });
  const nc = await connectTo(config.nats);
  try {
    if (!rebuild) {
      let n = 0;
      for await (const e of lobbyHistory(nc, { stream: config.nats.stream, prefix: config.nats.subjectPrefix, lobbyId: values.lobby!, fromId })) {
        stdout.write(`${values.json ? JSON.stringify(e) : formatEnvelope(e)}\n`);
        n++;
      }
      stderr.write(`${n} event(s) of lobby ${values.lobby} in stream ${config.nats.stream}${fromId ? ` from #${fromId}` : ''}\n`);
      return 0;
    }
    const r = await withSql(config.database, (sql) =>
      rebuildStream({
        nc,
        sql,
        nats: config.nats,
        all: values.all,
        log: createLogger('warn'),
        onProgress: stdout.isTTY ? (done) => stderr.write(`\rrepublished ${done}`) : undefined,
      }),
    );
    const rate = r.ms > 0 ? Math.round(((r.published + r.duplicates) * 1000) / r.ms) : 0;
    if (stdout.isTTY) stderr.write('\n');
    stdout.write(
      `stream ${config.nats.stream} rebuilt: ${r.published} events of ${r.lobbies} lobbies published` +
        `${r.duplicates ? `, ${r.duplicates} already there` : ''}, ${r.marked} newly marked published, ` +
        `${r.skipped} older than EVENTS_MAX_AGE left out; ${r.ms} ms (${rate} events/s)\n`,
    );
    return 0;
  } finally {
    await nc.close();
  }
}
