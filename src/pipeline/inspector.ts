/**
 * The Inspector: preflight checks that run before any data moves (contract 9). Each failure is a
 * SluiceError whose message names the fix; the CLI exits 2 for them.
 */
import pg from 'pg';
import { connectError, redactUrl } from '../postgres/errors.js';
import { clientConfig } from '../postgres/connection.js';
import type { SluiceConfig, TableConfig } from '../config/schema.js';
import { SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';
import { introspectTable, type TableInfo } from '../sources/postgres/introspect.js';
import { checkBackfillOptions } from '../sources/postgres/load-options.js';
import { incompatibleTarget, targetProblems } from '../destinations/postgres/compat.js';
import { qualified } from '../destinations/postgres/dialect.js';

export interface PreflightResult {
  readonly tables: Map<string, TableInfo>;
  readonly serverVersion: number;
}

/** A configured replica must be reachable and a standby. */
export async function checkReplica(url: string): Promise<void> {
  const c = new pg.Client(clientConfig(url, { application_name: 'sluice' }));
  try {
    await c.connect();
  } catch (err) {
    throw connectError('source', `replica ${redactUrl(url)}`, err);
  }
  try {
    const r = await c.query(`SELECT pg_is_in_recovery() AS standby`);
    if (!r.rows[0].standby) {
      throw new SluiceError('BAD_USAGE', `source.replicaUrl ${redactUrl(url)} is not a standby (pg_is_in_recovery() is false); point it at a read replica of the source`);
    }
  } finally {
    await c.end().catch(() => {});
  }
}

export async function checkSource(src: pg.ClientBase, slot: string): Promise<number> {
  const v = await src.query(`SELECT current_setting('server_version_num')::int AS v, current_setting('wal_level') AS wal,
      (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user) AS repl, current_user AS who,
      current_database() AS db`);
  const { v: version, wal, repl, who, db } = v.rows[0];
  if (version < 140000) {
    throw new SluiceError('BAD_USAGE', `source runs PostgreSQL ${Math.floor(version / 10000)}; sluice needs PostgreSQL 14 or later`);
  }
  if (wal !== 'logical') {
    throw new SluiceError(
      'WAL_LEVEL_NOT_LOGICAL',
      `source: wal_level is '${wal}', sluice needs 'logical'; run ALTER SYSTEM SET wal_level = logical on the source and restart it`,
    );
  }
  if (!repl) {
    throw new SluiceError(
      'MISSING_REPLICATION_PRIVILEGE',
      `source: role ${who} lacks the REPLICATION privilege; run ALTER ROLE ${who} WITH REPLICATION (on RDS: GRANT rds_replication TO ${who})`,
    );
  }
  const s = await src.query(
    `SELECT active, active_pid, plugin, database, slot_type FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  if (s.rowCount) {
    const r = s.rows[0];
    if (r.slot_type !== 'logical' || r.plugin !== 'pgoutput' || r.database !== db) {
      throw new SluiceError(
        'SLOT_IN_USE',
        `source: replication slot ${slot} exists but is not a pgoutput slot of database ${db}; choose another pipeline.slotName, or drop that slot`,
      );
    }
    if (r.active) {
      throw new SluiceError(
        'SLOT_IN_USE',
        `source: replication slot ${slot} is in use by another consumer (pid ${r.active_pid}); stop it (SELECT pg_terminate_backend(${r.active_pid})) or give this pipeline its own pipeline.slotName`,
      );
    }
  }
  return version;
}

/** `dst`: a PostgreSQL destination, which must know the types extensions add; null for another engine (it stores them as text). */
export async function inspectTable(src: pg.ClientBase, dst: pg.ClientBase | null, t: TableConfig): Promise<TableInfo> {
  const name = TableName.parse(t.name);
  const info = await introspectTable(src, name);
  const label = TableName.format(name);
  if (info.primaryKey.length === 0) {
    const hint = info.replicaIdentity === 'f' ? ' (REPLICA IDENTITY FULL alone is not enough for this version)' : '';
    throw new SluiceError(
      'NO_PRIMARY_KEY',
      `source ${label}: no primary key${hint}; sluice applies changes by key: add one (ALTER TABLE ${label} ADD PRIMARY KEY (...))`,
      { context: { table: label } },
    );
  }
  if (info.replicaIdentity === 'n' || info.replicaIdentity === 'i') {
    throw new SluiceError(
      'NO_PRIMARY_KEY',
      `source ${label}: REPLICA IDENTITY is ${info.replicaIdentity === 'n' ? 'NOTHING' : 'USING INDEX'}, so deletes and key changes would not carry the primary key; run ALTER TABLE ${label} REPLICA IDENTITY DEFAULT`,
      { context: { table: label } },
    );
  }
  for (const c of info.columns) {
    if (c.support !== 'external' || !dst) continue;
    const base = c.typeSql.replace(/\[\]$/, '');
    const ok = (await dst.query(`SELECT to_regtype($1) IS NOT NULL AS ok`, [base])).rows[0].ok;
    if (!ok) {
      throw new SluiceError(
        'UNSUPPORTED_TYPE',
        `source ${label}.${c.name}: type ${c.typeSql} comes from an extension the destination lacks; install the same extension in the destination database`,
        { context: { table: label, column: c.name } },
      );
    }
  }
  return info;
}

export async function preflight(cfg: SluiceConfig, src: pg.ClientBase, dst: pg.ClientBase | null, slot: string): Promise<PreflightResult> {
  if (cfg.log.type !== 'embedded') throw new SluiceError('CONFIG_INVALID', 'log.type: jetstream is not available yet; use embedded');
  const serverVersion = await checkSource(src, slot);
  if (cfg.source.replicaUrl) await checkReplica(cfg.source.replicaUrl);
  const tables = new Map<string, TableInfo>();
  for (const [i, t] of cfg.tables.entries()) {
    const info = await inspectTable(src, dst, t);
    await checkBackfillOptions(src, info, t, (key) => `tables[${i}].${key}`);
    tables.set(TableName.format(info.table), info);
  }
  return { tables, serverVersion };
}

/**
 * A schema created first (contract 9): a destination table that exists before its first load must
 * be able to take the source's rows; every problem of every such table is reported at once, with
 * the statements that fix them, before anything moves. `loaded` names the tables sluice has loaded
 * before (their columns follow the source from then on).
 */
export async function checkCreatedFirst(cfg: SluiceConfig, dst: pg.ClientBase, tables: ReadonlyMap<string, TableInfo>, loaded: ReadonlySet<string>): Promise<void> {
  const errors: string[] = [];
  const columns: string[] = [];
  for (const [i, t] of cfg.tables.entries()) {
    const source = TableName.parse(t.name);
    const name = TableName.format(source);
    const info = tables.get(name);
    if (!info || loaded.has(name) || t.mode === 'drop') continue;
    const target = { schema: cfg.destination.schema, name: source.name };
    const exists = (await dst.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(target)])).rows[0].ok;
    if (!exists) continue;
    // Online loads an empty table created first in place (no staging table taking the source's types).
    const inPlace = t.mode === 'online' && !(await dst.query(`SELECT EXISTS (SELECT 1 FROM ${qualified(target)}) AS any`)).rows[0].any;
    const problems = await targetProblems(dst, info, target, { typesFromSource: t.mode === 'online' && !inPlace });
    if (problems.length === 0) continue;
    errors.push(incompatibleTarget(target, source, problems, `or set tables[${i}].mode: drop to have sluice create the table again`).message);
    for (const p of problems) if (p.column) columns.push(`${name}.${p.column}`);
  }
  if (errors.length) throw new SluiceError('BAD_USAGE', errors.join('\n'), { context: { columns } });
}
