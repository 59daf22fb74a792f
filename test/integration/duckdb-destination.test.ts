/**
 * The DuckDB destination through the destination port, as the pipeline drives it, with a real
 * PostgreSQL source and a real DuckDB file: a keyset backfill's chunks (COPY text from the source)
 * appended with their progress, a crash and a resume that re-reads an overlap, the one dedupe into an
 * online staging table, the replay and the swap, then batches of changes (insert, update, delete, key
 * change, unchanged TOASTed value, TRUNCATE, an added column) each committed with its cursor.
 *
 * The oracle reads both sides with plain SQL, each engine computing its own text forms (timestamps as
 * epoch microseconds), and compares the row images in Node: no sluice code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { parseConfig } from '../../src/config/load.js';
import type { TableInfo } from '../../src/core/columns.js';
import { createLogger } from '../../src/core/logger.js';
import { Lsn, type CapturedValue } from '../../src/core/types.js';
import type { ApplySegment, ApplyTable, Destination, RowImage } from '../../src/destinations/destination.js';
import { destinationFor, sourceFor } from '../../src/engines.js';
import { SESSION_OPTIONS } from '../../src/postgres/session.js';
import { startCluster, type Cluster } from '../support/clusters.js';

const COLUMNS = ['id', 'name', 'body', 'price', 'at', 'tags', 'data'];
const SOURCE = { schema: 'public', name: 'items' };
const LIVE = { schema: 'main', name: 'items' };
const NAME = 'public.items';

let dir: string;
let source: Cluster;
let src: pg.Client;

function configText(path: string): string {
  return `pipeline: { name: p }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${path}", schema: main }
tables:
  - name: ${NAME}
`;
}

function engines(path: string): { destination: Destination; info: () => Promise<TableInfo> } {
  const cfg = parseConfig(configText(path), { env: {} });
  const s = sourceFor(cfg);
  return {
    destination: destinationFor(cfg),
    info: async () => {
      const i = await s.openInspection('test');
      try {
        return await i.describeTable(SOURCE);
      } finally {
        await i.close();
      }
    },
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-duckdb-destination-'));
  source = await startCluster({ name: 'duckdb-destination-source', logical: false });
  src = new pg.Client({ connectionString: source.url(), options: SESSION_OPTIONS });
  await src.connect();
  await src.query(`CREATE TABLE public.items (
    id int PRIMARY KEY, name text NOT NULL, body text, price numeric(10,2), at timestamptz, tags text[], data jsonb)`);
  await src.query(`INSERT INTO public.items
    SELECT g, 'item ' || g, CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 400) ELSE 'b' || g END, g * 1.25,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 0.000123 second', ARRAY['t' || g, 'x y'], jsonb_build_object('g', g, 's', 'q"t')
      FROM generate_series(1, 300) g`);
});

after(async () => {
  await src?.end().catch(() => {});
  await source?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A keyset chunk `(lo, hi]` as the copier sends it: COPY text of the source's rows. */
function chunk(lo: number, hi: number, upTo: string[] | 'done') {
  return {
    name: NAME,
    target: LIVE,
    columns: COLUMNS,
    format: 'postgres-text' as const,
    open: () => src.query(copyTo(`COPY (SELECT ${COLUMNS.join(', ')} FROM public.items WHERE id > ${lo} AND id <= ${hi} ORDER BY id) TO STDOUT`)),
    progress: { kind: 'key' as const, upTo },
    rowsPerSecond: () => 1000,
  };
}

/** The source's current row as the change stream carries it (text values), optionally with columns left out (unchanged TOAST). */
async function image(id: number, columns = COLUMNS, leftOut: string[] = []): Promise<CapturedValue[]> {
  const r = await src.query({ text: `SELECT ${columns.map((c) => `${c}::text`).join(', ')} FROM public.items WHERE id = $1`, values: [id], rowMode: 'array' });
  return (r.rows[0] as (string | null)[]).map((v, i) => (leftOut.includes(columns[i]) ? false : v));
}

function rowsSegment(version: number, columns: string[], upserts: [string, RowImage][], deletes: string[]): ApplySegment {
  return {
    kind: 'rows',
    relationVersion: version,
    columns: { names: columns, typeOids: columns.map(() => 0), keyIndexes: [0] },
    previous: null,
    keyIdx: [0],
    upserts: new Map(upserts),
    deletes: new Map(deletes.map((k) => [k, [k]])),
  };
}

