/**
 * The headline run: 100 million rows backfilled PostgreSQL → PostgreSQL (`npm run bench:100m`).
 *
 * It checks the disk first (the source table, one copy in the destination and the WAL between them
 * must fit; the estimate is printed), then runs the backfill benchmark once on the 9-column `orders`
 * table: psql's binary COPY pipe, then sluice's default backfill, each into an empty table that is
 * dropped afterwards. The benchmark prints wall time, rows/s, CPU seconds of sluice, source and
 * destination, and sluice's peak RSS.
 *
 *   npm run bench:100m                       # 100,000,000 rows
 *   npm run bench:100m -- --rows 20000000    # a smaller run; other flags go to backfill-and-cdc
 *   npm run bench:100m -- --skip-pipe        # sluice only
 *   npm run bench:100m -- --pg 15            # the machine's PostgreSQL 15 instead of the embedded 17
 */
import { spawn } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intOption } from './support.js';

/** orders9 measured at 244 bytes a row on disk, key included (3M rows: 698 MiB). */
const BYTES_PER_ROW = 244;
const GiB = 1024 ** 3;

const args = process.argv.slice(2);
const at = args.indexOf('--rows');
const rows = intOption(at >= 0 ? args[at + 1] : process.env.BENCH_ROWS, 100_000_000);
const rest = at >= 0 ? [...args.slice(0, at), ...args.slice(at + 2)] : args;

// Source table + one destination copy (the pipe's copy is dropped before sluice's is made) + WAL
// (max_wal_size and the segments a checkpoint has not recycled yet) + the change log, with 15% margin.
const need = rows * BYTES_PER_ROW * 2 * 1.15 + 6 * GiB;
const fs = statfsSync(tmpdir());
const free = fs.bavail * fs.bsize;
const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;
console.log(`bench:100m: ${rows.toLocaleString('en-US')} rows need about ${gib(need)} under ${tmpdir()}; ${gib(free)} free`);
if (free < need) {
  const fits = Math.floor(((free - 6 * GiB) / (BYTES_PER_ROW * 2 * 1.15)) / 1_000_000) * 1_000_000;
  console.error(
    `not enough disk for ${rows.toLocaleString('en-US')} rows: free some space under ${tmpdir()} (or point TMPDIR at a larger disk), ` +
      (fits > 0 ? `or run a smaller headline: npm run bench:100m -- --rows ${fits}` : 'there is no room for a meaningful run'),
  );
  process.exit(2);
}

const script = join(dirname(fileURLToPath(import.meta.url)), 'backfill-and-cdc.js');
const child = spawn(
  process.execPath,
  [script, '--rows', String(rows), '--table', 'orders9', '--runs', '1', '--skip-cdc', '--extra-chunk-rows', '0', '--latency-rates', '0', ...(rest.includes('--pg') ? [] : ['--pg', '17']), ...rest],
  { stdio: 'inherit' },
);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
