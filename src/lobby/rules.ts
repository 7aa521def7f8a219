/**
 * Pure lobby rules: who is joined, who becomes admin, who holds a slot. No I/O.
 */
import type { Role } from '../../subjects/index.js';

/** The fields of a participant the rules look at (rows satisfy it). */
export interface Member {
  deviceId: string;
  status: 'joined' | 'left';
  kicked: boolean;
  role: Role;
  roleSlotId?: string | null;
}

export const isJoined = (m: Member): boolean => m.status === 'joined' && !m.kicked;

/** Joined members, in the order given (join order). */
export function joinedMembers<M extends Member>(members: readonly M[]): M[] {
  return members.filter(isJoined);
}

export function joinedDeviceIds(members: readonly Member[]): string[] {
  return joinedMembers(members).map((m) => m.deviceId);
}

/**
 * The admin after `leaving` left: unchanged unless the admin left; then the earliest-joined
 * remaining member; null when nobody remains (the lobby closes).
 */
export function adminAfterLeave(
  members: readonly Member[],
  currentAdmin: string,
  leaving: string,
): string | null {
  const remaining = joinedMembers(members).filter((m) => m.deviceId !== leaving);
  if (remaining.length === 0) return null;
  if (currentAdmin !== leaving) return currentAdmin;
  return remaining[0]!.deviceId;
}

/** The joined member other than `deviceId` holding `slotId` for `role`, if any. */
export function slotHolder(
  members: readonly Member[],
  role: Role,
  slotId: string | null | undefined,
  deviceId: string,
): Member | undefined {
  if (!slotId || role === 'none') return undefined;
  return joinedMembers(members).find(
    (m) => m.deviceId !== deviceId && m.role === role && m.roleSlotId === slotId,
  );
}

/** Whether one more member may join a lobby of `max` participants. */
export function hasRoom(members: readonly Member[], max: number): boolean {
  return joinedMembers(members).length < max;
}
