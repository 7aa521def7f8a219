/**
 * Fixtures for measurement-session integration tests: a lobby with speakers and microphones,
 * a session on it, the steps of one cycle phase by phase, a driver that runs a cycle (optionally
 * waiting for each trigger broadcast the way real devices do), and an event-driven watcher of
 * one lobby's core broadcasts.
 */
import { expect } from 'vitest';
import type { Subscription } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  broadcastSubject,
  lobbyBroadcastFilter,
  type Envelope,
  type ErrorCode,
  type EventName,
  type LoggedEvent,
  type Slot,
  type StepReply,
  type Subject,
  type Timeouts,
} from '../../subjects/index.js';
import { device, type GatewayClient, type Reply } from './service.js';

export interface LobbySetup {
  lobbyId: string;
  code: string;
  admin: string;
  speakers: Slot[];
  microphones: Slot[];
  /** Every joined device in join order: the admin, the speakers, the microphones, the extras. */
  joined: string[];
  /** Joined devices without a role. */
  extras: string[];
}

/** Creates a lobby, joins `speakers + microphones + extras` devices and gives them roles. */
export async function setupLobby(
  c: GatewayClient,
  { speakers, microphones, extras = 0 }: { speakers: number; microphones: number; extras?: number },
): Promise<LobbySetup> {
  const admin = device('admin');
  const lobby = await c.call('lobby.create', admin, {});
  const spk: Slot[] = Array.from({ length: speakers }, (_, i) => ({
    device_id: device(`spk${i + 1}`),
    slot_id: `S${i + 1}`,
    slot_label: `Speaker ${i + 1}`,
  }));
  const mic: Slot[] = Array.from({ length: microphones }, (_, i) => ({ device_id: device(`mic${i + 1}`), slot_id: `M${i + 1}` }));
  const extra = Array.from({ length: extras }, (_, i) => device(`guest${i + 1}`));
  const joiners = [...spk.map((s) => s.device_id), ...mic.map((s) => s.device_id), ...extra];
  // Sequential joins keep the join order (the order of `lobby.updated` targets) predictable.
  for (const d of joiners) await c.call('lobby.join', d, { code: lobby.code });
  const L = lobby.lobby_id;
  const assign = (s: Slot, role: 'speaker' | 'microphone') =>
    c.call('role.assign', admin, { lobby_id: L, target_device_id: s.device_id, role, role_slot_id: s.slot_id });
  await Promise.all([...spk.map((s) => assign(s, 'speaker')), ...mic.map((s) => assign(s, 'microphone'))]);
  return { lobbyId: L, code: lobby.code, admin, speakers: spk, microphones: mic, joined: [admin, ...joiners], extras: extra };
}

export interface SessionOptions {
  job_id?: string;
  timeouts?: Timeouts;
  signal_duration_seconds?: number;
  /**
   * Default false HERE (the service's default is true): these tests drive every
   * `start_speaker` themselves, v1 style, and check exact step sequences; auto-advance has its
   * own tests (transition unit tests, the app replay).
   */
  auto_advance?: boolean;
}

/** Creates a session listing every speaker and microphone of the lobby; returns its id. */
export async function createSession(c: GatewayClient, L: LobbySetup, opts: SessionOptions = {}): Promise<string> {
  const created = await c.call('measurement.create_session', L.admin, {
    job_id: opts.job_id ?? `job-${L.lobbyId.slice(0, 8)}`,
    lobby_id: L.lobbyId,
    speakers: L.speakers,
    microphones: L.microphones,
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.signal_duration_seconds ? { signal_duration_seconds: opts.signal_duration_seconds } : {}),
    auto_advance: opts.auto_advance ?? false,
  });
  return created.session_id;
}

export const sessionDevices = (L: LobbySetup): string[] => [...L.speakers, ...L.microphones].map((s) => s.device_id);
export const micIds = (L: LobbySetup): string[] => L.microphones.map((m) => m.device_id);
export const uploadName = (L: LobbySetup, speakerIndex: number, mic: string) =>
  `${L.speakers[speakerIndex]!.slot_id}-${L.microphones.find((m) => m.device_id === mic)!.slot_id}.wav`;

export interface StepCall {
  subject: Subject;
  device: string;
  data: Record<string, unknown>;
}

