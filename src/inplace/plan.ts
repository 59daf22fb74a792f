/**
 * `sluice inplace plan JOB`: what the job will do, before anything changes — the chunk statement and
 * its plan, what else fires on the table (triggers, rules, foreign keys that cascade), whether the
 * columns it sets are indexed (no HOT updates: every row also writes its indexes), and estimates from
 * a few sample chunks run and rolled back.
 */
import type pg from 'pg';
import type { TableFacts } from './catalog.js';
import { boundary } from './chunk.js';
import type { InplaceJob } from './job.js';
import { ensureLedger } from './ledger.js';
import { prepareJob } from './prepare.js';
import { chunkSql, rangeParams, setTargets, statementText, type ChunkTargets, type Key, type TimeWindow } from './statements.js';
import { countBuckets, type Bucket } from './windows.js';

export interface JobPlan {
  job: string;
  table: string;
  statement: string;
  planSummary: string;
  scans: boolean;
  rowsEstimated: number;
  triggers: string[];
  rules: string[];
  cascades: string[];
  indexedSetColumns: string[];
  sample: { chunks: number; rowsScanned: number; rowsAffected: number; seconds: number; walBytes: number } | null;
  /** Day/hour chunks: the scope, and each bucket's rows and rows the job is for. */
  scope: TimeWindow | null;
  buckets: Bucket[] | null;
  estimate: { rowsAffected: number; walBytes: number; seconds: number } | null;
}

const SAMPLE_CHUNKS = 3;

/**
 * Everything runs in one transaction that is rolled back: a plan changes nothing (not even a missing
 * archive table). Only sluice's ledger tables are made first when missing.
 */
export async function planJob(c: pg.ClientBase, job: InplaceJob, o: { allowScan: boolean }): Promise<JobPlan> {
  await ensureLedger(c);
  await c.query('BEGIN');
  try {
    return await planInside(c, job, o);
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
  }
}

async function planInside(c: pg.ClientBase, job: InplaceJob, o: { allowScan: boolean }): Promise<JobPlan> {
  const { facts, targets, check, scope } = await prepareJob(c, job, o);
  const triggers = (
    await c.query(
      `SELECT tgname || ' (' || pg_get_triggerdef(t.oid) || ')' AS d FROM pg_trigger t WHERE tgrelid = $1 AND NOT tgisinternal AND tgenabled <> 'D' ORDER BY tgname`,
      [facts.oid],
    )
  ).rows.map((r) => r.d as string);
  const rules = (await c.query(`SELECT rulename AS d FROM pg_rules WHERE schemaname = $1 AND tablename = $2 ORDER BY rulename`, [facts.schema, facts.name])).rows.map((r) => r.d as string);
  const action = job.kind === 'delete' ? 'confdeltype' : 'confupdtype';
  const cascades = (
    await c.query(
      `SELECT conrelid::regclass::text || ' (' || conname || ': ON ' || $2 || ' ' ||
              CASE ${action} WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END || ')' AS d
         FROM pg_constraint WHERE contype = 'f' AND confrelid = $1 AND ${action} IN ('c', 'n', 'd') ORDER BY 1`,
      [facts.oid, job.kind === 'delete' ? 'DELETE' : 'UPDATE'],
    )
  ).rows.map((r) => r.d as string);
  const setColumns = job.kind === 'update' && job.set ? setTargets(job.set) : [];
  const indexedSetColumns = setColumns.length
    ? (
        await c.query(
          `SELECT DISTINCT a.attname AS n FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = $1 AND a.attname = ANY ($2::text[]) ORDER BY 1`,
          [facts.oid, setColumns],
        )
      ).rows.map((r) => r.n as string)
    : [];
  const buckets = scope && facts.window ? await countBuckets(c, job, { ...facts, window: facts.window }, job.chunk.by as 'day' | 'hour', scope) : null;
  const sample = await sampleChunks(c, job, facts, targets, check.window);
  const estimate =
    sample && sample.rowsScanned > 0
      ? {
          rowsAffected: Math.round((sample.rowsAffected / sample.rowsScanned) * facts.rowsEstimated),
          walBytes: Math.round((sample.walBytes / sample.rowsScanned) * facts.rowsEstimated),
          seconds: (sample.seconds / sample.rowsScanned) * facts.rowsEstimated,
        }
      : null;
  return {
    job: job.job,
    table: `${facts.schema}.${facts.name}`,
    statement: statementText(job, facts, targets),
    planSummary: summarize(check.plan),
    scans: check.scans,
    rowsEstimated: facts.rowsEstimated,
    triggers,
    rules,
    cascades,
    indexedSetColumns,
    sample,
    estimate,
    scope: scope ?? null,
    buckets,
  };
}

/** The first chunks, run inside the plan's transaction (rolled back: nothing changes). */
async function sampleChunks(c: pg.ClientBase, job: InplaceJob, facts: TableFacts, targets: ChunkTargets, window?: TimeWindow): Promise<JobPlan['sample']> {
  const wal0 = (await c.query(`SELECT pg_current_wal_insert_lsn()::text AS l`)).rows[0].l as string;
  const t0 = performance.now();
  let lo: Key | null = null;
  let scanned = 0;
  let affected = 0;
  let chunks = 0;
  for (; chunks < SAMPLE_CHUNKS; chunks++) {
    const hi = await boundary(c, facts, lo, job.chunk.rows, window);
    const st = chunkSql(job, facts, lo !== null, hi !== null, targets);
    const params = rangeParams(lo, hi, window);
    const r = await c.query(st.text, targets.imageColumns ? [...params, '0', String(chunks)] : params);
    const n = st.counted ? Number(r.rows[0].n) : (r.rowCount ?? 0);
    affected += n;
    scanned += hi ? job.chunk.rows : n;
    if (!hi) {
      chunks++;
      break;
    }
    lo = hi;
  }
  const seconds = (performance.now() - t0) / 1000;
  const walBytes = Number((await c.query(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::int8 AS b`, [wal0])).rows[0].b);
  return { chunks, rowsScanned: scanned, rowsAffected: affected, seconds, walBytes };
}

function summarize(plan: unknown): string {
  const lines: string[] = [];
  const walk = (n: unknown, depth: number) => {
    if (!n || typeof n !== 'object') return;
    const o = n as Record<string, unknown>;
    const type = o['Node Type'] as string | undefined;
    if (type) {
      const rel = o['Relation Name'] ? ` on ${o['Relation Name']}` : '';
      const idx = o['Index Name'] ? ` using ${o['Index Name']}` : '';
      lines.push(`${'  '.repeat(depth)}${type}${rel}${idx} (rows ${o['Plan Rows']})`);
    }
    for (const child of (o['Plans'] as unknown[] | undefined) ?? []) walk(child, depth + 1);
    if (o['Plan']) walk(o['Plan'], depth);
  };
  for (const p of (plan as unknown[]) ?? []) walk(p, 0);
  return lines.join('\n');
}
