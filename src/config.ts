/**
 * Configuration from the environment (CONTRACT section 7), validated with zod.
 *
 * A bad value stops start-up with one line naming the variable (`ConfigError`).
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { z } from 'zod';
import { MAX_PARTICIPANTS, NEXT_SPEAKER_DELAY } from '../subjects/index.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** `7d`, `12h`, `30m`, `45s`, `500ms`, or a plain number of seconds -> milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's'] ?? 1000;
  const ms = Number(m[1]) * unit;
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : undefined;
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number ${min}-${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `must be ${min}-${max}`).max(max, `must be ${min}-${max}`));

const duration = z
  .string()
  .transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration such as 7d, 12h, 30m or 45s' });
      return z.NEVER;
    }
    return ms;
  });

const url = (protocols: string[], what: string) =>
  z
    .string()
    .trim()
    .refine((s) => {
      try {
        return protocols.includes(new URL(s).protocol);
      } catch {
        return false;
      }
    }, `must be ${what}`);

const natsUrls = z
  .string()
  .transform((s) => s.split(',').map((u) => u.trim()).filter(Boolean))
  .refine((list) => list.length > 0, 'must list at least one server')
  .refine(
    (list) => list.every((u) => /^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u) || /^[\w.-]+(:\d+)?$/.test(u)),
    'must be nats://host:port (comma-separated for a cluster)',
  );

/** `DATABASE_URL`: PostgreSQL, or the embedded database (a directory, or memory). */
export type DatabaseTarget =
  | { kind: 'postgresql'; url: string }
  | { kind: 'embedded'; dir: string | null };

