/**
 * One function computes status; the CLI (`sluice status`, the progress line) and later the API and
 * dashboard render that object. It reads the destination's `_sluice` state and the source's WAL
 * position, so it works whether or not `sluice run` is running.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { SluiceConfig } from '../config/schema.js';
import { slotNameOf } from '../config/schema.js';
import { errorMessage, SluiceError } from '../core/errors.js';
import type { DestinationControl } from '../destinations/destination.js';
import { enginesFor } from '../engines.js';
import { Lsn, TableName } from '../core/types.js';
import { formatBytes } from '../core/units.js';
import { cursorKey, readCursors, readTables, stateSchemaExists } from '../destinations/postgres/state.js';
import { assertStateReadable, readStateFormat, STATE_FORMAT } from '../destinations/postgres/state-format.js';
import { describeLockWait, readLockWaits, waitIsOn, type LockWait } from '../destinations/postgres/lock-waits.js';
import { listArchives } from '../destinations/postgres/archives.js';
import { diskSpace } from '../destinations/postgres/space.js';
import { qualified } from '../destinations/postgres/dialect.js';
import { replicaRoleGrant, setReplicaRole } from '../destinations/postgres/foreign-keys.js';
import { configureConnections, connect } from './context.js';
import { pipelineLockHolder } from '../destinations/postgres/pipeline-lock.js';
import { describeThrottle, formatEta } from './status-format.js';
import type { CatchUp, Progress } from './eta.js';
import { copyFigures, describeProgress } from './progress-format.js';

export interface TableStatus {
  name: string;
  state: string;
  mode: string | null;
  rowsCopied: number;
  rowsEstimated: number;
  /** Averaged over the last 30 s by the running pipeline. */
  rowsPerSecond: number;
  /** Backfilling: progress in percent, in the strategy's unit (pipeline/eta.ts), below 100 until done. */
  percent: number | null;
  /** Backfilling: seconds left at the smoothed rate over active copy time; null with `progress.etaNote` saying why. */
  etaSeconds: number | null;
  /**
   * The running pipeline's progress of the copy (pipeline/eta.ts): unit, units done and total,
   * ratio, rate over active time, active and throttled seconds, the held-back reason, ETA or why none.
   */
  progress: Progress | null;
  /** Catching up: the backlog (bytes of WAL), its shrink rate (apply minus capture), ETA, not converging. */
  catchUp: CatchUp | null;
  lagBytes: number | null;
  lagSeconds: number | null;
  error: string | null;
  /** What the table waits for right now, e.g. "waiting for the swap lock (attempt 3 ...)". */
  detail: string | null;
  /** sluice's sessions in the destination that wait for a lock on this table, and who holds it. */
  lockWaits: LockWait[];
  /** Online backfills: the staging table being loaded, and the replaced tables still kept. */
  staging: string | null;
  archives: { name: string; dropAfter: string | null }[];
}

export interface PipelineStatus {
  pipeline: {
    name: string;
    /** A process holds the pipeline's lock in the destination (it is gone the moment that process is). */
    running: boolean;
    pid: number | null;
    /** Its last heartbeat (ISO), also when it is not running. */
    lastSeen: string | null;
    host: string | null;
    slot: string;
    slotActive: boolean | null;
    /** WAL the slot retains: source's current position minus the slot's confirmed position. */
    slotLagBytes: number | null;
    sourceError?: string;
    /** Its process is alive on this machine but does not hold the lock now: it is reconnecting to the destination. */
    reconnecting?: boolean;
    /** Set when the process holding the lock has not written its heartbeat for this long (stuck). */
    heartbeatAgeSeconds?: number;
    /**
     * The running pipeline's throttle: its limits, "open" or why it is paused (`state`), and where the
     * limits come from (`source`: config, or `sluice throttle` at a time). Not running: the limits a
     * `sluice throttle` set, which the next start applies again (state "not running").
     */
    throttle: Record<string, unknown> | null;
    /**
     * Set when foreign keys involve the replicated tables in the destination and sluice's role may not
     * set session_replication_role (writes across tables then wait for their parents): the grant to run.
     */
    replicaRole?: string;
    /** Set when `_sluice` is an older format than this sluice's: what `run` will do about it. */
    stateNote?: string;
  };
  tables: TableStatus[];
  /** The replaced tables of online backfills still kept (they hold disk space until dropped). */
  archives: ArchivesSummary;
}

