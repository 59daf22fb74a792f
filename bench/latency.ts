/**
 * End-to-end latency of CDC under a steady load: source commit → destination commit.
 *
 * Both clusters run on this machine (one clock) with track_commit_timestamp = on
 * (`enableCommitTimestamps`). A client writes `rate` changes/s to the table for `seconds` seconds,
 * in 100 transactions a second: half inserts of new ids (from idBase up, copies of existing rows),
 * half updates of ids it inserted earlier. When the destination holds the same rows (md5 over the
 * ordered rows of that id range, computed by each server), each row's last version is timed:
 * pg_xact_commit_timestamp(xmin) on the destination minus the same on the source. No sluice code is
 * involved in the measure.
 */
import { performance } from 'node:perf_hooks';
import type { Cluster } from '../src/embedded/clusters.js';
import { withClient } from './support.js';

export interface LatencyRun {
  rate: number;
  achievedRate: number;
  changes: number;
  /** rows timed (each at its last change) */
  samples: number;
  p50: number;
  p99: number;
  max: number;
  summary: string;
}

/** track_commit_timestamp needs a restart: set it on both clusters and restart them. */
export async function enableCommitTimestamps(...clusters: Cluster[]): Promise<void> {
  for (const c of clusters) {
    await c.query(`ALTER SYSTEM SET track_commit_timestamp = on`);
    await c.stop();
    await c.start();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export async function measureLatency(o: {
  srcUrl: string;
  dstUrl: string;
  table: string;
  rate: number;
  seconds: number;
  idBase: number;
  failure: () => unknown;
}): Promise<LatencyRun> {
  const { table, idBase } = o;
  const cols = await withClient(o.srcUrl, async (c) =>
    (
      await c.query(
        `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
          WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'id'`,
        [table],
      )
    ).rows[0].cols as string,
  );
  const perTxn = Math.max(2, Math.round(o.rate / 100));
  const ins = Math.ceil(perTxn / 2);
  const upd = perTxn - ins;
  let inserted = 0;
  let updatedUpTo = 0;
  let changes = 0;
  const started = performance.now();
  await withClient(o.srcUrl, async (c) => {
    for (let tick = 0; ; tick++) {
      const due = started + tick * 10;
      const now = performance.now();
      if (now - started >= o.seconds * 1000) break;
      if (due > now) await sleep(due - now);
      const lo = idBase + inserted;
      let sql = `INSERT INTO ${table} (id, ${cols}) SELECT id + ${lo - 1}, ${cols} FROM ${table} WHERE id BETWEEN 1 AND ${ins};`;
      let n = ins;
      // Updates go to rows inserted at least 20 transactions ago, cycling over them.
      const old = inserted - 20 * ins;
      if (old >= upd) {
        if (updatedUpTo + upd > old) updatedUpTo = 0;
        sql += ` UPDATE ${table} SET amount = amount + 1 WHERE id BETWEEN ${idBase + updatedUpTo} AND ${idBase + updatedUpTo + upd - 1};`;
        updatedUpTo += upd;
        n += upd;
      }
      const r = await c.query(sql);
      const rows = (Array.isArray(r) ? r : [r]).reduce((s, x) => s + (x.rowCount ?? 0), 0);
      if (rows !== n) throw new Error(`latency load: ${rows} rows changed, expected ${n}`);
      inserted += ins;
      changes += n;
    }
  });
  const elapsed = (performance.now() - started) / 1000;
  // Wait for the destination to hold the same rows in the range.
  const range = `id >= ${idBase} AND id < ${idBase + inserted}`;
  const sum = (url: string) =>
    withClient(url, async (c) => (await c.query(`SELECT count(*)::int8 AS n, md5(string_agg(t::text, '|' ORDER BY id)) AS h FROM ${table} t WHERE ${range}`)).rows[0]);
  const deadline = Date.now() + 180_000;
  const want = await sum(o.srcUrl);
  for (;;) {
    if (o.failure()) throw o.failure();
    const got = await sum(o.dstUrl);
    if (got.n === want.n && got.h === want.h) break;
    if (Date.now() > deadline) throw new Error(`latency at ${o.rate}/s: destination did not catch up within 180 s (${got.n} of ${want.n} rows)`);
    await sleep(250);
  }
  const times = (url: string) =>
    withClient(url, async (c) => {
      const r = await c.query(
        `SELECT id::text AS id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000 AS ms FROM ${table} WHERE ${range}`,
      );
      return new Map(r.rows.map((x) => [x.id as string, Number(x.ms)]));
    });
  const [src, dst] = await Promise.all([times(o.srcUrl), times(o.dstUrl)]);
  const lat: number[] = [];
  for (const [id, t] of src) {
    const d = dst.get(id);
    if (d !== undefined && Number.isFinite(d) && Number.isFinite(t)) lat.push(d - t);
  }
  lat.sort((a, b) => a - b);
  const p50 = quantile(lat, 0.5);
  const p99 = quantile(lat, 0.99);
  const max = lat.length ? lat[lat.length - 1] : NaN;
  const achievedRate = changes / elapsed;
  return {
    rate: o.rate,
    achievedRate,
    changes,
    samples: lat.length,
    p50,
    p99,
    max,
    summary: `${changes} changes (${Math.round(achievedRate)}/s achieved), ${lat.length} rows timed: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${max.toFixed(0)} ms`,
  };
}
