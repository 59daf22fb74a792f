/**
 * Private nats-server processes for tests: the Debian package's binary (/usr/sbin/nats-server)
 * with JetStream on, a store directory under a temp dir and free loopback ports. One node for most
 * tests, or a 3-node cluster joined by routes for replication and quorum tests. Never the machine's
 * shared service on 4222.
 *
 *   const nats = await startNats();            // nats.url
 *   const c = await startNatsCluster(3);       // c.url (all nodes), c.nodes[i].stop() / .start()
 *   await c.remove();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NATS_SERVER = process.env.SLUICE_NATS_SERVER ?? '/usr/sbin/nats-server';

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, proc: ChildProcess, log: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nats-server on ${port} exited (${proc.exitCode}): ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server on ${port} did not listen within ${timeoutMs} ms: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface NatsNodeOptions {
  /** `-js`; false starts a server without JetStream (to test that refusal). */
  readonly jetstream?: boolean;
  readonly name: string;
  readonly dir: string;
  readonly port: number;
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: readonly number[] };
}

/** One nats-server process that can be stopped (SIGTERM or SIGKILL) and started again on the same store and ports. */
export class NatsNode {
  private proc: ChildProcess | null = null;
  private output = '';

  constructor(readonly options: NatsNodeOptions) {}

  get url(): string {
    return `nats://127.0.0.1:${this.options.port}`;
  }

  /** The server's process id while it runs (for CPU readings in benchmarks). */
  get pid(): number | undefined {
    return this.running ? this.proc!.pid : undefined;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const o = this.options;
    const args = ['-a', '127.0.0.1', '-p', String(o.port), '-n', o.name];
    if (o.jetstream !== false) args.push('-js', '-sd', join(o.dir, 'store'));
    if (o.cluster) {
      args.push('--cluster_name', o.cluster.name, '--cluster', `nats://127.0.0.1:${o.cluster.port}`);
      args.push('--routes', o.cluster.routes.map((p) => `nats://127.0.0.1:${p}`).join(','));
    }
    this.output = '';
    const proc = spawn(NATS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-8192);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    this.proc = proc;
    await waitForPort(o.port, proc, () => this.output);
  }

  /** Stops the process: SIGTERM (a clean shutdown) or SIGKILL (a crash; the page cache keeps what was stored). */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.proc = null;
  }

  log(): string {
    return this.output;
  }
}

export interface NatsCluster {
  readonly nodes: NatsNode[];
  /** Every node's URL, comma-separated, as `log.url` takes it. */
  readonly url: string;
  /** Stops every node and removes the store directories. */
  remove(): Promise<void>;
}

/** `size` nats-server processes with JetStream, in one cluster when size > 1, each with its own store under one temp dir. */
export async function startNatsCluster(size = 3, options: { jetstream?: boolean } = {}): Promise<NatsCluster> {
  if (!existsSync(NATS_SERVER)) throw new Error(`${NATS_SERVER} not found: apt-get install nats-server (or set SLUICE_NATS_SERVER)`);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-nats-'));
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routePorts = size > 1 ? await Promise.all(Array.from({ length: size }, () => freePort())) : [];
  const nodes = ports.map(
    (port, i) =>
      new NatsNode({
        name: `n${i + 1}`,
        dir: join(dir, `n${i + 1}`),
        port,
        jetstream: options.jetstream,
        cluster: size > 1 ? { name: 'sluice-test', port: routePorts[i], routes: routePorts.filter((_, j) => j !== i) } : undefined,
      }),
  );
  const remove = async () => {
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await remove();
    throw err;
  }
  return { nodes, url: nodes.map((n) => n.url).join(','), remove };
}

/** One nats-server with JetStream (or without, `{ jetstream: false }`). */
export async function startNats(options: { jetstream?: boolean } = {}): Promise<NatsCluster> {
  return startNatsCluster(1, options);
}