export interface ArchivesSummary {
  count: number;
  /** Their total size (pg_total_relation_size). */
  bytes: number;
  /** When the sweeper drops the next one (ISO); null when every one is kept until dropped by hand. */
  nextDropAt: string | null;
  /** The destination's free space, when it can be read (a server on this machine). */
  freeBytes: number | null;
  totalBytes: number | null;
  /** Set when the free space is under online.lowFreeSpacePercent of the disk. */
  lowSpace?: string;
}

/** A running pipeline (it holds the lock) whose heartbeat is older than this is reported as not answering. */
const STALE_HEARTBEAT_SECONDS = 15;

/** The source's side of status: its WAL position and the slot's, or why it could not be read. */
interface SourceSide {
  currentLsn: string | null;
  slotActive: boolean | null;
  slotLagBytes: number | null;
  sourceError?: string;
}

async function readSourceSide(cfg: SluiceConfig, slot: string): Promise<SourceSide> {
  let src: pg.Client;
  try {
    src = await connect('source', cfg.source.url, 'sluice-status');
  } catch (err) {
    return { currentLsn: null, slotActive: null, slotLagBytes: null, sourceError: errorMessage(err) };
  }
  try {
    const r = await src.query(
      `SELECT pg_current_wal_lsn()::text AS lsn,
              (SELECT active FROM pg_replication_slots WHERE slot_name = $1) AS active,
              (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 FROM pg_replication_slots WHERE slot_name = $1) AS lag`,
      [slot],
    );
    return { currentLsn: r.rows[0].lsn, slotActive: r.rows[0].active, slotLagBytes: r.rows[0].lag === null ? null : Math.max(0, Math.round(r.rows[0].lag)) };
  } finally {
    await src.end().catch(() => {});
  }
}

