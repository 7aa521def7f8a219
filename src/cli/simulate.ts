/**
 * `npm run simulate`: app-like phones measuring against a running service over NATS.
 *
 *   npm start                   # the service, in one terminal
 *   npm run simulate            # one lobby of three phones through one measurement
 *   npm run simulate -- --sessions 20 --speakers 2 --microphones 3 --jitter-ms 50
 *
 * Prints a live view while it runs and a summary table at the end; exits non-zero when a
 * session failed or stalled (unless drop-outs were asked for), or when no service answers.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Measurement, type MeasurementOptions } from '../sim/measurement.js';
import { DEFAULT_NATS_URL, NatsPhoneTransport, natsOptionsFromEnv, normalizePrefix } from '../sim/nats-transport.js';
import { narrate } from '../sim/narration.js';
import { ProgressView, snapshot } from '../sim/progress.js';
import { formatSummary, summarize } from '../sim/summary.js';
import { StepTimings } from '../sim/timings.js';

const USAGE = `usage: npm run simulate -- [options]

  --sessions N          sessions run side by side (default 1)
  --speakers N          loudspeakers per session (default 1)
  --microphones N       microphones per session, the admin included (default 2)
  --jitter-ms MS        random delay up to MS before each step (default 0)
  --drop-rate P         probability 0-1 that a session has a device that stops answering (default 0)
  --duplicate-rate P    probability 0-1 that a step is sent twice (default 0)
  --playback-ms MS      how long the speaker "plays" (default 1000)
  --timeout-s S         a session not done after S seconds counts as stalled (default 60)
  --nats-url URL        NATS server(s) (default $NATS_URL or nats://127.0.0.1:4222)
  --prefix PREFIX       the service's subject prefix (default $NATS_SUBJECT_PREFIX)
  --json FILE           also write the figures as JSON to FILE
  --quiet               no live progress view
  -h, --help            this text

Credentials come from NATS_CREDS, NATS_TOKEN or NATS_USER / NATS_PASSWORD.`;

class UsageError extends Error {}

function number(name: string, raw: string, min: number, max: number, integer = false): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max} (got "${raw}")`);
  }
  return v;
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      sessions: { type: 'string', default: '1' },
      speakers: { type: 'string', default: '1' },
      microphones: { type: 'string', default: '2' },
      'jitter-ms': { type: 'string', default: '0' },
      'drop-rate': { type: 'string', default: '0' },
      'duplicate-rate': { type: 'string', default: '0' },
      'playback-ms': { type: 'string', default: '1000' },
      'timeout-s': { type: 'string', default: '60' },
      'nats-url': { type: 'string' },
      prefix: { type: 'string' },
      json: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  return {
    help: values.help,
    sessions: number('sessions', values.sessions, 1, 10_000, true),
    speakers: number('speakers', values.speakers, 1, 16, true),
    microphones: number('microphones', values.microphones, 1, 63, true),
    jitterMs: number('jitter-ms', values['jitter-ms'], 0, 60_000),
    dropRate: number('drop-rate', values['drop-rate'], 0, 1),
    duplicateRate: number('duplicate-rate', values['duplicate-rate'], 0, 1),
    playbackMs: number('playback-ms', values['playback-ms'], 0, 600_000),
    timeoutS: number('timeout-s', values['timeout-s'], 1, 86_400),
    natsUrl: values['nats-url'],
    prefix: values.prefix,
    json: values.json,
    quiet: values.quiet,
  };
}

async function main(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (err) {
    process.stderr.write(`simulate: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const fromEnv = natsOptionsFromEnv();
  const servers = args.natsUrl?.split(',').map((s) => s.trim()) ?? fromEnv.servers ?? [DEFAULT_NATS_URL];
  const prefix = args.prefix !== undefined ? normalizePrefix(args.prefix.trim()) : fromEnv.prefix ?? '';
  const where = servers.join(',');

  let transport: NatsPhoneTransport;
  try {
    transport = await NatsPhoneTransport.connect({ ...fromEnv, servers, prefix });
  } catch (err) {
    process.stderr.write(`simulate: cannot connect to NATS at ${where}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  try {
    if (!(await transport.ping())) {
      process.stderr.write(`simulate: no lobby service answers $SRV.PING.lobby on ${where}; start one with "npm start" in another terminal\n`);
      return 1;
    }
    if (!(await transport.servesPrefix())) {
      process.stderr.write(
        `simulate: a lobby service runs on ${where}, but none serves the subject prefix "${prefix}"; pass the service's NATS_SUBJECT_PREFIX with --prefix\n`,
      );
      return 1;
    }
    return await simulate(transport, args);
  } finally {
    await transport.close();
  }
}

async function simulate(transport: NatsPhoneTransport, args: ReturnType<typeof parse>): Promise<number> {
  const timings = new StepTimings();
  const started = performance.now();
  // One session is the demo: narrate it message by message instead of the live counters.
  const narrated = args.sessions === 1 && !args.quiet;
  const trace: MeasurementOptions['trace'] = (phone, entry) => {
    const line = narrate((performance.now() - started) / 1000, phone.label, entry, phone.isAdmin);
    if (line) process.stdout.write(`${line}\n`);
  };
  const measurements = Array.from(
    { length: args.sessions },
    () =>
      new Measurement(transport, {
        speakers: args.speakers,
        microphones: args.microphones,
        jitterMs: args.jitterMs,
        dropRate: args.dropRate,
        duplicateRate: args.duplicateRate,
        playbackMs: args.playbackMs,
        timeoutMs: args.timeoutS * 1000,
        timings,
        trace: narrated ? trace : undefined,
      }),
  );
  const shape = `${args.speakers} speaker(s) x ${args.microphones} microphone(s)`;
  process.stdout.write(`Simulating ${args.sessions} session(s) of ${shape} (${args.speakers + args.microphones} phones each)\n`);
  const view = args.quiet || narrated ? undefined : new ProgressView(process.stdout, (elapsed) => snapshot(measurements, transport.counters, elapsed));
  const interrupted = () => measurements.forEach((m) => m.cancel('interrupted'));
  process.once('SIGINT', interrupted);
  view?.start();
  const results = await Promise.all(measurements.map((m) => m.run()));
  view?.stop();
  process.off('SIGINT', interrupted);
  const summary = summarize(results, timings, performance.now() - started);
  process.stdout.write(`\n${formatSummary(summary)}\n`);
  if (transport.subscriptionError) process.stdout.write(`Broadcast subscription ended: ${transport.subscriptionError.message}\n`);
  // The demo's next step: the session's sequence chart (README: the timeline).
  const shown = results.find((r) => r.outcome !== 'completed' && r.sessionId) ?? results.find((r) => r.sessionId);
  if (shown?.sessionId) {
    const which = results.length === 1 ? 'The session' : `A ${shown.outcome} session`;
    process.stdout.write(`${which} step by step: npm run timeline -- ${shown.sessionId}\n`);
  }
  if (args.json) {
    const options = { ...args, help: undefined, json: undefined };
    writeFileSync(args.json, `${JSON.stringify({ options, ...summary }, null, 2)}\n`);
    process.stdout.write(`Figures written to ${args.json}\n`);
  }
  const unfinished = summary.sessions.failed + summary.sessions.stalled;
  return unfinished > 0 && args.dropRate === 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`simulate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
