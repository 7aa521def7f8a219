/**
 * The bench's own view of the broadcasts, for scenarios that drive devices with plain calls:
 * one core subscription on `<prefix>.lobby.*.>` (as the Gateway has), handing every envelope
 * with its arrival time to the listeners.
 */
import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { allBroadcastsFilter, type Envelope } from '../../subjects/index.js';

export type Listener = (e: Envelope, at: number) => void;

export interface BroadcastWatch {
  listen(l: Listener): () => void;
  close(): void;
}

export async function watchBroadcasts(nc: NatsConnection, prefix: string): Promise<BroadcastWatch> {
  const listeners = new Set<Listener>();
  const sub: Subscription = nc.subscribe(allBroadcastsFilter(`${prefix}.`), {
    callback: (err, m) => {
      if (err) return;
      const at = performance.now();
      const e = m.json<Envelope>();
      for (const l of listeners) l(e, at);
    },
  });
  // The subscription is live on the server before any step is sent.
  await nc.flush();
  return {
    listen(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close: () => sub.unsubscribe(),
  };
}