/** The trigger broadcast that ends each phase group of `cycleSteps`, in order. */
export const TRIGGERS = [
  'measurement.start_measurement',
  'measurement.request_audio',
  'measurement.start_recording',
  'measurement.start_playback',
  'measurement.stop_recording',
  'measurement.speaker_complete',
] as const satisfies readonly EventName[];

/**
 * The steps of one cycle for speaker `i`, phase by phase: within a group the order is free; the
 * group's trigger (`TRIGGERS[k]`) goes out once all of it is done. `aliases` uses
 * `measurement.client_ready` and `measurement.speaker_finished`.
 */
export function cycleSteps(L: LobbySetup, session_id: string, i: number, { aliases = false } = {}): StepCall[][] {
  const spk = L.speakers[i]!.device_id;
  const mics = micIds(L);
  const step = (subject: Subject, d: string, extra: Record<string, unknown> = {}): StepCall => ({
    subject,
    device: d,
    data: { session_id, ...extra },
  });
  return [
    [step('measurement.start_speaker', L.admin)],
    [spk, ...mics].map((d) => step(aliases ? 'measurement.client_ready' : 'measurement.ready', d)),
    [step('measurement.speaker_audio_ready', spk, { audio_hash: `hash-${L.speakers[i]!.slot_id}` })],
    mics.map((d) => step('measurement.recording_started', d)),
    [step(aliases ? 'measurement.speaker_finished' : 'measurement.playback_complete', spk)],
    mics.map((d) => step('measurement.recording_uploaded', d, { upload_name: uploadName(L, i, d) })),
  ];
}

export interface StepRecord extends StepCall {
  reply: StepReply;
}

export interface CycleOptions {
  aliases?: boolean;
  /** One step at a time in list order (default: each group in parallel). */
  sequential?: boolean;
  /** Before answering a trigger, wait for its broadcast (end to end, as devices do). */
  watcher?: LobbyWatcher;
  /** Called after every step with its reply (e.g. to read the session status). */
  onStep?: (r: StepRecord) => unknown;
  /** First phase group to send (1 skips `start_speaker`). */
  from?: number;
  /** Send every step this many times at once (retries racing each other); default 1. */
  copies?: number;
}

/** Sends `call` and expects success. */
export async function step(c: GatewayClient, call: StepCall): Promise<StepRecord> {
  const reply = (await c.call(call.subject, call.device, call.data)) as StepReply;
  return { ...call, reply };
}

/** Drives speaker `i`'s cycle from `start_speaker` to `speaker_complete`; returns every reply. */
export async function runCycle(
  c: GatewayClient,
  L: LobbySetup,
  sessionId: string,
  i: number,
  opts: CycleOptions = {},
): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  const groups = cycleSteps(L, sessionId, i, { aliases: opts.aliases });
  for (const [k, group] of groups.entries()) {
    if (k < (opts.from ?? 0)) continue;
    const trigger = TRIGGERS[k]!;
    const before = opts.watcher?.count(trigger) ?? 0;
    const send = async (call: StepCall) => {
      const rs = await Promise.all(Array.from({ length: opts.copies ?? 1 }, () => step(c, call)));
      for (const r of rs) {
        out.push(r);
        await opts.onStep?.(r);
      }
    };
    if (opts.sequential) for (const call of group) await send(call);
    else await Promise.all(group.map(send));
    await opts.watcher?.until(trigger, before + 1);
  }
  return out;
}

/** Expects an error reply with `code`; returns the error for further checks. */
export function expectError<T>(r: Reply<T>, code: ErrorCode) {
  expect(r.ok, `expected ${code}, got a success: ${JSON.stringify(r.data)}`).toBe(false);
  expect(r.error?.code).toBe(code);
  return r.error!;
}

/** The lobby's event log (source of truth, written in the step's own transaction), after `afterId`. */
export async function loggedEvents(c: GatewayClient, L: LobbySetup, afterId = 0): Promise<LoggedEvent[]> {
  const out: LoggedEvent[] = [];
  for (;;) {
    const page = await c.call('lobby.events', L.admin, { lobby_id: L.lobbyId, after_id: afterId, limit: 1000 });
    out.push(...page.events);
    if (page.events.length < 1000) return out;
    afterId = page.events.at(-1)!.id;
  }
}

