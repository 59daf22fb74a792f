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
import { checkPlan } from './plan-check.js';
import { chunkSql, rangeParams, statementText, type Key } from './statements.js';

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
  estimate: { rowsAffected: number; walBytes: number; seconds: number } | null;
}

const SAMPLE_CHUNKS = 3;

export async function planJob(c: pg.ClientBase, job: InplaceJob, facts: TableFacts, o: { allowScan: boolean }): Promise<JobPlan> {
  const check = await checkPlan(c, job, facts, o);
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
  const sample = await sampleChunks(c, job, facts);
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
    statement: statementText(job, facts),
    planSummary: summarize(check.plan),
    scans: check.scans,
    rowsEstimated: facts.rowsEstimated,
    triggers,
    rules,
    cascades,
    indexedSetColumns,
    sample,
    estimate,
  };
}

/** The columns an UPDATE's SET list assigns (`a = …, b = …`, `(a, b) = …`), split at top-level commas. */
export function setTargets(set: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let cur = '';
  for (const ch of set) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  const names: string[] = [];
  for (const p of parts) {
    const lhs = p.split('=')[0].trim().replace(/^\(|\)$/g, '');
    for (const n of lhs.split(',')) {
      const t = n.trim();
      if (t) names.push(t.startsWith('"') ? t.slice(1, -1).replace(/""/g, '"') : t.toLowerCase());
    }
  }
  return names;
}

/** The first chunks, run inside one transaction that is rolled back: nothing changes. */
async function sampleChunks(c: pg.ClientBase, job: InplaceJob, facts: TableFacts): Promise<JobPlan['sample']> {
  await c.query('BEGIN');
  try {
    const wal0 = (await c.query(`SELECT pg_current_wal_insert_lsn()::text AS l`)).rows[0].l as string;
    const t0 = performance.now();
    let lo: Key | null = null;
    let scanned = 0;
    let affected = 0;
    let chunks = 0;
    for (; chunks < SAMPLE_CHUNKS; chunks++) {
      const hi = await boundary(c, facts, lo, job.chunk.rows);
      const r = await c.query(chunkSql(job, facts, lo !== null, hi !== null), rangeParams(lo, hi));
      affected += r.rowCount ?? 0;
      scanned += hi ? job.chunk.rows : (r.rowCount ?? 0);
      if (!hi) {
        chunks++;
        break;
      }
      lo = hi;
    }
    const seconds = (performance.now() - t0) / 1000;
    const walBytes = Number((await c.query(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::int8 AS b`, [wal0])).rows[0].b);
    return { chunks, rowsScanned: scanned, rowsAffected: affected, seconds, walBytes };
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
  }
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
