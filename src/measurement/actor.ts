/**
 * One in-process actor per measurement session: a mailbox that runs one step at a time for
 * its session, in arrival order. A mailbox exists only while it has work; it is created on the
 * first message and dropped when it drains, so idle sessions cost nothing.
 *
 * Across replicas, steps of one session are serialised by the lobby row lock and the session's
 * version column (see sessions.ts); the mailbox spares this replica from racing itself.
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

  /** Sessions with queued or running steps. */
  get active(): number {
    return this.tails.size;
  }

  /** Resolves when every message queued so far has been processed. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.allSettled([...this.tails.values()]);
  }
}
