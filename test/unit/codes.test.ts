import { describe, expect, it } from 'vitest';
import { LOBBY_CODE } from '../../subjects/index.js';
import { generateCode, isWellFormedCode, normalizeCode } from '../../src/lobby/codes.js';

const LOOK_ALIKES = ['0', 'O', '1', 'I', 'L'];

describe('lobby codes', () => {
  it('codes - the alphabet has no look-alikes and 31 distinct symbols', () => {
    for (const c of LOOK_ALIKES) expect(LOBBY_CODE.alphabet).not.toContain(c);
    expect(new Set(LOBBY_CODE.alphabet).size).toBe(LOBBY_CODE.alphabet.length);
    // A-Z without I, L, O (23) and 2-9 (8).
    expect(LOBBY_CODE.alphabet).toHaveLength(31);
    expect(LOBBY_CODE.alphabet).toMatch(/^[A-Z2-9]+$/);
  });

  it('codes - a generated code is 6 characters of the alphabet and well formed', () => {
    for (let i = 0; i < 500; i++) {
      const code = generateCode();
      expect(code).toHaveLength(LOBBY_CODE.length);
      expect(code).toHaveLength(6);
      for (const c of code) expect(LOBBY_CODE.alphabet).toContain(c);
      expect(isWellFormedCode(code)).toBe(true);
    }
  });

  it('codes - many codes use every alphabet symbol, no other, roughly evenly', () => {
    const n = 10_000;
    const counts = new Map<string, number>();
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const code = generateCode();
      seen.add(code);
      for (const c of code) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([...LOBBY_CODE.alphabet].sort());
    // Expected ~1935 per symbol (sd ~43): +-25 % is far outside chance, inside any real bias.
    const expected = (n * LOBBY_CODE.length) / LOBBY_CODE.alphabet.length;
    for (const [c, k] of counts) {
      expect(k, `symbol ${c}`).toBeGreaterThan(expected * 0.75);
      expect(k, `symbol ${c}`).toBeLessThan(expected * 1.25);
    }
    // 31^6 ~ 887 million codes: collisions among 10 000 are rare (expected ~0.06).
    expect(seen.size).toBeGreaterThanOrEqual(n - 3);
  });

  it('codes - normalisation ignores case and surrounding spaces', () => {
    expect(normalizeCode('abc23k')).toBe('ABC23K');
    expect(normalizeCode('  aBc23K \t\n')).toBe('ABC23K');
    expect(normalizeCode('ABC23K')).toBe('ABC23K');
    expect(isWellFormedCode(normalizeCode(' hjk789 '))).toBe(true);
  });

  it('codes - malformed codes are recognised before any lookup', () => {
    expect(isWellFormedCode('')).toBe(false);
    expect(isWellFormedCode('ABC23')).toBe(false);
    expect(isWellFormedCode('ABC23KM')).toBe(false);
    expect(isWellFormedCode('abc23k')).toBe(false); // not normalised
    expect(isWellFormedCode('AB C2K')).toBe(false);
    for (const c of LOOK_ALIKES) expect(isWellFormedCode(`ABC23${c}`), c).toBe(false);
    expect(isWellFormedCode('ABCDÉ2')).toBe(false);
  });
});