export async function computeStatus(cfg: SluiceConfig): Promise<PipelineStatus> {
  configureConnections(cfg);
  if (cfg.destination.type !== 'postgres') return computeStatusThroughPort(cfg);
  const dst = await connect('destination', cfg.destination.url, 'sluice-status');
  try {
    const slot = slotNameOf(cfg);
    const { currentLsn, slotActive, slotLagBytes, sourceError } = await readSourceSide(cfg, slot);
    // A newer format is refused (exit 2); an older one is read as it is (a migration that changes what
    // status reads must keep status reading the format before it).
    const format = await readStateFormat(dst);
    assertStateReadable(format);
    const stateNote =
      format !== null && format < STATE_FORMAT
        ? `the _sluice state is format ${format}; \`sluice run\` of this version migrates it to format ${STATE_FORMAT} at start (back it up first: docs/operations.md, "Upgrading sluice")`
        : undefined;
    const hasState = await stateSchemaExists(dst);
    const pipe = hasState
      ? (
          await dst.query(`SELECT pid, host, throttle, heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8 AS age FROM _sluice.pipelines WHERE name = $1`, [
            cfg.pipeline.name,
          ])
        ).rows[0]
      : undefined;
    // Running means a process holds the pipeline's lock now: a killed one is noticed at once, not when its heartbeat ages.
    const holder = hasState ? await pipelineLockHolder(dst, cfg.pipeline.name) : null;
    // Its process may be alive without the lock for a moment: it lost the destination and is
    // reconnecting. Only a process on this machine can be asked; elsewhere the lock is the answer.
    const reconnecting = !!pipe && holder === null && pipe.pid !== null && pipe.host === hostname() && processAlive(Number(pipe.pid));
    const running = !!pipe && (holder !== null || reconnecting);
    const stale = running && pipe.age !== null && pipe.age > STALE_HEARTBEAT_SECONDS ? Math.round(pipe.age) : null;
    const rows = hasState ? await readTables(dst, cfg.pipeline.name) : [];
    const cursors = hasState ? await readCursors(dst, cfg.pipeline.name) : new Map();
    const byName = new Map(rows.map((r) => [r.name, r]));
    const archives = hasState ? await listArchives(dst, cfg.pipeline.name) : [];
    const space = await diskSpace(dst);
    const dropTimes = archives.map((a) => a.dropAfter?.getTime()).filter((t): t is number => t !== undefined);
    const archiveSummary: ArchivesSummary = {
      count: archives.length,
      bytes: archives.reduce((n, a) => n + (a.bytes ?? 0), 0),
      nextDropAt: dropTimes.length ? new Date(Math.min(...dropTimes)).toISOString() : null,
      freeBytes: space?.freeBytes ?? null,
      totalBytes: space?.totalBytes ?? null,
    };
    const pct = cfg.online.lowFreeSpacePercent;
    if (space && space.totalBytes > 0 && space.freeBytes < (space.totalBytes * pct) / 100) {
      archiveSummary.lowSpace =
        `destination free space ${formatBytes(space.freeBytes)} of ${formatBytes(space.totalBytes)} is under online.lowFreeSpacePercent (${pct} %)` +
        (archives.length ? `; archives hold ${formatBytes(archiveSummary.bytes)}: sluice archives drop` : '');
    }
    const missingIndexes = hasState ? await skippedIndexes(dst, cfg.pipeline.name) : new Map<string, string[]>();
    const replicaRoleNote = hasState ? await replicaRoleWarning(dst, rows.map((r) => r.target)) : undefined;
    // Read now, from here: a running pipeline's own status row cannot say it is stuck behind a lock.
    const waits = hasState ? await readLockWaits(dst).catch(() => [] as LockWait[]) : [];
    const names = [...new Set([...cfg.tables.map((t) => TableName.format(TableName.parse(t.name))), ...rows.map((r) => r.name)])];
    const tables: TableStatus[] = [];
    for (const name of names) {
      const row = byName.get(name);
      const cursor = row ? cursors.get(cursorKey(name, row.target)) : undefined;
      let lagBytes: number | null = null;
      const from = running ? row?.pendingLsn ?? cursor?.position.lsn ?? null : cursor?.position.lsn ?? null;
      if (currentLsn && from !== null && from !== undefined) {
        const d = await dst.query(`SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8 AS d`, [currentLsn, Lsn.format(from)]);
        lagBytes = Math.max(0, Math.round(d.rows[0].d));
      }
      const targets = [row?.target ?? `${cfg.destination.schema}.${TableName.parse(name).name}`, row?.staging].filter((t): t is string => !!t);
      const lockWaits = waits.filter((w) => targets.some((t) => waitIsOn(w, t)));
      const lockDetail = lockWaits.map((w) => describeLockWait(w, targets[0])).join('; ');
      tables.push({
        name,
        state: row?.state ?? 'queued',
        mode: row?.mode ?? null,
        rowsCopied: row?.rowsCopied ?? 0,
        rowsEstimated: row?.rowsEstimated ?? 0,
        rowsPerSecond: running && row?.state === 'backfilling' ? Math.round(row.rowsPerSecond) : 0,
        ...copyFigures(row ?? null, running),
        lagBytes: cursor ? lagBytes : null,
        lagSeconds: cursor ? (running ? row?.lagSeconds ?? null : cursor.commitTime ? Math.max(0, (Date.now() - cursor.commitTime.getTime()) / 1000) : null) : null,
        error: row?.error ?? null,
        detail:
          [
            lockDetail,
            row?.detail,
            missingIndexes.has(name)
              ? `source indexes not built in the destination: ${missingIndexes.get(name)!.join(', ')} (why and the statements: sluice's log, or _sluice.runs.params->'indexes')`
              : null,
          ]
            .filter((d) => !!d)
            .join('; ') || null,
        lockWaits,
        staging: row?.staging ?? null,
        archives: archives
          .filter((a) => a.table === name)
          .map((a) => ({ name: a.archive, dropAfter: a.dropAfter ? a.dropAfter.toISOString() : null })),
      });
    }
    return {
      pipeline: {
        name: cfg.pipeline.name,
        running,
        pid: running ? pipe.pid : null,
        ...(reconnecting ? { reconnecting: true } : {}),
        ...(replicaRoleNote ? { replicaRole: replicaRoleNote } : {}),
        lastSeen: pipe?.heartbeat_at ? (pipe.heartbeat_at as Date).toISOString() : null,
        ...(stale !== null ? { heartbeatAgeSeconds: stale } : {}),
        host: pipe?.host ?? null,
        slot,
        slotActive,
        slotLagBytes,
        ...(sourceError ? { sourceError } : {}),
        throttle: running ? (pipe.throttle ?? null) : pipe?.throttle?.override ? { ...pipe.throttle, state: 'not running' } : null,
        ...(stateNote ? { stateNote } : {}),
      },
      tables,
      archives: archiveSummary,
    };
  } finally {
    await dst.end().catch(() => {});
  }
}

