/**
 * Command-line options of `npm run bench` (and `npm run profile`), parsed with node:util.
 * Every size has a full value and a `--smoke` value; an explicit knob wins over both.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_NATS, DEFAULT_PG_SERVER } from './env.js';

export const SCENARIOS = ['a', 'b', 'c', 'd', 'e'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface Sizes {
  /** (a) join+leave pairs, and the concurrent callers issuing them. */
  pairs: number;
  callers: number;
  /** (b) concurrent sessions, and full cycles each runs one after the other. */
  sessions: number;
  rounds: number;
  /** (c) concurrent sessions of the soak (5 devices each). */
  soak: number;
  /** (d) idle lobbies, and sessions held mid-cycle. */
  idleLobbies: number;
  running: number;
  /** (e) sessions held mid-cycle across the restart. */
  resume: number;
  /** Simulated playback of the speaker (b, c). */
  playbackMs: number;
  /**
   * The app's timer from sending create_session to sending start_speaker (b, c; 500 ms as in
   * the app): a later reply skips start_speaker and the session fails, as on a real phone.
   */
  startSpeakerDelayMs: number;
}

export interface BenchOptions {
  only: Scenario[];
  smoke: boolean;
  json: string;
  sizes: Sizes;
  databaseUrl: string;
  natsUrl: string;
  /** Extra node flags for the service child (`npm run profile` adds --cpu-prof). */
  nodeArgs: string[];
}

const FULL: Sizes = { pairs: 2000, callers: 32, sessions: 24, rounds: 10, soak: 1000, idleLobbies: 10_000, running: 1000, resume: 1000, playbackMs: 200, startSpeakerDelayMs: 500 };
const SMOKE: Sizes = { pairs: 200, callers: 32, sessions: 4, rounds: 1, soak: 4, idleLobbies: 200, running: 20, resume: 20, playbackMs: 200, startSpeakerDelayMs: 500 };

const KNOBS: Record<keyof Sizes, string> = {
  pairs: 'pairs',
  callers: 'callers',
  sessions: 'sessions',
  rounds: 'rounds',
  soak: 'soak',
  idleLobbies: 'idle-lobbies',
  running: 'running',
  resume: 'resume',
  playbackMs: 'playback-ms',
  startSpeakerDelayMs: 'start-speaker-delay-ms',
};

export const USAGE = `usage: npm run bench -- [options]
  --only a,b,c,d,e     scenarios to run (default all)
                         a  join+leave pairs/s vs the same transactions bare through pg
                         b  step -> broadcast latency with concurrent sessions vs NATS echo + one transaction
                         c  soak: many sessions (1 speaker x 4 microphones) at once, to completion
                         d  resident memory: idle lobbies and running sessions
                         e  restart: time to resume running sessions after SIGKILL
  --smoke              tiny sizes (CI); exits non-zero only if a scenario could not run
  --json <file>        where to write the figures (default bench-results.json)
  --database-url <url> PostgreSQL server (default $DATABASE_URL or ${DEFAULT_PG_SERVER});
                       the run creates and drops its own database there
  --nats-url <url>     NATS (default $NATS_URL or ${DEFAULT_NATS})
  scale knobs (full / smoke): --pairs (2000/200) --callers (32) --sessions (24/4)
    --rounds (10/1) --soak (1000/4) --idle-lobbies (10000/200) --running (1000/20)
    --resume (1000/20) --playback-ms (200)
    --start-speaker-delay-ms (500: the app's create_session -> start_speaker timer; a later
      create_session reply fails the session as on a phone; raise it to see past that)`;

export function parseOptions(argv: string[], defaults: Partial<BenchOptions> = {}): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      json: { type: 'string' },
      'database-url': { type: 'string' },
      'nats-url': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...Object.fromEntries(Object.values(KNOBS).map((k) => [k, { type: 'string' as const }])),
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const only = typeof values.only === 'string' ? values.only.split(',').map((s) => s.trim().toLowerCase()) : (defaults.only ?? [...SCENARIOS]);
  for (const s of only) if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`--only: unknown scenario "${s}" (a-e)`);
  const smoke = Boolean(values.smoke);
  const sizes = { ...(smoke ? SMOKE : FULL) };
  for (const [key, flag] of Object.entries(KNOBS) as [keyof Sizes, string][]) {
    const raw = (values as Record<string, unknown>)[flag];
    if (typeof raw !== 'string') continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag}: must be a whole number >= 1, got "${raw}"`);
    sizes[key] = n;
  }
  return {
    only: only as Scenario[],
    smoke,
    json: typeof values.json === 'string' ? values.json : (defaults.json ?? 'bench-results.json'),
    sizes,
    databaseUrl: (values['database-url'] as string | undefined) ?? process.env.DATABASE_URL ?? DEFAULT_PG_SERVER,
    natsUrl: (values['nats-url'] as string | undefined) ?? process.env.NATS_URL ?? DEFAULT_NATS,
    nodeArgs: defaults.nodeArgs ?? [],
  };
}
