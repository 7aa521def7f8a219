/** Rows -> the contract's `Lobby` and `Participant` objects. */
import type { Lobby, Participant } from '../../subjects/index.js';
import type { LobbyRow, ParticipantRow } from '../db/entities.js';
import { isJoined } from './rules.js';

export const iso = (d: Date): string => d.toISOString();

export function toParticipant(p: ParticipantRow): Participant {
  return {
    device_id: p.deviceId,
    role: p.role,
    role_slot_id: p.roleSlotId ?? null,
    role_slot_label: p.roleSlotLabel ?? null,
    status: p.status,
    connected: p.connected,
    joined_at: iso(p.joinedAt),
    left_at: p.leftAt ? iso(p.leftAt) : null,
  };
}

/**
 * `participants` must be in join order. Only joined devices are listed (CONTRACT section 3), so
 * a lobby's size stays bounded however many come and go; who left is named in the
 * `participant_left` change itself.
 */
export function toLobby(l: LobbyRow, participants: readonly ParticipantRow[]): Lobby {
  return {
    lobby_id: l.id,
    code: l.code,
    admin_device_id: l.adminDeviceId,
    creator_device_id: l.creatorDeviceId,
    state: l.state,
    max_participants: l.maxParticipants,
    created_at: iso(l.createdAt),
    room: l.room ?? null,
    step_index: l.stepIndex ?? null,
    profile_id: l.profileId ?? null,
    active_session_id: l.activeSessionId ?? null,
    participants: participants.filter(isJoined).map(toParticipant),
  };
}