/**
 * Status of a destination reached through the destination port (DuckDB). One process has a DuckDB
 * file at a time: while `sluice run` holds it, status says the pipeline runs (and its process) but
 * cannot read the tables' rows until it stops; when none runs, the file is opened and read.
 */
async function computeStatusThroughPort(cfg: SluiceConfig): Promise<PipelineStatus> {
  const slot = slotNameOf(cfg);
  const side = await readSourceSide(cfg, slot);
  const names = cfg.tables.map((t) => TableName.format(TableName.parse(t.name)));
  const pipeline = (running: boolean, pid: number | null, note?: string): PipelineStatus['pipeline'] => ({
    name: cfg.pipeline.name,
    running,
    pid,
    lastSeen: null,
    host: running ? hostname() : null,
    slot,
    slotActive: side.slotActive,
    slotLagBytes: side.slotLagBytes,
    ...(side.sourceError ? { sourceError: side.sourceError } : {}),
    throttle: null,
    ...(note ? { stateNote: note } : {}),
  });
  const noArchives: ArchivesSummary = { count: 0, bytes: 0, nextDropAt: null, freeBytes: null, totalBytes: null };
  const unknown = (name: string, state: string): TableStatus => ({
    name, state, mode: null, rowsCopied: 0, rowsEstimated: 0, rowsPerSecond: 0, percent: null, etaSeconds: null,
    lagBytes: null, lagSeconds: null, error: null, detail: null, lockWaits: [], staging: null, archives: [], progress: null, catchUp: null,
  });
  // Reading a file that is not there would create it.
  if (cfg.destination.type === 'duckdb' && !existsSync(cfg.destination.path)) {
    return { pipeline: pipeline(false, null), tables: names.map((n) => unknown(n, 'queued')), archives: noArchives };
  }
  const { destination } = enginesFor(cfg);
  let control: DestinationControl;
  try {
    control = await destination.openControl('sluice-status');
  } catch (err) {
    const pid = err instanceof SluiceError ? (err.context.pid as number | null | undefined) : undefined;
    if (pid === undefined) throw err;
    const note = `the ${destination.type} destination is held by process ${pid ?? '(unknown)'}: table details are readable when it stops`;
    return { pipeline: pipeline(true, pid, note), tables: names.map((n) => unknown(n, 'running')), archives: noArchives };
  }
  try {
    await control.assertStateReadable();
    // No state yet (never run): every table is queued.
    const rows = await control.tables(cfg.pipeline.name).catch(() => []);
    const cursors = new Map((await control.cursors(cfg.pipeline.name).catch(() => [])).map((c) => [cursorKey(c.name, c.target), c]));
    const archives = await control.listArchives(cfg.pipeline.name).catch(() => []);
    const byName = new Map(rows.map((r) => [r.name, r]));
    const current = side.currentLsn === null ? null : Lsn.parse(side.currentLsn);
    const tables = [...new Set([...names, ...rows.map((r) => r.name)])].map((name): TableStatus => {
      const row = byName.get(name);
      if (!row) return unknown(name, 'queued');
      const cursor = cursors.get(cursorKey(name, row.target));
      return {
        ...unknown(name, row.state),
        mode: row.mode,
        rowsCopied: row.rowsCopied,
        rowsEstimated: row.rowsEstimated,
        ...copyFigures(row, false),
        lagBytes: cursor && current !== null ? Math.max(0, Number(current - cursor.position.lsn)) : null,
        lagSeconds: cursor?.commitTime ? Math.max(0, (Date.now() - cursor.commitTime.getTime()) / 1000) : null,
        error: row.error,
        detail: row.detail,
        staging: row.staging,
        archives: archives.filter((a) => a.table === name).map((a) => ({ name: a.archive, dropAfter: a.dropAfter ? a.dropAfter.toISOString() : null })),
      };
    });
    const dropTimes = archives.map((a) => a.dropAfter?.getTime()).filter((t): t is number => t !== undefined);
    return {
      pipeline: pipeline(false, null),
      tables,
      archives: { ...noArchives, count: archives.length, nextDropAt: dropTimes.length ? new Date(Math.min(...dropTimes)).toISOString() : null },
    };
  } finally {
    await control.close();
  }
}