/** The source's rows, each engine's plain SQL: timestamps as epoch microseconds, everything else as text. */
async function sourceRows(columns = COLUMNS): Promise<string[]> {
  const sel = columns.map((c) => (c === 'at' ? `(extract(epoch FROM t.at) * 1000000)::bigint::text` : `t.${c}::text`)).join(', ');
  const r = await src.query({ text: `SELECT ${sel} FROM public.items AS t ORDER BY t.id`, rowMode: 'array' });
  return r.rows.map((row) => JSON.stringify(row));
}

async function duckRows(path: string, table: string, columns = COLUMNS): Promise<string[]> {
  const db = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const c = await db.connect();
  try {
    const sel = columns.map((col) => (col === 'at' ? `CAST(epoch_us(t."at") AS VARCHAR)` : `CAST(t."${col}" AS VARCHAR)`)).join(', ');
    const r = await c.runAndReadAll(`SELECT ${sel} FROM ${table} AS t ORDER BY t.id`);
    return (r.getRowsJS() as unknown[][]).map((row) => JSON.stringify(row));
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/** Equal row images; on a difference, says which keys differ and in which column (not every row). */
function assertSameRows(actual: string[], expected: string[]): void {
  const byKey = (rows: string[]) => new Map(rows.map((r) => [JSON.parse(r)[0] as string, JSON.parse(r) as unknown[]]));
  const a = byKey(actual);
  const e = byKey(expected);
  const problems: string[] = [];
  for (const [k, row] of e) {
    const got = a.get(k);
    if (!got) problems.push(`${k}: missing`);
    else row.forEach((v, i) => v !== got[i] && problems.push(`${k}.${i}: ${JSON.stringify(got[i])?.slice(0, 60)} ≠ ${JSON.stringify(v)?.slice(0, 60)}`));
  }
  for (const k of a.keys()) if (!e.has(k)) problems.push(`${k}: not in the source`);
  assert.deepEqual(problems.slice(0, 20), []);
  assert.deepEqual(actual, expected);
}

test('PostgreSQL → DuckDB through the destination port: append, crash, resume, one dedupe, replay, swap, then CDC batches with their cursors', async () => {
  const path = join(dir, 'analytics.duckdb');
  const logger = createLogger({ level: 'error' });
  let { destination, info } = engines(path);
  assert.equal(destination.type, 'duckdb');
  assert.deepEqual(destination.capabilities, { supportsForeignKeys: false, supportsOnlineSwap: true, readsBinaryChunks: false, appendThenDedupe: true });
  const l0 = Lsn.parse('0/1000000');
  const tableInfo = await info();
  const start = { name: NAME, target: LIVE, info: tableInfo, mode: 'online' as const, strategy: 'keyset' as const, l0, where: '', version: 'test' };

  // Two chunks, then the process "crashes" (the destination lets the file go without finishing).
  const began = await destination.loads!.begin(start);
  assert.equal(began.resumed, false);
  let writer = await destination.openChunkWriter({ pipeline: 'p' });
  assert.equal(await writer.appendChunk(chunk(0, 100, ['100'])), 100);
  assert.equal(await writer.appendChunk(chunk(100, 200, ['200'])), 100);
  await writer.close();

  // A row changes after it was copied; the resumed run re-reads an overlap (as a ctid range would be re-read).
  await src.query(`UPDATE public.items SET name = 'renamed 160' WHERE id = 160`);
  ({ destination, info } = engines(path));
  const resumed = await destination.loads!.begin(start);
  assert.deepEqual([resumed.resumed, resumed.runId, resumed.lastKey, resumed.l0], [true, began.runId, ['200'], l0]);
  writer = await destination.openChunkWriter({ pipeline: 'p' });
  assert.equal(await writer.appendChunk(chunk(150, 300, 'done')), 150);
  await writer.close();

  let control = await destination.openControl('test');
  const row = await control.tableState('p', NAME);
  assert.deepEqual([row?.state, row?.chunksDone, row?.rowsCopied, row?.lastKey], ['backfilling', 3, 350, 'done']);

  // The one dedupe: one row per key, the later copy of 151..200 (160 renamed).
  const staging = await destination.loads!.finish({ name: NAME, target: LIVE, mode: 'online', key: ['id'] });
  assert.deepEqual(staging, { schema: 'main', name: 'items__sluice_staging' });
  assert.equal((await control.tableState('p', NAME))?.state, 'catching_up');

  // The replay into staging: changes at or after L0, applied a batch at a time with the cursor.
  const lookups = sourceFor(parseConfig(configText(path), { env: {} })).openLookups('test');
  let session = destination.openApplySession({ pipeline: 'p', logger, source: lookups });
  const table: ApplyTable = { name: NAME, source: SOURCE, info: tableInfo, staging: { target: staging } };
  await src.query(`UPDATE public.items SET price = 999.99 WHERE id = 5`);
  await src.query(`DELETE FROM public.items WHERE id = 6`);
  await src.query(`INSERT INTO public.items (id, name) VALUES (301, 'new')`);
  await src.query(`UPDATE public.items SET id = 1007 WHERE id = 7`);
  await src.query(`UPDATE public.items SET name = 'toasted, body unchanged' WHERE id = 50`);
  const at1 = { lsn: Lsn.parse('0/1000100'), idx: 3 };
  await session.applyBatch(
    table,
    staging,
    [
      rowsSegment(1, COLUMNS, [
        ['5', { row: await image(5) }],
        ['301', { row: await image(301) }],
        ['1007', { row: await image(1007), fromKey: ['7'] }],
        ['50', { row: await image(50, COLUMNS, ['body']) }],
      ], ['6', '7']),
    ],
    { position: at1, commitTimeMs: Date.now(), changes: 6 },
  );

  // The swap: staging takes the live table's place; a view over the live table reads the new one.
  await session.swap({ name: NAME, live: LIVE, staging, at: at1, attempt: 1, lockTimeoutMs: 1000, archiveSchema: 'sluice_archive', archiveRetentionHours: 24, keepArchive: false, lowFreeSpacePercent: 10 });
  await session.markCaughtUp(NAME);
  const after = await control.tableState('p', NAME);
  assert.deepEqual([after?.state, after?.staging], ['streaming', null]);
  assert.deepEqual((await control.listArchives('p')).map((a) => a.archive), ['main.items__archive_' + began.runId]);

  // The file is let go when its last user closes: the oracle reads it, then the pipeline carries on.
  await session.close();
  await control.close();
  assertSameRows(await duckRows(path, 'main.items'), await sourceRows());
  assert.equal((await duckRows(path, 'main.items')).length, 300);
  session = destination.openApplySession({ pipeline: 'p', logger, source: lookups });
  control = await destination.openControl('test');

  // TRUNCATE then rows in one batch; then a column the source gained (with a constant DEFAULT).
  await src.query(`TRUNCATE public.items`);
  await src.query(`INSERT INTO public.items SELECT g, 'after truncate ' || g, repeat('z', 3000), g, now(), NULL, '[1, 2]' FROM generate_series(1, 20) g`);
  const images: [string, RowImage][] = [];
  for (let id = 1; id <= 20; id++) images.push([String(id), { row: await image(id) }]);
  await session.applyBatch(table, LIVE, [{ kind: 'truncate' }, rowsSegment(1, COLUMNS, images, [])], { position: { lsn: Lsn.parse('0/1000200'), idx: 0 }, commitTimeMs: null, changes: 21 });

  await src.query(`ALTER TABLE public.items ADD COLUMN extra text DEFAULT 'seven'`);
  await src.query(`UPDATE public.items SET extra = 'set ' || id, body = body || '!' WHERE id <= 3`);
  const withExtra = [...COLUMNS, 'extra'];
  const last = { lsn: Lsn.parse('0/1000300'), idx: 2 };
  await src.query(`DELETE FROM public.items WHERE id = 20`);
  const extraImages: [string, RowImage][] = [];
  for (const id of [1, 2, 3]) extraImages.push([String(id), { row: await image(id, withExtra) }]);
  await session.applyBatch(table, LIVE, [rowsSegment(2, withExtra, extraImages, ['20'])], { position: last, commitTimeMs: null, changes: 4 });

  await session.close();
  await lookups.close();
  await control.close();

  // The oracle: the same rows on both sides.
  assertSameRows(await duckRows(path, 'main.items', withExtra), await sourceRows(withExtra));
  const db = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const c = await db.connect();
  try {
    const cursor = (await c.runAndReadAll(`SELECT target, lsn, idx FROM _sluice.cursors WHERE pipeline = 'p'`)).getRowsJS();
    assert.deepEqual(cursor, [['main.items', BigInt(last.lsn), BigInt(last.idx)]]);
    assert.deepEqual((await c.runAndReadAll(`SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_sluice' AND table_name LIKE 'load_%'`)).getRowsJS(), [[0n]]);
  } finally {
    c.closeSync();
    db.closeSync();
  }
});
