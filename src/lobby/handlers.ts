/**
 * Lobby commands (CONTRACT section 3, "Lobby"): one handler per subject, from two groups that
 * share the same locking, broadcast and checking helpers (ops.ts).
 */
import { membershipHandlers } from './membership.js';
import { createLobbyOps, type LobbyDeps } from './ops.js';
import { settingsHandlers } from './settings.js';

export type { LobbyDeps } from './ops.js';

export function createLobbyHandlers(deps: LobbyDeps) {
  const ops = createLobbyOps(deps);
  return { ...membershipHandlers(deps, ops), ...settingsHandlers(deps, ops) };
}

export type LobbyHandlers = ReturnType<typeof createLobbyHandlers>;