/** "23 h", "41 min", "now". */
export function formatDuration(ms: number): string {
  if (ms <= 0) return 'now';
  const min = ms / 60_000;
  if (min < 1) return '< 1 min';
  if (min < 90) return `${Math.round(min)} min`;
  const h = min / 60;
  if (h < 48) return `${Math.round(h)} h`;
  return `${Math.round(h / 24)} d`;
}

export function renderStatus(s: PipelineStatus): string {
  const lines: string[] = [];
  const p = s.pipeline;
  lines.push(
    `pipeline ${p.name}: ${
      p.running
        ? `running (pid ${p.pid}${p.host ? ` on ${p.host}` : ''}${p.reconnecting ? '; reconnecting to the destination' : ''}${p.heartbeatAgeSeconds ? `; no heartbeat for ${p.heartbeatAgeSeconds} s` : ''})`
        : `not running${p.lastSeen ? ` (last seen ${p.lastSeen})` : ''}`
    }; slot ${p.slot}` +
      `${p.slotActive === null ? ' (missing)' : p.slotActive ? ' (active)' : ''}, retains ${formatBytes(p.slotLagBytes)}` +
      (p.sourceError ? `; source: ${p.sourceError}` : ''),
  );
  if (p.stateNote) lines.push(p.stateNote);
  if (p.replicaRole) lines.push(`warning: ${p.replicaRole}`);
  const throttle = p.throttle ? describeThrottle(p.throttle, s.tables.map((t) => t.detail)) : null;
  if (throttle) lines.push(`throttle: ${throttle}`);
  const header = ['TABLE', 'STATE', 'COPIED', 'ESTIMATED', '%', 'ETA', 'ROWS/S', 'LAG', 'LAG S', 'ERROR'];
  const rows = s.tables.map((t) => [
    t.name,
    t.state + (t.mode && (t.state === 'backfilling' || t.state === 'queued') ? ` (${t.mode})` : ''),
    t.rowsCopied.toLocaleString('en-US'),
    t.rowsEstimated.toLocaleString('en-US'),
    t.percent === null ? '-' : `~${t.percent}%`,
    t.etaSeconds === null ? '-' : `~${formatEta(t.etaSeconds)}`,
    t.rowsPerSecond ? t.rowsPerSecond.toLocaleString('en-US') : '-',
    formatBytes(t.lagBytes),
    t.lagSeconds === null ? '-' : t.lagSeconds.toFixed(1),
    t.error ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  lines.push(fmt(header));
  for (const r of rows) lines.push(fmt(r));
  for (const t of s.tables) {
    // A throttle wait is told by the one throttle line above, so table and pipeline lines never disagree.
    if (t.detail && /^paused: /.test(t.detail) && throttle) lines.push(`${t.name}: waiting for the throttle (see "throttle:" above)`);
    else if (t.detail) lines.push(`${t.name}: ${t.detail}`);
    if (t.staging) lines.push(`${t.name}: loading staging table ${t.staging}`);
    const progress = describeProgress(t);
    if (progress) lines.push(`${t.name}: ${progress}`);
  }
  const a = s.archives;
  if (a.count > 0) {
    const next = a.nextDropAt === null ? 'kept until dropped by hand' : `next drop in ${formatDuration(Date.parse(a.nextDropAt) - Date.now())}`;
    lines.push(`archives: ${a.count} (${formatBytes(a.bytes)}), ${next}; sluice archives list`);
  }
  if (a.lowSpace) lines.push(`warning: ${a.lowSpace}`);
  return lines.join('\n');
}

/** Whether a process of this machine with that pid exists (signal 0 only checks). */
function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When foreign keys involve the replicated destination tables, sluice writes them with
 * session_replication_role = replica; tried here (and rolled back) with the same role.
 */
async function replicaRoleWarning(dst: pg.Client, targets: readonly string[]): Promise<string | undefined> {
  if (targets.length === 0) return undefined;
  const fks = await dst.query(
    `SELECT EXISTS (SELECT 1 FROM pg_constraint c
        WHERE c.contype = 'f' AND (c.conrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
                                OR c.confrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t))) AS any`,
    [targets.map((t) => qualified(TableName.parse(t)))],
  );
  if (!fks.rows[0].any) return undefined;
  await dst.query('BEGIN');
  try {
    if (await setReplicaRole(dst)) return undefined;
  } finally {
    await dst.query('ROLLBACK').catch(() => {});
  }
  const user = (await dst.query(`SELECT current_user AS u`)).rows[0].u as string;
  return (
    `foreign keys involve the replicated tables and role ${user} may not set session_replication_role: ` +
    `changes to a child wait until its parent arrives, and a load can fail on a missing parent; run ${replicaRoleGrant(user)}`
  );
}

/**
 * Source indexes the last run that built indexes of each table had to skip, and that are still
 * missing in the destination (one built by hand since is not named).
 */
async function skippedIndexes(dst: pg.Client, pipeline: string): Promise<Map<string, string[]>> {
  const r = await dst.query(
    `SELECT DISTINCT ON (r.table_name) r.table_name AS name, t.target, r.params->'indexes'->'skipped' AS skipped
       FROM _sluice.runs r JOIN _sluice.tables t ON t.pipeline = r.pipeline AND t.name = r.table_name
      WHERE r.pipeline = $1 AND r.params ? 'indexes'
      ORDER BY r.table_name, r.id DESC`,
    [pipeline],
  );
  const out = new Map<string, string[]>();
  for (const row of r.rows) {
    const skipped = ((row.skipped ?? []) as { name: string }[]).map((x) => x.name);
    if (skipped.length === 0) continue;
    const schema = TableName.parse(row.target as string).schema;
    const still: string[] = [];
    for (const name of skipped) {
      const ok = (await dst.query(`SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2)) IS NOT NULL AS ok`, [schema, name])).rows[0].ok;
      if (!ok) still.push(name);
    }
    if (still.length) out.set(row.name as string, still);
  }
  return out;
}
