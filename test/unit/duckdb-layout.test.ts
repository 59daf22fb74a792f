/**
 * The DuckDB driver stands alone: it imports core/, the destination port and its own folder, and nothing of the pipeline
 * or of another driver (the PostgreSQL source's column descriptions only as types, until they move
 * to core/ with the destination port). And the SQL of the cross-engine row hash is pinned.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { duckdbRangeHashSql, duckdbRowHashExpr, postgresRowHashExpr } from '../../src/destinations/duckdb/row-hash.js';
import { duckTypeOfBuiltin } from '../../src/destinations/duckdb/types.js';

const dir = join(process.cwd(), 'src', 'destinations', 'duckdb');

test('src/destinations/duckdb imports only core/, the destination port, its own files, @duckdb/node-api and node: modules', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 7, `found ${files.join(', ')}`);
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8');
    for (const m of text.matchAll(/^import (type )?[^'"]*from '([^']+)';/gm)) {
      const [, typeOnly, from] = m;
      const ok =
        from.startsWith('./') ||
        from.startsWith('../../core/') ||
        from === '../destination.js' ||
        from.startsWith('node:') ||
        from === '@duckdb/node-api' ||
        (typeOnly !== undefined && from === '../../sources/postgres/introspect.js');
      assert.ok(ok, `${f} imports ${typeOnly ?? ''}${from}`);
    }
  }
});

test('the row hash: one canonical field per column, the same shape on both engines', () => {
  const columns = [
    { name: 'id', type: duckTypeOfBuiltin('integer'), notNull: true },
    { name: 'at', type: duckTypeOfBuiltin('timestamp with time zone'), notNull: false },
  ];
  assert.equal(
    duckdbRowHashExpr(columns),
    `md5(CASE WHEN CAST("id" AS VARCHAR) IS NULL THEN 'n' ELSE 'v' || CAST(strlen(CAST("id" AS VARCHAR)) AS VARCHAR) || ':' || CAST("id" AS VARCHAR) END || ` +
      `CASE WHEN CASE WHEN isfinite("at") THEN CAST(epoch_us("at") AS VARCHAR) ELSE CAST("at" AS VARCHAR) END IS NULL THEN 'n' ELSE 'v' || ` +
      `CAST(strlen(CASE WHEN isfinite("at") THEN CAST(epoch_us("at") AS VARCHAR) ELSE CAST("at" AS VARCHAR) END) AS VARCHAR) || ':' || ` +
      `CASE WHEN isfinite("at") THEN CAST(epoch_us("at") AS VARCHAR) ELSE CAST("at" AS VARCHAR) END END)`,
  );
  assert.match(postgresRowHashExpr(columns), /^md5\(CASE WHEN CASE WHEN "id" IS NULL THEN NULL ELSE concat\("id"\) END IS NULL THEN 'n' ELSE 'v' \|\| CAST\(octet_length\(/);
  assert.match(postgresRowHashExpr(columns), /\(extract\(epoch FROM "at"\) \* 1000000\)::bigint::text/);
  assert.equal(
    duckdbRangeHashSql({ schema: 'main', name: 't' }, columns.slice(0, 1), ['id'], '"id" > 5'),
    `SELECT count(*) AS n, coalesce(md5(string_agg(md5(CASE WHEN CAST("id" AS VARCHAR) IS NULL THEN 'n' ELSE 'v' || CAST(strlen(CAST("id" AS VARCHAR)) AS VARCHAR) || ':' || CAST("id" AS VARCHAR) END), '' ORDER BY "id")), md5('')) AS h FROM "main"."t" WHERE "id" > 5`,
  );
});
