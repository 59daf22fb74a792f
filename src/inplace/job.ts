/**
 * An in-place job: DML run in chunks against one live PostgreSQL database (docs/inplace.md).
 * A job is a small YAML file; every key has a default here, and an unknown key is an error.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { expandEnv, formatPath } from '../config/load.js';
import { SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';

const JOB_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

export const inplaceThrottleSchema = z
  .object({
    /** Ceiling on rows the job touches per second (0: none). */
    maxRowsPerSecond: z.number().min(0).default(0),
    /** Budget for the WAL the job itself writes, bytes per second (0: none). */
    maxWalBytesPerSecond: z.number().min(0).default(0),
    /** Hold while the database has more active sessions than this (sluice's own not counted; 0: off). */
    maxActiveSessions: z.number().int().min(0).default(0),
    /** Hold while a standby replays more than this many seconds behind (pg_stat_replication; 0: off). */
    maxReplicaLagSeconds: z.number().min(0).default(0),
    /** Hold while a sluice replication slot (slot_name sluice…) retains more WAL than this, in bytes (0: off). */
    maxSlotRetainedBytes: z.number().min(0).default(0),
    /** Hold while autovacuum works on the table. */
    pauseWhileAutovacuum: z.boolean().default(false),
    /** Halve the next chunk when more sessions than this waited on the job's locks during a chunk (0: any). */
    maxBlockedSessions: z.number().int().min(0).default(0),
    /** Hold while this query returns a number > 0. */
    query: z.string().default(''),
    /** A hold longer than this fails the run (resumable with `run` again; 0: hold as long as it takes). */
    maxHoldSeconds: z.number().min(0).default(0),
  })
  .strict();

