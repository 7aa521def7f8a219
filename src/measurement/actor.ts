/**
 * Mailboxes: one queue per key that runs one message at a time, in arrival order. The lobby
 * actors (src/lobby/actor.ts) key them by lobby id; a measurement session's steps run in its
 * lobby's mailbox. A mailbox exists only while it has work; it is created on the first message
 * and dropped when it drains, so idle lobbies and sessions cost nothing.
 *
 * Across replicas, a lobby's writers are serialised by its row lock and version (see
 * lobby_apply); the mailbox spares this replica from racing itself.
 */
export class Mailboxes {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `work` after every earlier message of `key` has been processed. */
  send<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    // The tail never rejects, so one failed step does not poison the steps behind it.
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** Whether `key` has queued or running work. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  /** Keys with queued or running work. */
  get active(): number {
    return this.tails.size;
  }

  /** Resolves when every message queued so far has been processed. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.allSettled([...this.tails.values()]);
  }
}