/** The id of the lobby's latest logged event (0 when none). */
export async function lastEventId(c: GatewayClient, L: LobbySetup): Promise<number> {
  return (await loggedEvents(c, L)).at(-1)?.id ?? 0;
}

/** The lobby's latest event id and the session's status: what a refused step must leave alone. */
export async function snapshot(c: GatewayClient, L: LobbySetup, sessionId: string) {
  const [lastId, status] = await Promise.all([
    lastEventId(c, L),
    c.call('measurement.session_status', L.admin, { session_id: sessionId }),
  ]);
  return { lastId, status };
}

/**
 * Event-driven view of one lobby's core broadcasts: `until` resolves as soon as the message
 * arrives (no polling), which keeps latency measurements honest. Drops repeated ids, as the
 * contract tells core subscribers to; `raw` keeps every delivery.
 */
export class LobbyWatcher {
  readonly events: Envelope[] = [];
  readonly raw: Envelope[] = [];
  /** Arrival time (performance.now()) of each event in `events`. */
  readonly arrivedAt: number[] = [];
  private readonly seen = new Set<number>();
  private waiters: Array<() => void> = [];

  private constructor(private readonly sub: Subscription) {}

  static async watch(c: GatewayClient, lobbyId: string): Promise<LobbyWatcher> {
    let w: LobbyWatcher | undefined;
    const sub = c.nc.subscribe(lobbyBroadcastFilter(lobbyId, c.prefix), {
      callback: (_e, m) => w?.push(m.json<Envelope>()),
    });
    w = new LobbyWatcher(sub);
    await c.nc.flush();
    return w;
  }

  private push(e: Envelope): void {
    this.raw.push(e);
    if (this.seen.has(e.id)) return;
    this.seen.add(e.id);
    this.events.push(e);
    this.arrivedAt.push(performance.now());
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  of(event?: EventName): Envelope[] {
    return event ? this.events.filter((e) => e.event === event) : this.events;
  }

  count(event?: EventName): number {
    return this.of(event).length;
  }

  /** Resolves with the events of `event` once there are at least `n`. */
  until(event: EventName, n = 1, timeoutMs = 10_000): Promise<Envelope[]> {
    return this.when(() => this.count(event) >= n, `${n} x ${event}`, timeoutMs).then(() => this.of(event));
  }

  /** Resolves once `test` holds (checked now and after every arrival). */
  when(test: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        const got = this.events.map((e) => e.event).join(', ');
        reject(new Error(`LobbyWatcher: waiting for ${what} timed out after ${timeoutMs} ms; got ${got}`));
      }, timeoutMs);
      const check = () => {
        if (test()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }

  close(): void {
    this.sub.unsubscribe();
  }
}

/** The subject a broadcast of `event` in this lobby is published on. */
export const subjectOf = (c: GatewayClient, L: LobbySetup, event: EventName) => broadcastSubject(L.lobbyId, event, c.prefix);

/** Asserts the stream holds exactly `expected` (by id and event) for the lobby, once each, in id order. */
export async function expectStreamMatches(c: GatewayClient, L: LobbySetup, expected: Envelope[]): Promise<void> {
  const stream = await c.streamMessages(L.lobbyId);
  expect(stream.map((m) => m.body)).toEqual(expected);
  for (const m of stream) {
    expect(m.subject).toBe(subjectOf(c, L, m.body.event));
    expect(m.msgId).toBe(`${L.lobbyId}:${m.body.id}`);
  }
  const ids = stream.map((m) => m.body.id);
  expect(ids).toEqual([...ids].sort((a, b) => a - b));
  expect(new Set(ids).size).toBe(ids.length);
}

/** How many messages the stream holds for one lobby (cheap: no message is read). */
export async function streamCount(c: GatewayClient, lobbyId: string): Promise<number> {
  const jsm = await jetstreamManager(c.nc);
  const info = await jsm.streams.info(c.stream, { subjects_filter: lobbyBroadcastFilter(lobbyId, c.prefix) });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/** How many times each event occurs in a list of broadcasts. */
export function countsOf(events: Array<{ event: string }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[e.event] = (out[e.event] ?? 0) + 1;
  return out;
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
