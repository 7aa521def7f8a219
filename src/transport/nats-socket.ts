/**
 * The NATS connection's socket, with its writes coalesced per event-loop turn.
 *
 * nats.js flushes its outbound buffer on a microtask, so each reply and each JetStream publish
 * of a busy service leaves in a write of its own; profiled under load, those write system calls
 * took about a third of the main thread. Corking the socket on the first write of a turn and
 * uncorking it in that turn's check phase (`setImmediate`) sends everything the turn produced in
 * one `writev`, at the cost of at most one turn of delay. Installed through nats.js's transport
 * factory, the same hook its own `connect()` uses, so reconnects get the same transport.
 */
import { NatsConnectionImpl, setTransportFactory } from '@nats-io/nats-core/internal';
import type { ConnectionOptions, NatsConnection } from '@nats-io/nats-core';
import { NodeTransport, nodeResolveHost } from '@nats-io/transport-node/lib/node_transport.js';

class CoalescingTransport extends NodeTransport {
  private corked = false;

  override send(frame: Uint8Array): void {
    const socket = this.socket;
    if (socket && !this.corked) {
      this.corked = true;
      socket.cork();
      setImmediate(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    super.send(frame);
  }
}

/** `connect()` of @nats-io/transport-node, with the coalescing transport. */
export function connectCoalescing(opts: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new CoalescingTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(opts);
}
