/**
 * Lobby join codes: 6 characters from an alphabet without look-alikes (no 0 O 1 I L), drawn
 * with a cryptographic random source. Uniqueness among lobbies that are not closed is enforced
 * by a partial unique index; the creator retries on the rare collision.
 */
import { randomInt } from 'node:crypto';
import { LOBBY_CODE } from '../../subjects/index.js';

export function generateCode(): string {
  let code = '';
  for (let i = 0; i < LOBBY_CODE.length; i++) {
    code += LOBBY_CODE.alphabet[randomInt(LOBBY_CODE.alphabet.length)];
  }
  return code;
}

/** Codes are case-insensitive and surrounding spaces are ignored. */
export function normalizeCode(input: string): string {
  return input.trim().toUpperCase();
}

/** Whether `code` could be a code at all (saves a query for obvious typos). */
export function isWellFormedCode(code: string): boolean {
  if (code.length !== LOBBY_CODE.length) return false;
  for (const c of code) if (!LOBBY_CODE.alphabet.includes(c)) return false;
  return true;
}
