/**
 * Subjects the service's replicas use among themselves (not part of the public contract).
 */
export const InternalSubject = {
  /** "I wrote events but do not hold the relay lease": wakes the replica that does. */
  outboxKick: '_lobby.outbox.kick',
} as const;