const databaseUrl = z.string().trim().transform((s, ctx): DatabaseTarget => {
  if (/^postgres(ql)?:\/\//.test(s)) return { kind: 'postgresql', url: s };
  if (s === 'memory:' || s === 'pglite:memory') return { kind: 'embedded', dir: null };
  if (s.startsWith('pglite:')) return { kind: 'embedded', dir: s.slice('pglite:'.length).replace(/^\/\//, '') };
  ctx.addIssue({
    code: 'custom',
    message: 'must be postgresql://..., pglite:<directory> or memory: (unset: embedded database in ./data)',
  });
  return z.NEVER;
});

const subjectPrefix = z
  .string()
  .trim()
  .regex(/^([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?$/, 'must be NATS subject tokens such as "staging"')
  .transform((s) => (s.endsWith('.') ? s : `${s}.`));

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Each variable, its parser and default. Unset and empty mean "use the default". */
const schema = z.object({
  NATS_URL: natsUrls.default(['nats://127.0.0.1:4222']),
  NATS_CREDS: z
    .string()
    .refine((path) => {
      try {
        accessSync(path, fsConstants.R_OK);
        return true;
      } catch {
        return false;
      }
    }, 'must name a readable credentials file')
    .optional(),
  NATS_TOKEN: z.string().optional(),
  NATS_USER: z.string().optional(),
  NATS_PASSWORD: z.string().optional(),
  NATS_STREAM: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, - or _')
    .default('LOBBY_EVENTS'),
  NATS_STREAM_REPLICAS: int(1, 5).default(1),
  /** Not in the contract: a deployment prefix for every subject (shared clusters, tests). */
  NATS_SUBJECT_PREFIX: subjectPrefix.optional(),
  DATABASE_URL: databaseUrl.default({ kind: 'embedded', dir: './data/lobby' }),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  HTTP_PORT: int(0, 65535).default(8001),
  /** Guards inbound HTTP (every path but /health) when set. */
  HTTP_AUTH_TOKEN: z.string().min(1).optional(),
  /** Sent to the v1 Gateway with every sink POST (as in v1); guards nothing inbound. */
  INTERNAL_AUTH_TOKEN: z.string().min(1).optional(),
  GATEWAY_URL: url(['http:', 'https:'], 'an http(s) URL').transform((s) => s.replace(/\/+$/, '')).optional(),
  PUBLIC_BASE_URL: url(['http:', 'https:'], 'an http(s) URL').transform((s) => s.replace(/\/+$/, '')).optional(),
  LOG_LEVEL: logLevel.default('info'),
  LOG_PRETTY: z
    .enum(['1', '0', 'true', 'false'], { message: 'must be 1 or 0' })
    .transform((v) => v === '1' || v === 'true')
    .optional(),
  EVENTS_MAX_AGE: duration.default(7 * 86_400_000),
  MAX_PARTICIPANTS: int(MAX_PARTICIPANTS.min, MAX_PARTICIPANTS.max).default(MAX_PARTICIPANTS.default),
  RATE_LIMIT_PER_SECOND: int(1, 100_000).default(20),
  RATE_LIMIT_BURST: int(1, 1_000_000).default(40),
  JOIN_CODE_FAILURES_PER_MINUTE: int(1, 100_000).default(10),
  PRESENCE_GRACE_MS: int(0, 3_600_000).default(10_000),
  READY_TIMEOUT_MS: int(100, 600_000).default(30_000),
  AUDIO_TIMEOUT_MS: int(100, 600_000).default(60_000),
  RECORDING_START_TIMEOUT_MS: int(100, 600_000).default(15_000),
  PLAYBACK_GRACE_MS: int(0, 600_000).default(30_000),
  UPLOAD_TIMEOUT_MS: int(100, 600_000).default(120_000),
  NEXT_SPEAKER_DELAY_MS: int(NEXT_SPEAKER_DELAY.min, NEXT_SPEAKER_DELAY.max).default(NEXT_SPEAKER_DELAY.default),
  /** Not in the contract: how long shutdown waits for in-flight work before giving up. */
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(15_000),
});

export interface Config {
  nats: {
    servers: string[];
    credsFile?: string;
    token?: string;
    user?: string;
    password?: string;
    stream: string;
    /**
     * Replicas of the stream (and of the join-failure bucket): 3 on a cluster so they outlive a
     * node; a single server only keeps 1.
     */
    streamReplicas: number;
    /** '' or a prefix ending in '.', put in front of every subject. */
    subjectPrefix: string;
    eventsMaxAgeMs: number;
  };
  database: DatabaseTarget;
  /** `authToken`: `HTTP_AUTH_TOKEN`, required of inbound HTTP when set. */
  http: { host: string; port: number; authToken?: string; publicBaseUrl: string };
  gatewayUrl?: string;
  /** `INTERNAL_AUTH_TOKEN`: what the v1 sink sends to the Gateway (`X-Internal-Token`). */
  gatewayToken?: string;
  logLevel: z.infer<typeof logLevel>;
  /** `LOG_PRETTY`: human-readable logs (true), JSON (false), or unset: pretty when stdout is a terminal. */
  logPretty?: boolean;
  limits: {
    maxParticipants: number;
    ratePerSecond: number;
    rateBurst: number;
    joinFailuresPerMinute: number;
  };
  measurement: {
    presenceGraceMs: number;
    readyMs: number;
    audioMs: number;
    recordingStartMs: number;
    playbackGraceMs: number;
    uploadMs: number;
    /** Default pause before an automatic next speaker (`NEXT_SPEAKER_DELAY_MS`). */
    nextSpeakerDelayMs: number;
  };
  shutdownTimeoutMs: number;
}

/** `scheme://user:secret@host` -> `scheme://user:***@host`, wherever it appears in `text`. */
export function hideCredentials(text: string): string {
  return text.replace(/(\/\/[^/@\s:,]*:)[^@\s,]*@/g, '$1***@');
}

/**
 * `nats://user:secret@host` or `nats://token@host` in NATS_URL: the NATS client ignores
 * credentials inside a URL, and every server URL ends up in logs. So they are taken out of the
 * URLs and used as NATS_USER/NATS_PASSWORD or NATS_TOKEN (unless those are set explicitly).
 */
function serversAndCredentials(urls: string[], explicit: boolean) {
  const found = new Set<string>();
  let creds: { user?: string; password?: string; token?: string } = {};
  const servers = urls.map((raw) => {
    const m = /^([a-z]+:\/\/)([^@/]*)@(.*)$/.exec(raw);
    if (!m) return raw;
    const [, scheme, auth, rest] = m as unknown as [string, string, string, string];
    const colon = auth.indexOf(':');
    creds =
      colon >= 0
        ? { user: decodeURIComponent(auth.slice(0, colon)), password: decodeURIComponent(auth.slice(colon + 1)) }
        : { token: decodeURIComponent(auth) };
    found.add(auth);
    return `${scheme}${rest}`;
  });
  if (found.size > 1) {
    throw new ConfigError('invalid configuration: NATS_URL lists different credentials for different servers');
  }
  return { servers, ...(explicit ? {} : creds) };
}

/** Reads the environment; throws `ConfigError` naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(
    Object.keys(schema.shape)
      .map((k) => [k, env[k]] as const)
      .filter(([, v]) => v !== undefined && v !== ''),
  );
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0] ?? 'environment');
    const raw = env[name];
    const secret = name.includes('TOKEN') || name.includes('PASSWORD') || raw === undefined;
    const shown = secret ? '' : ` (got "${hideCredentials(raw)}")`;
    throw new ConfigError(`invalid configuration: ${name} ${issue.message}${shown}`);
  }
  const e = parsed.data;
  if ((e.NATS_USER === undefined) !== (e.NATS_PASSWORD === undefined)) {
    throw new ConfigError('invalid configuration: NATS_USER and NATS_PASSWORD must be set together');
  }
  const methods = [e.NATS_CREDS, e.NATS_TOKEN, e.NATS_USER].filter((v) => v !== undefined).length;
  if (methods > 1) {
    throw new ConfigError('invalid configuration: NATS_CREDS, NATS_TOKEN and NATS_USER/NATS_PASSWORD exclude each other; set one');
  }
  const nats = serversAndCredentials(e.NATS_URL, methods > 0);
  const publicBaseUrl = e.PUBLIC_BASE_URL ?? `http://${e.HTTP_HOST}:${e.HTTP_PORT}`;
  return {
    nats: {
      servers: nats.servers,
      credsFile: e.NATS_CREDS,
      token: e.NATS_TOKEN ?? nats.token,
      user: e.NATS_USER ?? nats.user,
      password: e.NATS_PASSWORD ?? nats.password,
      stream: e.NATS_STREAM,
      streamReplicas: e.NATS_STREAM_REPLICAS,
      subjectPrefix: e.NATS_SUBJECT_PREFIX ?? '',
      eventsMaxAgeMs: e.EVENTS_MAX_AGE,
    },
    database: e.DATABASE_URL,
    http: { host: e.HTTP_HOST, port: e.HTTP_PORT, authToken: e.HTTP_AUTH_TOKEN, publicBaseUrl },
    gatewayUrl: e.GATEWAY_URL,
    gatewayToken: e.INTERNAL_AUTH_TOKEN,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
    limits: {
      maxParticipants: e.MAX_PARTICIPANTS,
      ratePerSecond: e.RATE_LIMIT_PER_SECOND,
      rateBurst: e.RATE_LIMIT_BURST,
      joinFailuresPerMinute: e.JOIN_CODE_FAILURES_PER_MINUTE,
    },
    measurement: {
      presenceGraceMs: e.PRESENCE_GRACE_MS,
      readyMs: e.READY_TIMEOUT_MS,
      audioMs: e.AUDIO_TIMEOUT_MS,
      recordingStartMs: e.RECORDING_START_TIMEOUT_MS,
      playbackGraceMs: e.PLAYBACK_GRACE_MS,
      uploadMs: e.UPLOAD_TIMEOUT_MS,
      nextSpeakerDelayMs: e.NEXT_SPEAKER_DELAY_MS,
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
