/**
 * A lobby's aggregate as the command path holds it in memory: the lobby row, its participants
 * in join order, the sessions it has loaded, and the version every write checks.
 */
import type { LobbyState, ParticipantStatus, Role } from '../../subjects/index.js';
import type { Session } from '../measurement/model.js';

export interface LobbyRow {
  id: string;
  code: string;
  creatorDeviceId: string;
  adminDeviceId: string;
  state: LobbyState;
  maxParticipants: number;
  room: Record<string, unknown> | null;
  stepIndex: number | null;
  profileId: string | null;
  activeSessionId: string | null;
  createdAt: Date;
  updatedAt: Date;
  closedAt: Date | null;
}

export interface ParticipantRow {
  deviceId: string;
  role: Role;
  roleSlotId: string | null;
  roleSlotLabel: string | null;
  status: ParticipantStatus;
  /** Whether the Gateway last reported this device's socket as connected. */
  connected: boolean;
  /** Kicked devices may not rejoin and are not listed. */
  kicked: boolean;
  joinedAt: Date;
  leftAt: Date | null;
}

/** A session of the lobby as stored: the pure document and its row version. */
export interface SessionRecord {
  doc: Session;
  version: number;
}

export interface Aggregate {
  lobby: LobbyRow;
  /** Every participant row (left and kicked ones included), in join order. */
  members: ParticipantRow[];
  /** `lobbies.version` of this state: a write applies only if the row still has it. */
  version: number;
  /** Sessions loaded so far (the active one, and any a step named), by id. */
  sessions: Map<string, SessionRecord>;
}

// ---- from the database's JSON (`lobby_state`) -----------------------------------------------

type Json = Record<string, unknown>;
const date = (v: unknown): Date => new Date(v as string);
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(v as string));

export function lobbyFromJson(j: Json): LobbyRow {
  return {
    id: j.id as string,
    code: j.code as string,
    creatorDeviceId: j.creator_device_id as string,
    adminDeviceId: j.admin_device_id as string,
    state: j.state as LobbyState,
    maxParticipants: j.max_participants as number,
    room: (j.room as Record<string, unknown> | null) ?? null,
    stepIndex: (j.step_index as number | null) ?? null,
    profileId: (j.profile_id as string | null) ?? null,
    activeSessionId: (j.active_session_id as string | null) ?? null,
    createdAt: date(j.created_at),
    updatedAt: date(j.updated_at),
    closedAt: dateOrNull(j.closed_at),
  };
}

export function memberFromJson(j: Json): ParticipantRow {
  return {
    deviceId: j.device_id as string,
    role: j.role as Role,
    roleSlotId: (j.role_slot_id as string | null) ?? null,
    roleSlotLabel: (j.role_slot_label as string | null) ?? null,
    status: j.status as ParticipantStatus,
    connected: j.connected as boolean,
    kicked: j.kicked as boolean,
    joinedAt: date(j.joined_at),
    leftAt: dateOrNull(j.left_at),
  };
}

/** `lobby_state(...)` -> an aggregate. */
export function aggregateFromJson(j: Json): Aggregate {
  const lobby = j.lobby as Json;
  const sessions = new Map<string, SessionRecord>();
  for (const s of (j.sessions as Json[]) ?? []) {
    sessions.set(s.id as string, { doc: s.doc as Session, version: s.version as number });
  }
  return {
    lobby: lobbyFromJson(lobby),
    members: ((j.members as Json[]) ?? []).map(memberFromJson),
    version: lobby.version as number,
    sessions,
  };
}

// ---- to the database's JSON (`lobby_apply`) ---------------------------------------------------

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function lobbyToJson(l: LobbyRow): Json {
  return {
    code: l.code,
    creator_device_id: l.creatorDeviceId,
    admin_device_id: l.adminDeviceId,
    state: l.state,
    max_participants: l.maxParticipants,
    room: l.room,
    step_index: l.stepIndex,
    profile_id: l.profileId,
    active_session_id: l.activeSessionId,
    created_at: iso(l.createdAt),
    updated_at: iso(l.updatedAt),
    closed_at: iso(l.closedAt),
  };
}

export function memberToJson(m: ParticipantRow): Json {
  return {
    device_id: m.deviceId,
    role: m.role,
    role_slot_id: m.roleSlotId,
    role_slot_label: m.roleSlotLabel,
    status: m.status,
    connected: m.connected,
    kicked: m.kicked,
    joined_at: iso(m.joinedAt),
    left_at: iso(m.leftAt),
  };
}

export function sameMember(a: ParticipantRow, b: ParticipantRow): boolean {
  return (
    a.role === b.role &&
    a.roleSlotId === b.roleSlotId &&
    a.roleSlotLabel === b.roleSlotLabel &&
    a.status === b.status &&
    a.connected === b.connected &&
    a.kicked === b.kicked &&
    a.leftAt?.getTime() === b.leftAt?.getTime()
  );
}

export const cloneLobby = (l: LobbyRow): LobbyRow => ({ ...l });
export const cloneMember = (m: ParticipantRow): ParticipantRow => ({ ...m });
