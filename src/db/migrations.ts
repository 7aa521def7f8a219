/**
 * Schema migrations, run at start-up (a static list, so bundlers and vitest see them).
 * Append new migrations; never edit one that has shipped.
 */
import { Migration } from '@mikro-orm/migrations';

class Migration001Initial extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      create table lobbies (
        id uuid primary key,
        code varchar(6) not null,
        creator_device_id text not null,
        admin_device_id text not null,
        state text not null check (state in ('open', 'measurement_running', 'closed')),
        max_participants int not null check (max_participants between 2 and 64),
        room jsonb,
        step_index int,
        profile_id text,
        active_session_id uuid,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        closed_at timestamptz
      )`);
    // Codes are unique among lobbies that are not closed; closed lobbies free their code.
    this.addSql(`create unique index lobbies_open_code on lobbies (code) where state <> 'closed'`);

    this.addSql(`
      create table participants (
        id bigserial primary key,
        lobby_id uuid not null references lobbies (id) on delete cascade deferrable initially deferred,
        device_id text not null,
        role text not null check (role in ('none', 'speaker', 'microphone')),
        role_slot_id text,
        role_slot_label text,
        status text not null check (status in ('joined', 'left')),
        connected boolean not null default true,
        kicked boolean not null default false,
        joined_at timestamptz not null,
        left_at timestamptz,
        unique (lobby_id, device_id)
      )`);
    this.addSql(`create index participants_device on participants (device_id) where status = 'joined'`);
    // Safety net under the slot_taken rule (the handler checks first and answers slot_taken): one joined holder per (lobby, role, slot).
    this.addSql(`
      create unique index participants_slot on participants (lobby_id, role, role_slot_id)
      where status = 'joined' and role_slot_id is not null`);

    this.addSql(`
      create table lobby_events (
        id bigserial primary key,
        lobby_id uuid not null references lobbies (id) on delete cascade deferrable initially deferred,
        session_id uuid,
        type text not null,
        payload jsonb not null,
        targets jsonb not null,
        created_at timestamptz not null,
        published_at timestamptz,
        sink_delivered_at timestamptz
      )`);
    this.addSql(`create index lobby_events_lobby on lobby_events (lobby_id, id)`);
    this.addSql(`create index lobby_events_unpublished on lobby_events (id) where published_at is null`);
    this.addSql(`create index lobby_events_undelivered on lobby_events (id) where sink_delivered_at is null`);

    this.addSql(`
      create table idempotency_keys (
        device_id text not null,
        key text not null,
        subject text not null,
        request_hash text not null,
        status int not null,
        reply jsonb not null,
        created_at timestamptz not null,
        primary key (device_id, key)
      )`);
    this.addSql(`create index idempotency_keys_created on idempotency_keys (created_at)`);

    this.addSql(`
      create table measurement_sessions (
        id uuid primary key,
        lobby_id uuid not null references lobbies (id) on delete cascade deferrable initially deferred,
        job_id text not null,
        state text not null check (state in ('created', 'running', 'completed', 'cancelled')),
        phase text not null,
        wake_at timestamptz,
        doc jsonb not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        version int not null default 1
      )`);
    // At most one unfinished session per lobby, whatever the application does.
    this.addSql(`
      create unique index measurement_sessions_unfinished on measurement_sessions (lobby_id)
      where state in ('created', 'running')`);
    this.addSql(`create index measurement_sessions_wake on measurement_sessions (wake_at) where wake_at is not null`);

    this.addSql(`
      create table leases (
        name text primary key,
        holder text not null,
        expires_at timestamptz not null
      )`);
  }
}

/**
 * `lobby_apply(change)`: one command's (or one batch of queued steps') whole write, in one round
 * trip. Created by Migration002 and replaced by Migration003 (which taught it to keep several
 * Idempotency-Key replies); both use this text, so a new database and an upgraded one agree.
 */
const LOBBY_APPLY = `
      create or replace function lobby_apply(c jsonb) returns jsonb
      language plpgsql as $fn$
      declare
        lid uuid := (c->>'lobby_id')::uuid;
        lob jsonb := c->'lobby';
        sess jsonb := c->'session';
        cur record;
        found_version int;
        prev bigint;
        ids bigint[];
        new_version int;
        session_version int;
      begin
        if jsonb_typeof(c->'expect_version') = 'number' then
          select version, last_event_id into cur from lobbies where id = lid for update;
          if not found then
            return jsonb_build_object('ok', false, 'reason', 'missing');
          end if;
          if cur.version <> (c->>'expect_version')::int then
            return jsonb_build_object('ok', false, 'reason', 'stale', 'state', lobby_state(lid, (sess->>'id')::uuid));
          end if;
          if sess is not null and jsonb_typeof(sess->'expect_version') = 'number' then
            select version into found_version from measurement_sessions where id = (sess->>'id')::uuid and lobby_id = lid;
            if found_version is distinct from (sess->>'expect_version')::int then
              return jsonb_build_object('ok', false, 'reason', 'stale', 'state', lobby_state(lid, (sess->>'id')::uuid));
            end if;
          end if;
          prev := cur.last_event_id;
          new_version := cur.version + 1;
        else
          -- A new lobby (lobby.create); a taken code raises unique_violation on lobbies_open_code.
          insert into lobbies (id, code, creator_device_id, admin_device_id, state, max_participants, room,
                               step_index, profile_id, active_session_id, created_at, updated_at, closed_at, version)
          values (lid, lob->>'code', lob->>'creator_device_id', lob->>'admin_device_id', lob->>'state',
                  (lob->>'max_participants')::int, null, null, null, null,
                  (lob->>'created_at')::timestamptz, (lob->>'updated_at')::timestamptz, null, 1);
          prev := null;
          new_version := 1;
        end if;

        insert into participants as p (lobby_id, device_id, role, role_slot_id, role_slot_label, status, connected, kicked, joined_at, left_at)
        select lid, m.device_id, m.role, m.role_slot_id, m.role_slot_label, m.status, m.connected, m.kicked, m.joined_at, m.left_at
        from rows from (jsonb_to_recordset(c->'members') as (device_id text, role text, role_slot_id text, role_slot_label text,
             status text, connected boolean, kicked boolean, joined_at timestamptz, left_at timestamptz))
             with ordinality as m(device_id, role, role_slot_id, role_slot_label, status, connected, kicked, joined_at, left_at, n)
        order by m.n
        on conflict (lobby_id, device_id) do update set
          role = excluded.role, role_slot_id = excluded.role_slot_id, role_slot_label = excluded.role_slot_label,
          status = excluded.status, connected = excluded.connected, kicked = excluded.kicked, left_at = excluded.left_at;

        if sess is not null then
          if jsonb_typeof(sess->'expect_version') = 'number' then
            update measurement_sessions set state = sess->>'state', phase = sess->>'phase',
              wake_at = (sess->>'wake_at')::timestamptz, doc = sess->'doc',
              updated_at = (sess->>'updated_at')::timestamptz, version = version + 1
            where id = (sess->>'id')::uuid
            returning version into session_version;
          else
            insert into measurement_sessions (id, lobby_id, job_id, state, phase, wake_at, doc, created_at, updated_at, version)
            values ((sess->>'id')::uuid, lid, sess->>'job_id', sess->>'state', sess->>'phase', (sess->>'wake_at')::timestamptz,
                    sess->'doc', (sess->>'created_at')::timestamptz, (sess->>'updated_at')::timestamptz, 1);
            session_version := 1;
          end if;
        end if;

        if jsonb_typeof(c->'steps') = 'array' then
          insert into session_steps (session_id, at, step, device_id, phase_before, phase_after, detail)
          select (st->>'session_id')::uuid, (st->>'at')::timestamptz, st->>'step', st->>'device_id',
                 st->>'phase_before', st->>'phase_after', nullif(st->'detail', 'null'::jsonb)
          from jsonb_array_elements(c->'steps') with ordinality as y(st, n)
          order by y.n;
        end if;

        with ins as (
          insert into lobby_events (lobby_id, session_id, type, payload, targets, created_at, published_at, sink_delivered_at, traceparent)
          select lid, (e->>'session_id')::uuid, e->>'type', e->'payload', e->'targets', (e->>'created_at')::timestamptz, null,
                 case when (c->>'sink')::boolean then null else (e->>'created_at')::timestamptz end, e->>'traceparent'
          from jsonb_array_elements(c->'events') with ordinality as x(e, n)
          order by x.n
          returning id)
        select array_agg(id order by id) into ids from ins;

        update lobbies set
          admin_device_id = lob->>'admin_device_id', state = lob->>'state', room = nullif(lob->'room', 'null'::jsonb),
          step_index = (lob->>'step_index')::int, profile_id = lob->>'profile_id',
          active_session_id = (lob->>'active_session_id')::uuid, updated_at = (lob->>'updated_at')::timestamptz,
          closed_at = (lob->>'closed_at')::timestamptz, version = new_version,
          last_event_id = coalesce(ids[array_length(ids, 1)], last_event_id)
        where id = lid;

        -- One kept reply per command of the change (several queued steps may share one write).
        if jsonb_typeof(c->'idempotency') = 'array' then
          insert into idempotency_keys (device_id, key, subject, request_hash, status, reply, created_at)
          select k->>'device_id', k->>'key', k->>'subject', k->>'request_hash', 0, k->'reply', now()
          from jsonb_array_elements(c->'idempotency') as z(k);
        end if;

        return jsonb_build_object('ok', true, 'version', new_version, 'session_version', session_version,
                                  'prev_event_id', prev, 'event_ids', coalesce(to_jsonb(ids), '[]'::jsonb));
      end
      $fn$`;

/**
 * The one-round-trip command path (src/lobby/store.ts):
 * - `lobbies.version`, bumped by every write of a lobby's aggregate (the lobby row, its
 *   participants, its sessions, its events): replicas cache a lobby and write through with this
 *   version as the check, so a decision taken from a stale cache is never applied.
 * - `lobbies.last_event_id`: the lobby's newest event, so the relay can tell whether a batch it
 *   is handed follows the last one it published.
 * - `lobby_state(lobby, session)`: a lobby's whole aggregate as one JSON value (one round trip
 *   to load it, and the fresh state returned by a refused write).
 * - `lobby_events.traceparent`: the W3C trace context of the request that caused an event, for
 *   the broadcast's headers.
 * - `session_steps`: every step that changed a session (device steps, deadlines, auto-advance,
 *   departures), with its time: the session timeline.
 * - `lobby_apply(change)`: a command's writes as one call, in one transaction. It takes the lobby
 *   row lock FIRST and only then compares versions and writes: every statement in a plpgsql
 *   function takes a fresh snapshot, so the check sees whatever committed before the lock was
 *   granted (a single CTE statement would decide from the snapshot taken before it waited).
 *   Events are inserted under that lock, in emit order, so a lobby's ids commit in id order.
 * No `?` anywhere in these bodies: MikroORM's migration runner would take it for a parameter.
 */
class Migration002OneRoundTrip extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table lobbies add column version int not null default 1, add column last_event_id bigint`);
    this.addSql(`update lobbies l set last_event_id = (select max(e.id) from lobby_events e where e.lobby_id = l.id)`);
    this.addSql(`create index participants_lobby on participants (lobby_id, id)`);
    this.addSql(`create index measurement_sessions_lobby on measurement_sessions (lobby_id)`);
    this.addSql(`alter table lobby_events add column traceparent text`);
    this.addSql(`
      create table session_steps (
        id bigserial primary key,
        session_id uuid not null references measurement_sessions (id) on delete cascade deferrable initially deferred,
        at timestamptz not null,
        step text not null,
        device_id text,
        phase_before text not null,
        phase_after text not null,
        detail jsonb
      )`);
    this.addSql(`create index session_steps_session on session_steps (session_id, id)`);
    this.addSql(`
      create or replace function lobby_state(lid uuid, sid uuid default null) returns jsonb
      language sql stable as $fn$
        select jsonb_build_object(
          'lobby', to_jsonb(l),
          'members', coalesce((select jsonb_agg(to_jsonb(p) order by p.id) from participants p where p.lobby_id = l.id), '[]'::jsonb),
          'sessions', coalesce((
            select jsonb_agg(jsonb_build_object('id', s.id, 'doc', s.doc, 'version', s.version))
            from measurement_sessions s
            where s.lobby_id = l.id and (s.id = l.active_session_id or s.id = sid)), '[]'::jsonb))
        from lobbies l where l.id = lid
      $fn$`);
    this.addSql(LOBBY_APPLY);
  }
}

/** Several Idempotency-Key replies per write: queued steps of one session commit together. */
class Migration003KeptRepliesPerWrite extends Migration {
  override async up(): Promise<void> {
    this.addSql(LOBBY_APPLY);
  }
}

export const migrationsList = [
  { name: 'Migration001Initial', class: Migration001Initial },
  { name: 'Migration002OneRoundTrip', class: Migration002OneRoundTrip },
  { name: 'Migration003KeptRepliesPerWrite', class: Migration003KeptRepliesPerWrite },
];
