/**
 * Throwaway MariaDB servers for tests: `mariadb-install-db` into a temp data directory, then a private
 * `mariadbd` on a free port and a unix socket inside that directory, with the binlog on and set up
 * the way sluice requires it (ROW, FULL row image, FULL row metadata, GTIDs). Never the machine's
 * own service on 3306. Removed by destroy(), and on process exit.
 *
 * Needs the Debian packages `mariadb-server` (mariadbd, mariadb-install-db); .ci/run installs them.
 * We are root in CI: mariadbd refuses root unless told `--user=root`, which we pass.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';

const run = promisify(execFile);
const MARIADBD = process.env.SLUICE_MARIADBD ?? '/usr/sbin/mariadbd';
const INSTALL_DB = process.env.SLUICE_MARIADB_INSTALL_DB ?? 'mariadb-install-db';
const START_TIMEOUT_MS = 60_000;
const LOG_TAIL_CHARS = 16_000;

export interface MariaDbServer {
  readonly port: number;
  readonly dataDir: string;
  readonly socket: string;
  readonly serverId: number;
  /** mysql://root@127.0.0.1:port/database */
  url(database?: string, user?: string, password?: string): string;
  /** A root connection (multipleStatements on), closed by the caller. */
  connect(database?: string): Promise<mysql.Connection>;
  /** Runs statements on a fresh root connection and returns the rows of the last one. */
  query(sql: string, params?: unknown[], database?: string): Promise<unknown>;
  serverLog(): string;
  destroy(): Promise<void>;
}

export interface StartMariaDbOptions {
  /** Extra `--name=value` server options; they override the defaults. */
  settings?: Record<string, string>;
  serverId?: number;
  /** false: no binlog at all (for the preflight's refusal); default true. */
  binlog?: boolean;
}

const running = new Set<{ child: ChildProcess; dir: string }>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const r of running) {
      r.child.kill('SIGKILL');
      rmSync(r.dir, { recursive: true, force: true });
    }
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function runAsRoot(): string[] {
  return typeof process.getuid === 'function' && process.getuid() === 0 ? ['--user=root'] : [];
}

/** Starts a private MariaDB server with the binlog set up for CDC (under 5 s here). */
export async function startMariaDb(options: StartMariaDbOptions = {}): Promise<MariaDbServer> {
  hookExit();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-mariadb-'));
  const dataDir = path.join(dir, 'data');
  const socket = path.join(dir, 'mariadbd.sock');
  const serverId = options.serverId ?? 1;
  try {
    await run(INSTALL_DB, [
      '--no-defaults',
      `--datadir=${dataDir}`,
      ...runAsRoot(),
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--skip-name-resolve',
    ]);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed (is the mariadb-server package installed?): ${(err as Error).message}`);
  }
  const port = await freePort();
  const settings: Record<string, string> = {
    datadir: dataDir,
    socket,
    port: String(port),
    'bind-address': '127.0.0.1',
    'pid-file': path.join(dir, 'mariadbd.pid'),
    'log-error': path.join(dir, 'error.log'),
    'log-bin': path.join(dataDir, 'binlog'),
    'binlog-format': 'ROW',
    'binlog-row-image': 'FULL',
    'binlog-row-metadata': 'FULL',
    'server-id': String(serverId),
    'gtid-domain-id': '0',
    'gtid-strict-mode': '1',
    'innodb-buffer-pool-size': '32M',
    'innodb-log-file-size': '16M',
    'innodb-flush-log-at-trx-commit': '2',
    'sync-binlog': '0',
    'skip-name-resolve': '1',
    'max-connections': '100',
    ...options.settings,
  };
  if (options.binlog === false) {
    for (const k of ['log-bin', 'binlog-format', 'binlog-row-image', 'binlog-row-metadata']) delete settings[k];
  }
  const args = ['--no-defaults', ...runAsRoot(), ...Object.entries(settings).map(([k, v]) => `--${k}=${v}`)];
  const child = spawn(MARIADBD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const entry = { child, dir };
  running.add(entry);
  let tail = '';
  child.stderr?.on('data', (b: Buffer) => {
    tail = (tail + b.toString()).slice(-LOG_TAIL_CHARS);
  });
  const serverLog = (): string => tail + readLogTail(path.join(dir, 'error.log'));
  const url = (database = '', user = 'root', password = ''): string =>
    `mysql://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@127.0.0.1:${port}/${database}`;
  const connect = (database?: string): Promise<mysql.Connection> =>
    mysql.createConnection({ host: '127.0.0.1', port, user: 'root', database, multipleStatements: true, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true });

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) {
      running.delete(entry);
      const log = serverLog();
      await fs.rm(dir, { recursive: true, force: true });
      throw new Error(`mariadbd exited with ${child.exitCode} at start:\n${log}`);
    }
    try {
      const c = await connect();
      await c.end();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`mariadbd did not accept connections in ${START_TIMEOUT_MS} ms: ${(err as Error).message}\n${serverLog()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  return {
    port,
    dataDir,
    socket,
    serverId,
    url,
    connect,
    async query(sql: string, params: unknown[] = [], database?: string): Promise<unknown> {
      const c = await connect(database);
      try {
        const [rows] = await c.query(sql, params);
        return rows;
      } finally {
        await c.end();
      }
    },
    serverLog,
    async destroy(): Promise<void> {
      if (child.exitCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(entry);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

function readLogTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-LOG_TAIL_CHARS);
  } catch {
    return '';
  }
}
