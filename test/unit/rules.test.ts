import { describe, expect, it } from 'vitest';
import {
  adminAfterLeave,
  hasRoom,
  isJoined,
  joinedDeviceIds,
  slotHolder,
  type Member,
} from '../../src/lobby/rules.js';
import type { Role } from '../../subjects/index.js';

function m(deviceId: string, over: Partial<Member> = {}): Member {
  return { deviceId, status: 'joined', kicked: false, role: 'none', roleSlotId: null, ...over };
}
const speaker = (deviceId: string, slot: string | null, over: Partial<Member> = {}) =>
  m(deviceId, { role: 'speaker' as Role, roleSlotId: slot, ...over });

describe('lobby rules', () => {
  it('rules - joined means status joined and not kicked', () => {
    expect(isJoined(m('a'))).toBe(true);
    expect(isJoined(m('a', { status: 'left' }))).toBe(false);
    expect(isJoined(m('a', { kicked: true }))).toBe(false);
    expect(joinedDeviceIds([m('a'), m('b', { status: 'left' }), m('c'), m('d', { kicked: true })])).toEqual(['a', 'c']);
  });

  it('rules - admin leaving hands over to the earliest-joined remaining member', () => {
    const members = [m('admin'), m('b'), m('c')];
    expect(adminAfterLeave(members, 'admin', 'admin')).toBe('b');
    // Earliest-joined *remaining*: b already left, so c.
    expect(adminAfterLeave([m('admin'), m('b', { status: 'left' }), m('c'), m('d')], 'admin', 'admin')).toBe('c');
    // Kicked devices are not candidates.
    expect(adminAfterLeave([m('admin'), m('b', { kicked: true, status: 'left' }), m('c')], 'admin', 'admin')).toBe('c');
    // The admin need not be the first in join order (after a transfer).
    expect(adminAfterLeave([m('a'), m('b'), m('c')], 'b', 'b')).toBe('a');
  });

  it('rules - the last member leaving gives no admin (the lobby closes)', () => {
    expect(adminAfterLeave([m('admin')], 'admin', 'admin')).toBeNull();
    expect(adminAfterLeave([m('admin'), m('b', { status: 'left' })], 'admin', 'admin')).toBeNull();
    // A non-admin who is the last joined one (admin already gone) also closes it.
    expect(adminAfterLeave([m('admin', { status: 'left' }), m('b')], 'admin', 'b')).toBeNull();
  });

  it('rules - a non-admin leaving leaves the admin unchanged', () => {
    const members = [m('a'), m('admin'), m('c')];
    expect(adminAfterLeave(members, 'admin', 'a')).toBe('admin');
    expect(adminAfterLeave(members, 'admin', 'c')).toBe('admin');
  });

  it('rules - slotHolder finds another joined device with the same role and slot', () => {
    const members = [speaker('s1', 'A'), speaker('s2', 'B'), m('mic', { role: 'microphone', roleSlotId: 'A' })];
    expect(slotHolder(members, 'speaker', 'A', 'x')?.deviceId).toBe('s1');
    expect(slotHolder(members, 'microphone', 'A', 'x')?.deviceId).toBe('mic');
    // The device itself does not block its own slot.
    expect(slotHolder(members, 'speaker', 'A', 's1')).toBeUndefined();
    // A free slot, no slot, role none.
    expect(slotHolder(members, 'speaker', 'C', 'x')).toBeUndefined();
    expect(slotHolder(members, 'speaker', null, 'x')).toBeUndefined();
    expect(slotHolder(members, 'speaker', undefined, 'x')).toBeUndefined();
    expect(slotHolder(members, 'speaker', '', 'x')).toBeUndefined();
    expect(slotHolder([m('n', { roleSlotId: 'A' })], 'none', 'A', 'x')).toBeUndefined();
  });

  it('rules - departed and kicked devices hold no slot', () => {
    expect(slotHolder([speaker('s1', 'A', { status: 'left' })], 'speaker', 'A', 'x')).toBeUndefined();
    expect(slotHolder([speaker('s1', 'A', { kicked: true })], 'speaker', 'A', 'x')).toBeUndefined();
  });

  it('rules - hasRoom counts joined members only', () => {
    expect(hasRoom([], 2)).toBe(true);
    expect(hasRoom([m('a')], 2)).toBe(true);
    expect(hasRoom([m('a'), m('b')], 2)).toBe(false);
    expect(hasRoom([m('a'), m('b', { status: 'left' })], 2)).toBe(true);
    expect(hasRoom([m('a'), m('b', { status: 'left', kicked: true })], 2)).toBe(true);
    expect(hasRoom([m('a'), m('b'), m('c')], 2)).toBe(false);
  });
});
