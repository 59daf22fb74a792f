/**
 * The DuckDB destination's writes on a real DuckDB file, with a real PostgreSQL source where one is
 * needed (filling left-out TOASTed values by key): chunks committed with their progress, the one
 * dedupe, each mode's move into place, batches applied by MERGE (insert, update, delete, key change,
 * unchanged TOASTed value, truncate, added column), the rename swap under a view, the state store
 * across a reopen, and the one-writer rule. Expected rows are read back with plain SQL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { openDuckDb, type DuckDbFile } from '../../src/destinations/duckdb/connection.js';
import * as state from '../../src/destinations/duckdb/state.js';
import { duckColumns } from '../../src/destinations/duckdb/types.js';
import { addColumn, appendChunk, applyBatch, createLoadTable, createTarget, finishLoad, swap, type TableShape } from '../../src/destinations/duckdb/writer.js';
import { Lsn, UNCHANGED } from '../../src/core/types.js';
import type { ColumnInfo } from '../../src/sources/postgres/introspect.js';
import { startCluster, type Cluster } from '../support/clusters.js';

let dir: string;
let source: Cluster;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-duckdb-writer-'));
  source = await startCluster({ name: 'duckdb-writer-source', logical: false });
  await source.query(`CREATE TABLE public.docs (id int PRIMARY KEY, title text NOT NULL, body text, n int)`);
});

after(async () => {
  await source?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function column(name: string, typeSql: string, notNull = false): ColumnInfo {
  return { name, attnum: 0, typeOid: 0, typeSql, notNull, defaultSql: null, generatedSql: null, support: 'builtin', binarySafe: true, collation: null };
}

const docs = { schema: 'main', name: 'docs' };
const load = { schema: 'main', name: 'docs__sluice_load' };
const shape: TableShape = {
  columns: duckColumns({
    table: { schema: 'public', name: 'docs' },
    copyColumns: [column('id', 'integer', true), column('title', 'text', true), column('body', 'text'), column('n', 'integer')],
    primaryKey: ['id'],
    userTypes: [],
  }),
  key: ['id'],
};

async function rows(file: DuckDbFile, sql: string): Promise<unknown[][]> {
  const r = await file.connection.runAndReadAll(sql);
  return r.getRowsJS() as unknown[][];
}

test('chunks commit with their progress; the one dedupe keeps the later copy; online staging and the swap keep a view working', async () => {
  const file = await openDuckDb(join(dir, 'load.duckdb'));
  try {
    await state.ensureStateSchema(file);
    await createTarget(file, docs, shape);
    await file.run(`INSERT INTO main.docs VALUES (1, 'old live row', NULL, 0)`);
    await file.run(`CREATE VIEW main.docs_view AS SELECT id, title FROM main.docs`);
    await state.setTableState(file, 'p', 'public.docs', 'backfilling', { target: 'main.docs', mode: 'online', l0: Lsn.parse('0/16B3748') });
    await createLoadTable(file, load, shape);

    const chunk1 = [['1', 'one', 'a', '1'], ['2', 'two', 'b', '2'], ['3', 'three', null, null]];
    await appendChunk(file, load, shape, chunk1, await state.nextLoadSeq(file, 'p', 'public.docs'), () =>
      state.recordChunk(file, 'p', 'public.docs', ['3'], 3, 100),
    );
    // A chunk whose progress fails to record leaves no rows behind either.
    await assert.rejects(
      appendChunk(file, load, shape, [['9', 'nine', null, null]], 99, async () => {
        throw new Error('crash before the progress');
      }),
      /crash before the progress/,
    );
    // The same range read again after a resume (say, a ctid range), with a row changed meanwhile.
    const chunk2 = [['3', 'three, read again', 'c', '3'], ['4', 'four', null, '4']];
    await appendChunk(file, load, shape, chunk2, await state.nextLoadSeq(file, 'p', 'public.docs'), () =>
      state.recordChunk(file, 'p', 'public.docs', 'done', 2, 100),
    );
    assert.deepEqual(await rows(file, `SELECT id, _sluice_seq FROM main.docs__sluice_load ORDER BY id, _sluice_seq`), [[1, 1n], [2, 1n], [3, 1n], [3, 2n], [4, 2n]]);
    const t = await state.readTable(file, 'p', 'public.docs');
    assert.deepEqual([t?.lastKey, t?.chunksDone, t?.rowsCopied, t?.l0], ['done', 2, 5, Lsn.parse('0/16B3748')]);

    const staging = { schema: 'main', name: 'docs__sluice_staging' };
    await finishLoad(file, 'online', load, staging, shape, () => state.writeCursor(file, 'p', 'public.docs', 'main.docs__sluice_staging', { lsn: Lsn.parse('0/16B3747'), idx: 0 }, null, 0));
    assert.deepEqual(await rows(file, `SELECT id, title, body, n FROM main.docs__sluice_staging ORDER BY id`), [
      [1, 'one', 'a', 1],
      [2, 'two', 'b', 2],
      [3, 'three, read again', 'c', 3],
      [4, 'four', null, 4],
    ]);
    assert.deepEqual(await rows(file, `SELECT count(*) FROM duckdb_tables() WHERE table_name = 'docs__sluice_load'`), [[0n]]);
    // Live is untouched until the swap; the view reads the live table, then the swapped one.
    assert.deepEqual(await rows(file, `SELECT * FROM main.docs_view ORDER BY id`), [[1, 'old live row']]);
    await swap(file, docs, staging, 'docs__sluice_archive_1', () => state.setTableState(file, 'p', 'public.docs', 'streaming', { staging: null }));
    assert.deepEqual(await rows(file, `SELECT * FROM main.docs_view ORDER BY id`), [[1, 'one'], [2, 'two'], [3, 'three, read again'], [4, 'four']]);
    assert.deepEqual(await rows(file, `SELECT id, title FROM main.docs__sluice_archive_1`), [[1, 'old live row']]);
    assert.equal((await state.readTable(file, 'p', 'public.docs'))?.state, 'streaming');
  } finally {
    file.close();
  }
});

test('truncate, drop and upsert modes move the deduplicated load into the live table', async () => {
  const file = await openDuckDb(join(dir, 'modes.duckdb'));
  try {
    for (const mode of ['truncate', 'drop', 'upsert'] as const) {
      await file.run(`DROP TABLE IF EXISTS main.docs`);
      await createTarget(file, docs, shape);
      await file.run(`INSERT INTO main.docs VALUES (1, 'live 1', NULL, 0), (7, 'live 7', NULL, 7)`);
      await createLoadTable(file, load, shape);
      await appendChunk(file, load, shape, [['1', 'a', null, '1'], ['2', 'b', null, '2']], 1, async () => {});
      await appendChunk(file, load, shape, [['2', 'b again', null, '2']], 2, async () => {});
      await finishLoad(file, mode, load, docs, shape, async () => {});
      const expected =
        mode === 'upsert'
          ? [[1, 'a'], [2, 'b again'], [7, 'live 7']]
          : [[1, 'a'], [2, 'b again']];
      assert.deepEqual(await rows(file, `SELECT id, title FROM main.docs ORDER BY id`), expected, mode);
    }
  } finally {
    file.close();
  }
});

test('a batch is applied by one MERGE: insert, update, delete, key change, unchanged TOASTed value, truncate, added column; the cursor commits with it', async () => {
  const file = await openDuckDb(join(dir, 'apply.duckdb'));
  const src = new pg.Client({ connectionString: source.url() });
  await src.connect();
  try {
    await state.ensureStateSchema(file);
    await createTarget(file, docs, shape);
    await file.run(`INSERT INTO main.docs VALUES (1, 'one', repeat('x', 5000), 1), (2, 'two', 'b2', 2), (3, 'three', 'b3', 3), (5, 'five', 'b5', 5)`);
    // The source's current rows, read when an image's left-out values must come from the source.
    await src.query(`INSERT INTO public.docs VALUES (10, 'ten', 'body of ten from the source', 10)`);
    const filled: string[][] = [];
    const fill = async (keys: readonly (readonly string[])[], columns: readonly string[]) => {
      filled.push(keys.map((k) => k.join(',')));
      const r = await src.query({
        text: `SELECT id::text, ${columns.map((c) => `"${c}"::text`).join(', ')} FROM public.docs WHERE id = ANY($1::int[])`,
        values: [keys.map((k) => k[0])],
        rowMode: 'array',
      });
      return r.rows as (string | null)[][];
    };
    const pos = (lsn: string, idx: number) => ({ lsn: Lsn.parse(lsn), idx });

    await applyBatch(
      file,
      docs,
      shape,
      {
        upserts: [
          { row: ['4', 'four', 'b4', '4'] }, // insert
          { row: ['1', 'one, retitled', UNCHANGED, '11'] }, // update leaving the TOASTed body out: kept
          { row: ['10', 'ten', UNCHANGED, '10'], fromKey: ['5'] }, // key change 5 → 10, body left out: from the source
          { row: ['2', 'two', null, null] }, // update to NULL
        ],
        deletes: [['3'], ['5']],
      },
      fill,
      () => state.writeCursor(file, 'p', 'public.docs', 'main.docs', pos('0/2000000', 3), Date.UTC(2026, 0, 1), 6),
    );
    assert.deepEqual(await rows(file, `SELECT id, title, body = repeat('x', 5000), CASE WHEN id = 1 THEN NULL ELSE body END, n FROM main.docs ORDER BY id`), [
      [1, 'one, retitled', true, null, 11],
      [2, 'two', null, null, null],
      [4, 'four', false, 'b4', 4],
      [10, 'ten', false, 'body of ten from the source', 10],
    ]);
    assert.deepEqual(filled, [['10']]);

    // A batch that fails rolls back with its cursor.
    await assert.rejects(
      applyBatch(file, docs, shape, { upserts: [{ row: ['6', null, null, null] }], deletes: [] }, null, () =>
        state.writeCursor(file, 'p', 'public.docs', 'main.docs', pos('0/3000000', 0), null, 1),
      ),
      /NOT NULL|null/i,
    );
    const cursors = await state.readCursors(file, 'p');
    assert.deepEqual(cursors.map((c) => [c.target, Lsn.format(c.position.lsn), c.position.idx, c.changesApplied]), [['main.docs', '0/2000000', 3, 6]]);

    // TRUNCATE on the source, then new rows; a column the source gained, with its DEFAULT for existing rows.
    await applyBatch(file, docs, shape, { truncateFirst: true, upserts: [{ row: ['20', 'twenty', 'b20', '20'] }], deletes: [] }, fill, async () => {});
    assert.deepEqual(await rows(file, `SELECT id, title FROM main.docs ORDER BY id`), [[20, 'twenty']]);
    const [added] = duckColumns({ table: { schema: 'public', name: 'docs' }, copyColumns: [column('due', 'date')], primaryKey: ['due'], userTypes: [] });
    await addColumn(file, docs, added, '2024-02-29');
    const wider: TableShape = { columns: [...shape.columns, added], key: ['id'] };
    await applyBatch(file, docs, wider, { upserts: [{ row: ['21', 'x', null, null, '0044-03-15 BC'] }], deletes: [] }, fill, async () => {});
    assert.deepEqual(await rows(file, `SELECT id, CAST(due AS VARCHAR) FROM main.docs ORDER BY id`), [[20, '2024-02-29'], [21, '0044-03-15 (BC)']]);
  } finally {
    await src.end();
    file.close();
  }
});

test('the state outlives a reopen of the file', async () => {
  const path = join(dir, 'state.duckdb');
  let file = await openDuckDb(path);
  assert.equal(await state.ensureStateSchema(file), null);
  const runId = await state.startRun(file, { pipeline: 'p', table: 'public.t', mode: 'online', strategy: 'ctid', l0: Lsn.parse('FFFFFFFF/FFFFFFF0') });
  await state.setTableState(file, 'p', 'public.t', 'backfilling', { target: 'main.t', runId, mode: 'online', plan: { strategy: 'ctid', pages: 10 } });
  await file.transaction(() => state.recordRangeChunk(file, 'p', 'public.t', runId, '(0,0)', '(5,0)', 42, 10));
  await state.setRunStatus(file, 'p', 'public.t', 'done');
  file.close();
  file = await openDuckDb(path);
  try {
    assert.equal(await state.ensureStateSchema(file), state.DUCKDB_STATE_FORMAT);
    const t = await state.readTable(file, 'p', 'public.t');
    assert.deepEqual([t?.state, t?.runId, t?.chunksDone, t?.rowsCopied, t?.plan], ['backfilling', runId, 1, 42, { strategy: 'ctid', pages: 10 }]);
    assert.deepEqual(await state.readRangeChunks(file, 'p', 'public.t', runId), [{ lo: '(0,0)', hi: '(5,0)' }]);
    const run = await rows(file, `SELECT status, chunks, rows_copied, l0_lsn, ended_at IS NOT NULL FROM _sluice.runs WHERE id = ${runId}`);
    assert.deepEqual(run, [['done', 1n, 42n, 0xfffffffffffffff0n, true]]);
  } finally {
    file.close();
  }
});

test('one writer: a second process, or a second open in this process, gets an error naming the file and the holder', async () => {
  const path = join(dir, 'held.duckdb');
  const holder = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import { DuckDBInstance } from '@duckdb/node-api'; await DuckDBInstance.create(${JSON.stringify(path)}); console.log('held'); setInterval(() => {}, 1000);`],
    { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
      holder.on('exit', (code) => reject(new Error(`holder exited with ${code}`)));
    });
    await assert.rejects(openDuckDb(path), (err: Error & { code?: string; isUsageError?: boolean }) => {
      assert.equal(err.code, 'DESTINATION_UNREACHABLE');
      assert.ok(err.isUsageError);
      assert.match(err.message, new RegExp(`destination DuckDB file .*held\\.duckdb is in use by process ${holder.pid} \\(`));
      return true;
    });
  } finally {
    holder.kill('SIGKILL');
  }
  await new Promise((r) => holder.once('exit', r).once('close', r));
  const first = await openDuckDb(path);
  try {
    await assert.rejects(openDuckDb(path), /is already open in this process/);
  } finally {
    first.close();
  }
  (await openDuckDb(path)).close();
});

test('a process killed inside a chunk transaction leaves neither the rows nor the progress; the committed chunks and state stay', async () => {
  const path = join(dir, 'crash.duckdb');
  const setup = await openDuckDb(path);
  await state.ensureStateSchema(setup);
  await state.setTableState(setup, 'p', 'public.docs', 'backfilling', { target: 'main.docs', mode: 'truncate' });
  await createLoadTable(setup, load, shape);
  setup.close();
  // The child commits chunk 1, then appends chunk 2 and records its progress, and is killed before COMMIT.
  const writer = new URL('../../src/destinations/duckdb/writer.js', import.meta.url).href;
  const stateUrl = new URL('../../src/destinations/duckdb/state.js', import.meta.url).href;
  const connUrl = new URL('../../src/destinations/duckdb/connection.js', import.meta.url).href;
  const script = `
    const { openDuckDb } = await import(${JSON.stringify(connUrl)});
    const { appendChunk } = await import(${JSON.stringify(writer)});
    const state = await import(${JSON.stringify(stateUrl)});
    const shape = ${JSON.stringify(shape)};
    const load = ${JSON.stringify(load)};
    const file = await openDuckDb(${JSON.stringify(path)});
    await appendChunk(file, load, shape, [['1', 'one', null, null], ['2', 'two', null, null]], 1, () => state.recordChunk(file, 'p', 'public.docs', ['2'], 2, 1));
    await appendChunk(file, load, shape, Array.from({ length: 5000 }, (_, i) => [String(i + 3), 'x', null, null]), 2, async () => {
      await state.recordChunk(file, 'p', 'public.docs', ['5002'], 5000, 1);
      process.stdout.write('inside\\n');
      await new Promise(() => {});
    });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('inside') && resolve());
    child.on('exit', (code) => reject(new Error(`child exited with ${code} before the kill`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  const file = await openDuckDb(path);
  try {
    assert.deepEqual(await rows(file, `SELECT id FROM main.docs__sluice_load ORDER BY id`), [[1], [2]]);
    const t = await state.readTable(file, 'p', 'public.docs');
    assert.deepEqual([t?.lastKey, t?.chunksDone, t?.rowsCopied], [['2'], 1, 2]);
  } finally {
    file.close();
  }
});
