/**
 * Benchmark: `sluice verify` range by range against one whole-table hash per side.
 *
 * `npm run build && node dist/bench/verify.js [--rows 5000000] [--runs 3] [--range-rows 50000]`
 *
 * It starts its own source and destination clusters and creates the demo table `public.orders`
 * with N rows on both (the fill is deterministic, so the two are equal). Then, per run:
 *
 *   1. whole table: `count(*)` and `md5(string_agg(md5(ROW(...)::text), '' ORDER BY id))` on each
 *      side at once (what a single-statement comparison costs; PostgreSQL refuses it past ~33.5M
 *      rows, when the aggregated string would pass its 1 GB limit);
 *   2. sluice verify (in-process, `verifyTables`) on the equal tables;
 *   3. sluice verify after 1,000 rows spread over the table were changed in the destination
 *      (re-checks off: `attempts: 1`), naming the first 20 differing keys; the rows are put back.
 *
 * It prints the median time of each (and rows/s), with the peak RSS of this process during the
 * sluice runs. Everything it starts is removed at the end.
 */
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config/load.js';
import { createDemoTable } from '../src/demo/workload.js';
import { startClusters } from '../src/embedded/clusters.js';
import { verifyTables } from '../src/verify/verifier.js';
import { RssSampler, intOption, withClient } from './support.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string' },
    runs: { type: 'string' },
    'range-rows': { type: 'string' },
  },
});
const ROWS = intOption(values.rows, 5_000_000);
const RUNS = Math.max(1, intOption(values.runs, 3));
const RANGE_ROWS = intOption(values['range-rows'], 50_000);
const TABLE = 'public.orders';
const COLUMNS = 'id, customer_id, status, amount, price, note, tags, attrs, ref, created_at, ship_date, flags, active, payload';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const note = (line: string) => console.log(`# ${line}`);

async function main(): Promise<void> {
  const clusters = await startClusters();
  const rss = new RssSampler();
  try {
    const { source, destination } = clusters;
    const t0 = Date.now();
    await Promise.all([createDemoTable(source.url(), { rows: ROWS }), createDemoTable(destination.url(), { rows: ROWS })]);
    note(`${ROWS.toLocaleString('en-US')} rows on each side in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const cfg = parseConfig(
      `pipeline: { name: benchverify }
source: { type: postgres, url: "${source.url()}" }
destination: { type: postgres, url: "${destination.url()}" }
tables:
  - { name: ${TABLE} }
`,
      { env: {} },
    );
    const whole: number[] = [];
    const equal: number[] = [];
    const differing: number[] = [];
    let peakEqual = 0;
    let peakDiffering = 0;
    let ranges = 0;
    const step = Math.max(1, Math.floor(ROWS / 1000));
    for (let run = 1; run <= RUNS; run++) {
      // 1. one statement per side
      let t = performance.now();
      const sql = `SELECT count(*) AS n, md5(string_agg(md5(ROW(${COLUMNS})::text), '' ORDER BY id)) AS h FROM ${TABLE}`;
      const [a, b] = await Promise.all([
        withClient(source.url(), (c) => c.query(sql)),
        withClient(destination.url(), (c) => c.query(sql)),
      ]);
      whole.push(performance.now() - t);
      if (a.rows[0].h !== b.rows[0].h) throw new Error('the whole-table hashes differ on equal tables');

      // 2. sluice verify, equal
      rss.reset();
      t = performance.now();
      const [v] = await verifyTables(cfg, [TABLE], { attempts: 1, rangeRows: RANGE_ROWS });
      equal.push(performance.now() - t);
      peakEqual = Math.max(peakEqual, rss.peakBytes);
      if (!v.equal) throw new Error(`verify says the equal tables differ: ${JSON.stringify(v)}`);
      ranges = v.ranges;

      // 3. sluice verify, 1,000 rows changed in the destination
      await withClient(destination.url(), (c) => c.query(`UPDATE ${TABLE} SET customer_id = customer_id + 1 WHERE id % ${step} = 0`));
      rss.reset();
      t = performance.now();
      const [d] = await verifyTables(cfg, [TABLE], { attempts: 1, rangeRows: RANGE_ROWS });
      differing.push(performance.now() - t);
      peakDiffering = Math.max(peakDiffering, rss.peakBytes);
      await withClient(destination.url(), (c) => c.query(`UPDATE ${TABLE} SET customer_id = customer_id - 1 WHERE id % ${step} = 0`));
      if (d.equal || d.differences.length !== 20 || d.differences.some((x) => x.problem !== 'differs')) {
        throw new Error(`verify did not name 20 differing keys: ${JSON.stringify(d).slice(0, 2000)}`);
      }
      note(`run ${run}: whole ${(whole.at(-1)! / 1000).toFixed(1)} s, verify equal ${(equal.at(-1)! / 1000).toFixed(1)} s, verify with 1,000 differences ${(differing.at(-1)! / 1000).toFixed(1)} s (${d.rangesDiffering} ranges differ)`);
    }
    const row = (what: string, ms: number[], peak?: number) =>
      `| ${what} | ${(median(ms) / 1000).toFixed(1)} s | ${Math.round(ROWS / (median(ms) / 1000)).toLocaleString('en-US')} | ${peak ? `${Math.round(peak / 2 ** 20)} MiB` : '–'} |`;
    console.log(`\nverify, ${ROWS.toLocaleString('en-US')} rows of public.orders, median of ${RUNS} (range rows ${RANGE_ROWS.toLocaleString('en-US')}: ${ranges} ranges)\n`);
    console.log('| comparison | time | rows/s | peak RSS of the verifying process |');
    console.log('|---|---|---|---|');
    console.log(row('one whole-table hash per side (a single statement each)', whole));
    console.log(row('sluice verify, equal tables', equal, peakEqual));
    console.log(row('sluice verify, 1,000 rows differ (20 keys named)', differing, peakDiffering));
  } finally {
    rss.stop();
    await clusters.stopAll();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
