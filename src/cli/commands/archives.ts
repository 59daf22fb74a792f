/**
 * `sluice archives list|drop`: the tables online backfills replaced, kept for
 * online.archiveRetentionHours (or for good with --keep-archive). Both work whether or not
 * `sluice run` is running: they touch only recorded archive tables and their rows in
 * `_sluice.archives`, never a live table, and a drop is idempotent against the running pipeline's
 * sweeper (for PostgreSQL: destinations/postgres/archives.ts).
 */
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import type { ArchiveRow, DestinationControl } from '../../destinations/destination.js';
import { destinationFor } from '../../engines.js';
import { formatBytes } from '../../core/units.js';
import { readConfig, type GlobalOptions } from '../shared.js';
import type { SluiceConfig } from '../../config/schema.js';

async function withDestination<T>(cfg: SluiceConfig, fn: (control: DestinationControl) => Promise<T>): Promise<T> {
  const control = await destinationFor(cfg).openControl('sluice-archives');
  try {
    await control.assertStateReadable();
    return await fn(control);
  } finally {
    await control.close();
  }
}

function toJson(a: ArchiveRow): Record<string, unknown> {
  return {
    archive: a.archive,
    table: a.table,
    runId: a.runId,
    createdAt: a.createdAt.toISOString(),
    dropAfter: a.dropAfter ? a.dropAfter.toISOString() : null,
    bytes: a.bytes,
  };
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export function renderArchives(list: readonly ArchiveRow[]): string {
  if (list.length === 0) return 'no archives kept';
  const header = ['ARCHIVE', 'TABLE', 'RUN', 'CREATED', 'DROP AFTER', 'SIZE'];
  const rows = list.map((a) => [
    a.archive,
    a.table,
    a.runId === null ? '-' : String(a.runId),
    iso(a.createdAt),
    a.dropAfter ? iso(a.dropAfter) : 'kept (--keep-archive)',
    a.bytes === null ? 'missing' : formatBytes(a.bytes),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const total = list.reduce((n, a) => n + (a.bytes ?? 0), 0);
  return [fmt(header), ...rows.map(fmt), `total: ${list.length} ${list.length === 1 ? 'archive' : 'archives'}, ${formatBytes(total)}`].join('\n');
}

export async function archivesListCommand(flags: { json?: boolean }, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const list = await withDestination(cfg, (control) => control.listArchives(cfg.pipeline.name));
  if (flags.json) {
    const total = list.reduce((n, a) => n + (a.bytes ?? 0), 0);
    process.stdout.write(JSON.stringify({ pipeline: cfg.pipeline.name, archives: list.map(toJson), count: list.length, bytes: total }, null, 2) + '\n');
  } else {
    process.stdout.write(renderArchives(list) + '\n');
  }
  return 0;
}

export interface ArchivesDropFlags {
  table?: string;
  allExpired?: boolean;
  json?: boolean;
}

/** The recorded archive `arg` names: its full name as recorded or quoted, or its bare name when only one has it. */
function findArchive(list: readonly ArchiveRow[], arg: string): ArchiveRow | undefined {
  const exact = list.find((a) => a.archive === arg);
  if (exact) return exact;
  let want: TableName | null = null;
  try {
    want = TableName.parse(arg, '\u0000');
  } catch {
    return undefined;
  }
  const parsed = list.map((a) => {
    try {
      return { a, t: TableName.parse(a.archive) };
    } catch {
      return { a, t: null };
    }
  });
  if (want.schema !== '\u0000') return parsed.find((p) => p.t && p.t.schema === want!.schema && p.t.name === want!.name)?.a;
  const byName = parsed.filter((p) => p.t && p.t.name === want!.name);
  return byName.length === 1 ? byName[0].a : undefined;
}

export async function archivesDropCommand(archive: string | undefined, flags: ArchivesDropFlags, opts: GlobalOptions): Promise<number> {
  const chosen = [archive !== undefined, flags.table !== undefined, !!flags.allExpired].filter(Boolean).length;
  if (chosen !== 1) {
    throw new SluiceError('BAD_USAGE', 'sluice archives drop: name exactly one of <archive>, --table <table> or --all-expired (sluice archives list shows them)');
  }
  const cfg = readConfig(opts);
  return withDestination(cfg, async (control) => {
    const list = await control.listArchives(cfg.pipeline.name);
    let targets: ArchiveRow[];
    if (archive !== undefined) {
      const a = findArchive(list, archive);
      if (!a) {
        const known = list.map((x) => x.archive);
        throw new SluiceError(
          'BAD_USAGE',
          `no archive ${archive} is kept for pipeline ${cfg.pipeline.name}; ` +
            (known.length ? `the archives kept are: ${known.join(', ')}` : 'it keeps no archives') +
            ' (sluice archives list)',
        );
      }
      targets = [a];
    } else if (flags.table !== undefined) {
      let t: string;
      try {
        t = TableName.format(TableName.parse(flags.table));
      } catch (err) {
        throw new SluiceError('BAD_USAGE', `--table ${flags.table}: ${(err as Error).message}`);
      }
      targets = list.filter((a) => a.table === t);
    } else {
      const now = Date.now();
      targets = list.filter((a) => a.dropAfter !== null && a.dropAfter.getTime() <= now);
    }
    const results: Record<string, unknown>[] = [];
    let failed = 0;
    for (const a of targets) {
      try {
        const outcome = await control.dropArchive(cfg.pipeline.name, a.archive, 30_000);
        results.push({ archive: a.archive, outcome, bytes: a.bytes });
        if (!flags.json) {
          process.stdout.write(
            outcome === 'dropped'
              ? `dropped ${a.archive} (${a.bytes === null ? '?' : formatBytes(a.bytes)})\n`
              : `${a.archive}: ${outcome === 'already dropped' ? 'already dropped (by the running pipeline)' : 'its table was already gone; the record is closed'}\n`,
          );
        }
      } catch (err) {
        failed++;
        const message = (err as Error).message;
        results.push({ archive: a.archive, error: message });
        if (!flags.json) {
          process.stderr.write(
            `sluice: could not drop ${a.archive}: ${message}` +
              `${/depend/i.test(message) ? ' (drop or re-point the objects that depend on it first)' : /lock/i.test(message) ? ' (a session holds a lock on it; try again)' : ''}\n`,
          );
        }
      }
    }
    if (flags.json) process.stdout.write(JSON.stringify({ dropped: results }, null, 2) + '\n');
    else if (targets.length === 0) {
      process.stdout.write(flags.table !== undefined ? `no archives of ${flags.table} are kept\n` : 'no archive has passed its retention\n');
    }
    return failed ? 1 : 0;
  });
}
