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

export const migrationsList = [{ name: 'Migration001Initial', class: Migration001Initial }];