export const jobSchema = z
  .object({
    job: z.string().regex(JOB_NAME, { error: 'must be 1-63 characters of lower-case letters, digits, _ and -, starting with a letter' }),
    /** postgres:// URL of the database the job changes; defaults to the source of the sluice config. */
    database: z.string().regex(/^postgres(ql)?:\/\//, { error: 'must be a URL starting with postgres:// or postgresql://' }).optional(),
    table: z.string().refine((s) => { try { TableName.parse(s); return true; } catch { return false; } }, { error: 'must be schema.table or table' }),
    kind: z.enum(['update', 'delete', 'archive-delete', 'insert-select']),
    /** update: the SET list, as in `UPDATE t SET <set>`. */
    set: z.string().min(1).optional(),
    /** update: keep the before-image of the columns it sets, so that `sluice inplace revert` can restore them. */
    undo: z.boolean().default(false),
    /** archive-delete: the table the rows move to (made like the table when missing); insert-select: the table rows go into. */
    into: z.string().optional(),
    /** insert-select: the SELECT list over the table, as in `INSERT INTO into (columns) SELECT <select> FROM table`. */
    select: z.string().min(1).optional(),
    /** insert-select: the columns of `into` the select list fills (default: all, in order). */
    columns: z.array(z.string().min(1)).optional(),
    /** insert-select: what a conflict does, as in `ON CONFLICT <onConflict>` (e.g. "DO NOTHING"). */
    onConflict: z.string().optional(),
    /** After the last chunk: CHECK (c IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL, for each column. */
    finish: z.object({ notNull: z.array(z.string().min(1)).default([]) }).strict().prefault({}),
    /** The rows the job is for (and, for fills, the rows that still need it). */
    where: z.string().default(''),
    chunk: z
      .object({
        /** key: key ranges; day or hour: time windows of `column` in `timeZone` (then key ranges inside a large one). */
        by: z.enum(['key', 'day', 'hour']).default('key'),
        column: z.string().min(1).optional(),
        timeZone: z.string().min(1).default('UTC'),
        /** The scope of day/hour chunks, local times (default: the column's first and last value). */
        from: z.string().min(1).optional(),
        to: z.string().min(1).optional(),
        /** Key-range width of the first chunk, in rows; it then adapts to targetSeconds. */
        rows: z.number().int().min(1).default(1000),
        targetSeconds: z.number().positive().default(0.5),
        maxRows: z.number().int().min(1).default(50_000),
      })
      .strict()
      .prefault({}),
    throttle: inplaceThrottleSchema.prefault({}),
    /** Every statement runs under these (ms). */
    lockTimeoutMs: z.number().int().min(1).default(2000),
    statementTimeoutMs: z.number().int().min(1).default(30_000),
    failures: z
      .object({
        /** Attempts of a chunk that meets a lock timeout, deadlock or serialization failure before it is split. */
        retries: z.number().int().min(0).default(5),
        /** The run fails when rows sent to the dead-letter table exceed this share of the rows scanned (and 10). */
        maxDeadLetterRatio: z.number().min(0).max(1).default(0.001),
      })
      .strict()
      .prefault({}),
    /**
     * Mark each chunk in the WAL (pg_logical_emit_message, transactional, prefix `sluice.inplace`, content
     * {"job","run","seq"}), so that a logical replication consumer can attribute the chunk's changes.
     */
    markWal: z.boolean().default(false),
    /** Why the job runs: recorded in the audit ledger with every run. */
    reason: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((j, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (j.chunk.by !== 'key' && !j.chunk.column) issue('chunk', `chunk by ${j.chunk.by} needs chunk.column (an indexed timestamptz, timestamp or date column)`);
    if (j.chunk.by === 'key' && (j.chunk.column || j.chunk.from || j.chunk.to)) issue('chunk', 'chunk.column, from and to are for chunk by day or hour');
    if (j.kind === 'update' && !j.set) issue('set', 'an update job needs set: (e.g. set: "total = qty * price")');
    if (j.kind !== 'update' && j.set) issue('set', `a ${j.kind} job takes no set:`);
    if (j.kind !== 'update' && j.undo) issue('undo', `undo: keeps before-images of updates; a ${j.kind} job ${j.kind === 'archive-delete' ? 'keeps the rows in its archive table' : 'cannot take it'}`);
    if (j.kind === 'insert-select' && !j.into) issue('into', 'an insert-select job needs into: (the table rows go into)');
    if (j.kind === 'insert-select' && !j.select) issue('select', 'an insert-select job needs select: (the SELECT list over table:)');
    if (j.kind !== 'insert-select' && (j.select || j.columns || j.onConflict)) issue('select', 'select:, columns: and onConflict: are for insert-select jobs');
    if (j.kind !== 'insert-select' && j.kind !== 'archive-delete' && j.into) issue('into', 'into: is for archive-delete and insert-select jobs');
  });

export type InplaceJob = z.infer<typeof jobSchema>;
export type InplaceThrottle = z.infer<typeof inplaceThrottleSchema>;

/** Parses a job's YAML text (`${ENV}` expanded); problems name the key and the fix. */
export function parseJob(text: string, file = 'job'): InplaceJob {
  return validateJob(yamlOf(text, file), file);
}

function yamlOf(text: string, file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = parseYaml(expandEnv(text, process.env));
  } catch (err) {
    throw new SluiceError('CONFIG_INVALID', `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new SluiceError('CONFIG_INVALID', `${file}: a job is a YAML mapping of keys (see docs/inplace.md)`);
  return raw as Record<string, unknown>;
}

function validateJob(raw: unknown, label: string): InplaceJob {
  const r = jobSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${formatPath(i.path)}: ${i.message}`);
    throw new SluiceError('CONFIG_INVALID', `${label}: the job is not valid:\n${lines.join('\n')}\n(see docs/inplace.md)`);
  }
  return r.data;
}

/** A job file, and keys given as `--with key=value` (dotted paths into the job; they win over the file). */
export interface JobSource {
  file?: string;
  with?: readonly string[];
}

/**
 * A value given on the command line: a number, boolean, null or [list] as YAML reads it, anything else
 * as the text itself (so SQL such as `status: 'x'` is never read as a mapping).
 */
function cliValue(text: string): unknown {
  try {
    const v = parseYaml(text) as unknown;
    if (v === null || typeof v === 'number' || typeof v === 'boolean' || Array.isArray(v)) return v;
  } catch {
    // not YAML: the text itself
  }
  return text;
}

export function loadJob(src: JobSource | string): InplaceJob {
  const { file, with: withs = [] } = typeof src === 'string' ? { file: src } : src;
  if (!file && withs.length === 0) throw new SluiceError('BAD_USAGE', 'give a job file, or the job\'s keys with --with key=value (e.g. --with job=fill --with table=orders …; docs/inplace.md)');
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new SluiceError('CONFIG_NOT_FOUND', `job file ${file} not found (sluice inplace run path/to/job.yaml)`);
    }
    raw = yamlOf(text, file);
  }
  for (const w of withs) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new SluiceError('BAD_USAGE', `--with ${w}: expected key=value, e.g. --with throttle.maxRowsPerSecond=5000`);
    const path = w.slice(0, eq).split('.');
    let at = raw;
    for (const k of path.slice(0, -1)) {
      if (typeof at[k] !== 'object' || at[k] === null || Array.isArray(at[k])) at[k] = {};
      at = at[k] as Record<string, unknown>;
    }
    at[path[path.length - 1]] = cliValue(expandEnv(w.slice(eq + 1), process.env));
  }
  return validateJob(raw, file ?? 'the job given with --with');
}
