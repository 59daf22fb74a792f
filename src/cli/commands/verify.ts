import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import { parseBy, verifyTablesByBucket, type BucketVerdict } from '../../verify/by-bucket.js';
import { verifyTables, type TableVerdict, type VerifyProgress } from '../../verify/verifier.js';
import { EventBus } from '../../core/events.js';
import { notifyOnce, resolveWebhooks } from '../../notify/notifier.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';

export interface VerifyFlags {
  json?: boolean;
  attempts?: string;
  rangeRows?: string;
  maxRowsPerSecond?: string;
  where?: string;
  by?: string;
  timeZone?: string;
}

/** Exit 0 when every table is equal, 1 with the differing keys otherwise, 2 on error. */
export async function verifyCommand(names: string[], flags: VerifyFlags, opts: GlobalOptions): Promise<number> {
  const attempts = whole('--attempts', flags.attempts, 1);
  const rangeRows = whole('--range-rows', flags.rangeRows, 2);
  const maxRowsPerSecond = whole('--max-rows-per-second', flags.maxRowsPerSecond, 0);
  const cfg = readConfig(opts);
  // A webhook whose secretEnv is not set exits 2 now, not after the verify ran.
  resolveWebhooks(cfg);
  const tables = names.length ? names : cfg.tables.map((t) => TableName.format(TableName.parse(t.name)));
  // Progress on stderr every few seconds (stdout stays the verdict, for scripts).
  let shown = Date.now();
  const onProgress = (p: VerifyProgress) => {
    if (Date.now() - shown < 5000) return;
    shown = Date.now();
    const pct = p.rowsEstimated > 0 ? ` (~${Math.min(100, Math.round((100 * p.rowsChecked) / p.rowsEstimated))}%)` : '';
    process.stderr.write(`verify ${p.table}: ${p.rowsChecked.toLocaleString('en-US')} rows checked${pct} in ${p.ranges} ranges, ${p.rangesDiffering} differing so far\n`);
  };
  if (flags.by) {
    const byBucket = await verifyTablesByBucket(cfg, tables, parseBy(flags.by, flags.timeZone), { attempts, rangeRows, maxRowsPerSecond, where: flags.where });
    if (flags.json) process.stdout.write(JSON.stringify({ equal: byBucket.every((v) => v.equal), tables: byBucket }, null, 2) + '\n');
    else process.stdout.write(renderBucketVerdicts(byBucket) + '\n');
    await announce(cfg, opts, byBucket.map((v) => ({ table: v.table, equal: v.equal, sourceRows: v.sourceRows, destinationRows: v.destinationRows, rangesDiffering: v.rangesDiffering, where: v.where ?? null, by: v.by })));
    return byBucket.every((v) => v.equal) ? 0 : 1;
  }
  if (flags.timeZone) throw new SluiceError('BAD_USAGE', '--time-zone goes with --by day:COLUMN or --by hour:COLUMN');
  const verdicts = await verifyTables(cfg, tables, { attempts, rangeRows, maxRowsPerSecond, where: flags.where, onProgress });
  if (flags.json) process.stdout.write(JSON.stringify({ equal: verdicts.every((v) => v.equal), tables: verdicts }, null, 2) + '\n');
  else process.stdout.write(renderVerdicts(verdicts) + '\n');
  await announce(cfg, opts, verdicts.map((v) => ({ table: v.table, equal: v.equal, sourceRows: v.sourceRows, destinationRows: v.destinationRows, rangesDiffering: v.rangesDiffering, where: v.where ?? null, differences: v.differences.length })));
  return verdicts.every((v) => v.equal) ? 0 : 1;
}

/** verify.completed for each table, to the config's webhooks and hooks. */
async function announce(cfg: ReturnType<typeof readConfig>, opts: GlobalOptions, verdicts: ({ table: string } & Record<string, unknown>)[]): Promise<void> {
  const bus = new EventBus(cfg.pipeline.name);
  await notifyOnce(cfg, makeLogger(opts), bus, () => {
    for (const { table, ...detail } of verdicts) bus.emit('verify.completed', detail, table);
  });
}

function whole(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new SluiceError('BAD_USAGE', `${flag} ${value}: expected a whole number ≥ ${min}`);
  return n;
}

export function renderVerdicts(verdicts: TableVerdict[]): string {
  return verdicts
    .map((v) => {
      const ranges = v.rangesDiffering > 0 ? `; ${v.rangesDiffering} of ${v.ranges} key ranges differ` : '';
      const head = `${v.equal ? 'EQUAL    ' : 'DIFFERENT'} ${v.table}${v.where ? ` (where ${v.where})` : ''}: source ${v.sourceRows.toLocaleString('en-US')} rows (md5 ${v.sourceMd5.slice(0, 12)}), destination ${v.destinationRows.toLocaleString('en-US')} rows (md5 ${v.destinationMd5.slice(0, 12)})${ranges}`;
      return [head, ...v.differences.map((d) => `  ${d.key}: ${d.problem}`)].join('\n');
    })
    .join('\n');
}

export function renderBucketVerdicts(verdicts: BucketVerdict[]): string {
  const n = (x: number) => x.toLocaleString('en-US');
  return verdicts
    .map((v) => {
      const head = `${v.equal ? 'EQUAL    ' : 'DIFFERENT'} ${v.table}${v.where ? ` (where ${v.where})` : ''} by ${v.by}: source ${n(v.sourceRows)} rows, destination ${n(v.destinationRows)} rows; ${v.rangesDiffering} of ${v.buckets} buckets differ`;
      return [
        head,
        ...v.differingBuckets.map((b) => `  ${b.bucket}: source ${n(b.sourceRows)} rows, destination ${n(b.destinationRows)}`),
        ...v.differences.map((d) => `    ${d.key}: ${d.problem}`),
      ].join('\n');
    })
    .join('\n');
}
