/**
 * The chunk queue that many sluice workers share, kept in the destination (not wired into the
 * pipeline yet): one row per chunk in `<schema>.chunk_claims`, claimed with `FOR UPDATE SKIP LOCKED`
 * under a lease that expires, completed in the same transaction that commits the chunk's rows.
 *
 * - `claimChunks` hands each pending chunk whose lease is free or expired to one worker; concurrent
 *   claimers skip rows another claimer holds locked, so they never wait on each other.
 * - A worker renews its lease while it copies (`renewLease`); a worker that stopped (killed, paused,
 *   partitioned) loses its chunks when the lease expires, and another worker claims them.
 * - `completeChunk` runs inside the chunk's destination transaction and marks the chunk done only
 *   while this worker still owns it; otherwise it throws (CHUNK_LEASE_LOST) and the caller rolls back
 *   the chunk's rows. A chunk's rows therefore commit exactly once, whoever copied them.
 *
 * When the pipeline uses it, the table becomes a step of the `_sluice` state format (state-format.ts).
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { quoteIdent } from '../../core/quote.js';

export interface ChunkClaim {
  readonly table: string;
  readonly chunkId: number;
  /** The chunk's key range as the copier described it (JSON). */
  readonly range: unknown;
  /** How many times the chunk was claimed, this claim included (1: first try). */
  readonly attempts: number;
}

export interface ChunkCounts {
  readonly pending: number;
  /** Pending chunks under a live lease. */
  readonly claimed: number;
  readonly done: number;
}

const table = (schema: string) => `${quoteIdent(schema)}.chunk_claims`;

export async function ensureChunkClaims(c: pg.ClientBase, schema: string): Promise<void> {
  await c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await c.query(
    `CREATE TABLE IF NOT EXISTS ${table(schema)} (
       pipeline text NOT NULL, tbl text NOT NULL, chunk_id bigint NOT NULL, range jsonb NOT NULL,
       done boolean NOT NULL DEFAULT false, owner text, lease_until timestamptz, attempts int NOT NULL DEFAULT 0,
       PRIMARY KEY (pipeline, tbl, chunk_id))`,
  );
  await c.query(`CREATE INDEX IF NOT EXISTS chunk_claims_pending ON ${table(schema)} (pipeline, tbl, chunk_id) WHERE NOT done`);
}

/** Adds chunks to the queue; a chunk already there (by id) is left as it is. */
export async function enqueueChunks(c: pg.ClientBase, schema: string, pipeline: string, tbl: string, chunks: readonly { id: number; range: unknown }[]): Promise<number> {
  if (chunks.length === 0) return 0;
  const r = await c.query(
    `INSERT INTO ${table(schema)} (pipeline, tbl, chunk_id, range)
     SELECT $1, $2, id, range FROM unnest($3::bigint[], $4::jsonb[]) AS u(id, range)
     ON CONFLICT DO NOTHING`,
    [pipeline, tbl, chunks.map((ch) => ch.id), chunks.map((ch) => JSON.stringify(ch.range))],
  );
  return r.rowCount ?? 0;
}

/** Claims up to `limit` pending chunks whose lease is free or expired, in table and chunk order, for `worker`. */
export async function claimChunks(
  c: pg.ClientBase,
  schema: string,
  opts: { pipeline: string; worker: string; leaseMs: number; limit: number },
): Promise<ChunkClaim[]> {
  const r = await c.query(
    `UPDATE ${table(schema)} q
        SET owner = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond', attempts = q.attempts + 1
       FROM (SELECT pipeline, tbl, chunk_id FROM ${table(schema)}
              WHERE pipeline = $1 AND NOT done AND (lease_until IS NULL OR lease_until < clock_timestamp())
              ORDER BY tbl, chunk_id LIMIT $4 FOR UPDATE SKIP LOCKED) s
      WHERE q.pipeline = s.pipeline AND q.tbl = s.tbl AND q.chunk_id = s.chunk_id
      RETURNING q.tbl, q.chunk_id, q.range, q.attempts`,
    [opts.pipeline, opts.worker, opts.leaseMs, opts.limit],
  );
  return r.rows
    .map((row) => ({ table: row.tbl as string, chunkId: Number(row.chunk_id), range: row.range as unknown, attempts: Number(row.attempts) }))
    .sort((a, b) => (a.table === b.table ? a.chunkId - b.chunkId : a.table < b.table ? -1 : 1));
}

/** Extends `worker`'s lease on a chunk; false when the worker no longer owns it (another worker claimed it, or it is done). */
export async function renewLease(c: pg.ClientBase, schema: string, pipeline: string, claim: ChunkClaim, worker: string, leaseMs: number): Promise<boolean> {
  const r = await c.query(
    `UPDATE ${table(schema)} SET lease_until = clock_timestamp() + $5 * interval '1 millisecond'
      WHERE pipeline = $1 AND tbl = $2 AND chunk_id = $3 AND owner = $4 AND NOT done`,
    [pipeline, claim.table, claim.chunkId, worker, leaseMs],
  );
  return r.rowCount === 1;
}

/**
 * Marks the chunk done, inside the transaction that commits its rows. Throws CHUNK_LEASE_LOST (the
 * caller rolls back) when `worker` no longer owns it. The row lock taken here also keeps any other
 * claimer off the chunk until the transaction ends.
 */
export async function completeChunk(c: pg.ClientBase, schema: string, pipeline: string, claim: ChunkClaim, worker: string): Promise<void> {
  const r = await c.query(
    `UPDATE ${table(schema)} SET done = true, owner = NULL, lease_until = NULL
      WHERE pipeline = $1 AND tbl = $2 AND chunk_id = $3 AND owner = $4 AND NOT done`,
    [pipeline, claim.table, claim.chunkId, worker],
  );
  if (r.rowCount === 1) return;
  throw new SluiceError(
    'CHUNK_LEASE_LOST',
    `chunk ${claim.chunkId} of ${claim.table}: worker ${worker} no longer holds it (its lease expired and another worker claimed it, ` +
      `or it is done); its rows are rolled back and the chunk is copied once by its owner. Raise the lease if this repeats`,
    { retryable: true, context: { table: claim.table, chunk: claim.chunkId, worker } },
  );
}

export async function chunkCounts(c: pg.ClientBase, schema: string, pipeline: string): Promise<ChunkCounts> {
  const r = await c.query(
    `SELECT count(*) FILTER (WHERE NOT done) AS pending,
            count(*) FILTER (WHERE NOT done AND lease_until >= clock_timestamp()) AS claimed,
            count(*) FILTER (WHERE done) AS done
       FROM ${table(schema)} WHERE pipeline = $1`,
    [pipeline],
  );
  const row = r.rows[0];
  return { pending: Number(row.pending), claimed: Number(row.claimed), done: Number(row.done) };
}
