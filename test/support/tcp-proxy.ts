/**
 * A TCP proxy between sluice and a test cluster that can fail the way networks do:
 *
 * - forwarding (the start): bytes flow both ways.
 * - `blackhole()`: bytes stop flowing in both directions on every open connection, but the sockets
 *   stay open: neither end hears a FIN or an RST, as on a path whose packets are silently dropped.
 *   New connections are accepted and then held without ever reaching the server (a connect attempt
 *   hangs), or, with `{ newConnections: 'forward' }`, forwarded normally (only the existing flows
 *   died, as when a NAT or firewall forgets its connection table).
 * - `reset()`: every connection is destroyed with an RST on both sides, and new connections are
 *   forwarded again.
 *
 * The kernel still acknowledges bytes on the client's socket while it is blackholed (the proxy holds
 * it open), so TCP keepalives do not see the break: only a peer that expects to hear from the other
 * side within a bounded time does.
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  server: net.Socket | null;
  /** No byte passes either way any more. */
  blackholed: boolean;
}

export class TcpProxy {
  private server: net.Server | null = null;
  private readonly pairs = new Set<Pair>();
  private holdNew = false;
  /** Connections accepted since start. */
  accepted = 0;
  port = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  /** Open connections right now. */
  get connections(): number {
    return this.pairs.size;
  }

  async start(): Promise<number> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  blackhole(opts: { newConnections?: 'hold' | 'forward' } = {}): void {
    this.holdNew = (opts.newConnections ?? 'hold') === 'hold';
    for (const p of this.pairs) this.silence(p);
  }

  /** Destroys every connection with an RST and forwards new ones again. */
  reset(): void {
    this.holdNew = false;
    for (const p of [...this.pairs]) this.drop(p);
  }

  async stop(): Promise<void> {
    for (const p of [...this.pairs]) this.drop(p);
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private silence(p: Pair): void {
    p.blackholed = true;
    // Stop reading: whatever arrives stays in the kernel's buffers, nothing is passed on.
    p.client.pause();
    p.server?.pause();
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const pair: Pair = { client, server: null, blackholed: false };
    this.pairs.add(pair);
    client.on('error', () => this.drop(pair));
    client.on('close', () => this.drop(pair));
    if (this.holdNew) {
      // Held: the client's TCP connect succeeds, and then it hears nothing.
      this.silence(pair);
      return;
    }
    const server = net.connect(this.targetPort, this.targetHost);
    pair.server = server;
    // While blackholed the client must not hear that the server went away either.
    const serverGone = () => (pair.blackholed ? undefined : this.drop(pair));
    server.on('error', serverGone);
    server.on('close', serverGone);
    client.on('data', (d) => {
      if (!pair.blackholed) server.write(d);
    });
    server.on('data', (d) => {
      if (!pair.blackholed) client.write(d);
    });
  }

  private drop(p: Pair): void {
    if (!this.pairs.delete(p)) return;
    p.client.resetAndDestroy();
    if (p.server && !p.server.destroyed) p.server.resetAndDestroy();
  }
}
