/**
 * Demo data and a concurrent write workload for `sluice demo` (and tests).
 *
 * createDemoTable() builds an "orders" table with a mix of column types (enum,
 * numeric, float8, text, text[], jsonb, uuid, timestamptz, date, varbit, bool,
 * bytea) and fills it server-side with INSERT ... SELECT FROM generate_series:
 * values are deterministic functions of the row number (md5 etc.), nullable
 * columns are NULL in some rows, and about 2% of the rows get a ~3 KB note of
 * incompressible hex text, so it is stored out of line (TOAST).
 *
 * Workload runs a random mix of inserts, updates, deletes, primary-key changes,
 * updates of TOASTed rows that leave `note` alone (so logical decoding sees an
 * "unchanged TOAST" column) and small multi-statement transactions on 4
 * connections, paced to a target rate, until stop() is called. Statement errors
 * (unique violations, deadlocks, lost connections) are counted, never thrown.
 */
import pg from 'pg';

export type DemoLog = (line: string) => void;

/** Defaults shared by createDemoTable() and Workload. */
export const demoSettings = Object.freeze({
  table: 'public.orders',
  /** rows createDemoTable() is usually called with by `sluice demo` */
  rows: 100_000,
  /** rows with a TOASTed note: 1 in toastEvery (2%) */
  toastEvery: 50,
  /** size of a TOASTed note in characters (96 md5 hex strings) */
  toastNoteChars: 3072,
  /** Workload target operations per second (0 = as fast as possible) */
  ratePerSecond: 500,
  /** fraction of workload operations that change a primary key */
  keyChangeFraction: 0.02,
  /** Workload connections */
  connections: 4,
  /** rows per INSERT ... SELECT statement in createDemoTable() */
  fillChunkRows: 250_000,
});

const STATUSES = ['new', 'paid', 'shipped', 'cancelled'] as const;
/** notes longer than this (in bytes) count as TOASTed */
const TOAST_MIN_BYTES = 1000;

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

interface TableRef {
  schema: string;
  name: string;
  /** "schema"."name" */
  sql: string;
  /** "schema"."order_status" */
  enumSql: string;
}

function parseTable(table: string): TableRef {
  const dot = table.indexOf('.');
  const schema = dot >= 0 ? table.slice(0, dot) : 'public';
  const name = dot >= 0 ? table.slice(dot + 1) : table;
  if (!schema || !name) throw new Error(`invalid table name '${table}' (expected schema.table)`);
  return {
    schema,
    name,
    sql: `${quoteIdent(schema)}.${quoteIdent(name)}`,
    enumSql: `${quoteIdent(schema)}.${quoteIdent('order_status')}`,
  };
}

// ---------------------------------------------------------------------------
// createDemoTable

export interface CreateDemoTableOptions {
  /** schema-qualified table name, default 'public.orders' */
  table?: string;
  rows: number;
  log?: DemoLog;
}

/**
 * Row expression for series value `i` (a bigint). The same formulas, roughly,
 * are used by the workload's inserts (see randomRow()).
 */
function fillSelect(t: TableRef): string {
  const { toastEvery, toastNoteChars } = demoSettings;
  const md5Count = Math.ceil(toastNoteChars / 32);
  return `
    SELECT
      i,
      1 + (i * 7919) % 50000,
      (ARRAY['new','paid','shipped','cancelled']::${t.enumSql}[])[1 + (i * 31 + i / 7) % 4],
      CASE WHEN i % 17 = 0 THEN NULL ELSE round(((i * 7349) % 1000000) / 100.0 + 0.01, 2) END,
      CASE WHEN i % 23 = 0 THEN NULL ELSE i::float8 / 7 * 1.1 END,
      CASE
        WHEN i % ${toastEvery} = 7 THEN
          (SELECT string_agg(md5(i::text || ':' || j::text), '') FROM generate_series(1, ${md5Count}) j)
        WHEN i % 5 = 0 THEN NULL
        WHEN i % 97 = 3 THEN 'café ✓ order ' || i || ' — ' || left(md5(i::text), 6)
        ELSE 'order ' || i || ' ' || left(md5(i::text), 4 + (i % 20)::int)
      END,
      CASE
        WHEN i % 11 = 0 THEN NULL
        WHEN i % 7 = 0 THEN '{}'::text[]
        ELSE ARRAY['t' || (i % 13), 'c' || (i % 5)]
      END,
      CASE WHEN i % 13 = 0 THEN NULL
        ELSE jsonb_build_object(
          'v', i,
          'src', (ARRAY['web','app','pos'])[1 + i % 3],
          'nested', jsonb_build_object('x', i % 100, 'even', i % 2 = 0))
      END,
      CASE WHEN i % 19 = 0 THEN NULL ELSE md5('ref' || i)::uuid END,
      timestamptz '2024-01-01 00:00:00+00' + i * interval '17 seconds' + (i % 1000) * interval '1 microsecond',
      CASE WHEN i % 3 = 0 THEN NULL ELSE date '2024-01-01' + (i % 700)::int END,
      CASE WHEN i % 29 = 0 THEN NULL ELSE substr(((i % 256)::int::bit(8))::text, 1, 1 + (i % 8)::int)::varbit END,
      CASE WHEN i % 31 = 0 THEN NULL ELSE i % 3 <> 0 END,
      CASE WHEN i % 9 = 0 THEN NULL ELSE substr(decode(md5(i::text), 'hex'), 1, 1 + (i % 16)::int) END
    FROM generate_series($1::bigint, $2::bigint) AS i`;
}

const COLUMNS =
  'id, customer_id, status, amount, price, note, tags, attrs, ref, created_at, ship_date, flags, active, payload';

/**
 * Create the enum type order_status (if missing) and the demo table (which must
 * not exist), fill it with `rows` rows server-side, ANALYZE it.
 * 1,000,000 rows take about 8.5 s on a 2-vCPU machine (cluster from startCluster()).
 */
export async function createDemoTable(url: string, opts: CreateDemoTableOptions): Promise<void> {
  const t = parseTable(opts.table ?? demoSettings.table);
  const log = opts.log ?? (() => undefined);
  const rows = Math.max(0, Math.floor(opts.rows));
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // reported by the pending query
  await client.connect();
  try {
    const t0 = Date.now();
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
    await client.query(`
      DO $$ BEGIN
        CREATE TYPE ${t.enumSql} AS ENUM ('new', 'paid', 'shipped', 'cancelled');
      EXCEPTION WHEN duplicate_object THEN NULL;
      END $$`);
    // The primary key is added after the fill: building the index once is faster
    // than maintaining it row by row.
    await client.query(`
      CREATE TABLE ${t.sql} (
        id          bigint NOT NULL,
        customer_id int NOT NULL,
        status      ${t.enumSql} NOT NULL,
        amount      numeric(12,2),
        price       double precision,
        note        text,
        tags        text[],
        attrs       jsonb,
        ref         uuid,
        created_at  timestamptz NOT NULL DEFAULT now(),
        ship_date   date,
        flags       bit varying(8),
        active      boolean,
        payload     bytea
      )`);
    const insert = `INSERT INTO ${t.sql} (${COLUMNS}) ${fillSelect(t)}`;
    const chunk = demoSettings.fillChunkRows;
    for (let from = 1; from <= rows; from += chunk) {
      const to = Math.min(rows, from + chunk - 1);
      await client.query(insert, [from, to]);
      log(`${t.schema}.${t.name}: inserted rows ${from}..${to} of ${rows} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
    await client.query(`ALTER TABLE ${t.sql} ADD PRIMARY KEY (id)`);
    await client.query(`ANALYZE ${t.sql}`);
    log(`${t.schema}.${t.name}: ${rows} rows, primary key and ANALYZE done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Workload

export interface WorkloadOptions {
  /** schema-qualified table name, default 'public.orders' */
  table?: string;
  /** target operations per second over all connections (default 500); 0 = as fast as possible */
  ratePerSecond?: number;
  /** PRNG seed (default: random). The interleaving of 4 connections is not reproducible anyway. */
  seed?: number;
  /** fraction of operations that change a primary key (default 0.02) */
  keyChangeFraction?: number;
  /** connection problems etc. (default: silent) */
  log?: DemoLog;
}

/**
 * Counters. Each "operation" (paced unit) is one statement, or one transaction of
 * several statements; the statement counters count statements that affected a row.
 */
export interface WorkloadStats {
  /** operations started (the paced unit: a statement or a whole transaction) */
  ops: number;
  inserts: number;
  /** updates of random rows (not counting key changes and toastUpdates) */
  updates: number;
  deletes: number;
  /** UPDATE ... SET id = <new id> */
  keyChanges: number;
  /** updates of rows with a TOASTed note that do not touch note */
  toastUpdates: number;
  /** committed multi-statement transactions */
  transactions: number;
  /** statements that matched no row (random id already deleted or moved) */
  misses: number;
  /** failed statements/transactions (unique violation, deadlock, lost connection, ...) */
  errors: number;
}

type Op = 'insert' | 'update' | 'delete' | 'keyChange' | 'toastUpdate' | 'transaction';

/** mulberry32: a small, seedable PRNG (also used by tests for reproducible plans). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TICK_MS = 100;
const RECONNECT_MS = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Workload {
  readonly stats: WorkloadStats = {
    ops: 0,
    inserts: 0,
    updates: 0,
    deletes: 0,
    keyChanges: 0,
    toastUpdates: 0,
    transactions: 0,
    misses: 0,
    errors: 0,
  };
  /** message of the most recent error, for diagnostics */
  lastError: string | undefined;

  private readonly t: TableRef;
  private readonly rate: number;
  private readonly keyChangeFraction: number;
  private readonly seed: number;
  private readonly log: DemoLog;

  private running = false;
  private stopping = false;
  private run: Promise<void> | undefined;
  /** next id to hand out (inserts and key changes); read from max(id) at start */
  private nextId = 0;
  /** ids believed to have a TOASTed note */
  private toastIds: number[] = [];
  private toastRefill: Promise<void> | undefined;

  // pacing: tokens added every tick; workers wait for one per operation
  private tokens = 0;
  private ticker: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];
  private wakeStop: (() => void) | undefined;
  private stopped: Promise<void> = new Promise((r) => (this.wakeStop = r));

  constructor(
    private readonly url: string,
    opts: WorkloadOptions = {},
  ) {
    this.t = parseTable(opts.table ?? demoSettings.table);
    this.rate = Math.max(0, opts.ratePerSecond ?? demoSettings.ratePerSecond);
    this.keyChangeFraction = Math.min(1, Math.max(0, opts.keyChangeFraction ?? demoSettings.keyChangeFraction));
    this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.log = opts.log ?? (() => undefined);
  }

  /** highest id handed out so far (random ids are drawn from [1, currentMax]) */
  get currentMax(): number {
    return this.nextId - 1;
  }

  /** Start the workload in the background. Runs until stop(). */
  start(): void {
    if (this.running) throw new Error('Workload already started');
    if (this.stopping) throw new Error('Workload was stopped; create a new one');
    this.running = true;
    this.run = this.main().catch((err: unknown) => {
      this.noteError(err);
    });
  }

  /** Stop: no new operations; waits for in-flight statements and closes the connections. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeStop?.();
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const w of this.waiters.splice(0)) w();
    await this.run;
    this.running = false;
  }

  // -------------------------------------------------------------------------

  private noteError(err: unknown): void {
    this.stats.errors++;
    this.lastError = err instanceof Error ? err.message : String(err);
  }

  /** sleep that ends early on stop() */
  private pause(ms: number): Promise<void> {
    return Promise.race([sleep(ms), this.stopped]);
  }

  private async main(): Promise<void> {
    // Read the starting point (retrying until the database is reachable or stop()).
    const rnd = prng(this.seed);
    for (;;) {
      if (this.stopping) return;
      const client = await this.connect();
      if (!client) continue;
      try {
        const max = await client.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${this.t.sql}`);
        this.nextId = Number(max.rows[0].max ?? 0) + 1;
        await this.loadToastIds(client);
        break;
      } catch (err) {
        this.noteError(err);
        await this.pause(RECONNECT_MS);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    if (this.rate > 0) {
      let carry = 0;
      const perTick = (this.rate * TICK_MS) / 1000;
      const cap = Math.max(1, this.rate); // at most one second of backlog
      this.tokens = Math.min(perTick, cap);
      this.ticker = setInterval(() => {
        carry += perTick;
        const whole = Math.floor(carry);
        carry -= whole;
        this.tokens = Math.min(cap, this.tokens + whole);
        const n = Math.min(this.waiters.length, Math.floor(this.tokens));
        for (const w of this.waiters.splice(0, n)) w();
      }, TICK_MS);
    }
    const workers: Promise<void>[] = [];
    for (let i = 0; i < demoSettings.connections; i++) {
      workers.push(this.worker(prng(Math.floor(rnd() * 2 ** 31) + i)));
    }
    await Promise.all(workers);
  }

  private async connect(): Promise<pg.Client | undefined> {
    const client = new pg.Client({ connectionString: this.url, application_name: 'sluice-demo-workload' });
    client.on('error', () => undefined); // surfaces as a failed query
    try {
      await client.connect();
      return client;
    } catch (err) {
      this.noteError(err);
      this.log(`workload: cannot connect: ${(err as Error).message}`);
      await client.end().catch(() => undefined);
      await this.pause(RECONNECT_MS);
      return undefined;
    }
  }

  private async loadToastIds(client: pg.Client): Promise<void> {
    // octet_length() reads the TOAST pointer's size: no detoasting
    const res = await client.query<{ id: string }>(
      `SELECT id::text FROM ${this.t.sql} WHERE octet_length(note) > ${TOAST_MIN_BYTES} LIMIT 100000`,
    );
    this.toastIds = res.rows.map((r) => Number(r.id));
  }

  /** wait for a pacing token; false when stopping */
  private async acquire(): Promise<boolean> {
    if (this.stopping) return false;
    if (this.rate === 0) return true;
    while (this.tokens < 1) {
      await new Promise<void>((r) => this.waiters.push(r));
      if (this.stopping) return false;
    }
    this.tokens -= 1;
    return true;
  }

  private pickOp(rnd: () => number): Op {
    let x = rnd();
    if ((x -= this.keyChangeFraction) < 0) return 'keyChange';
    if ((x -= 0.05) < 0) return 'toastUpdate';
    if ((x -= 0.05) < 0) return 'transaction';
    const rest = 1 - this.keyChangeFraction - 0.1;
    if (rest <= 0) return 'update';
    x /= rest;
    if (x < 0.4) return 'insert';
    if (x < 0.8) return 'update';
    return 'delete';
  }

  private async worker(rnd: () => number): Promise<void> {
    let client: pg.Client | undefined;
    try {
      while (!this.stopping) {
        if (!client) {
          client = await this.connect();
          continue;
        }
        if (!(await this.acquire())) break;
        const op = this.pickOp(rnd);
        this.stats.ops++;
        try {
          await this.execute(client, op, rnd);
        } catch (err) {
          this.noteError(err);
          const code = (err as { code?: string }).code;
          const broken = !code || code.startsWith('08') || code === '57P01' || code === '57P03';
          if (broken) {
            // connection-level failure: drop the client and reconnect after a pause
            this.log(`workload: connection lost: ${(err as Error).message}`);
            await client.end().catch(() => undefined);
            client = undefined;
            await this.pause(RECONNECT_MS);
          }
        }
      }
    } finally {
      await client?.end().catch(() => undefined);
    }
  }

  private randomId(rnd: () => number): number {
    const max = Math.max(1, this.nextId - 1);
    return 1 + Math.floor(rnd() * max);
  }

  private async execute(c: pg.Client, op: Op, rnd: () => number): Promise<void> {
    switch (op) {
      case 'insert':
        return this.doInsert(c, rnd);
      case 'update':
        return this.doUpdate(c, rnd);
      case 'delete':
        return this.doDelete(c, rnd);
      case 'keyChange':
        return this.doKeyChange(c, rnd);
      case 'toastUpdate':
        return this.doToastUpdate(c, rnd);
      case 'transaction':
        return this.doTransaction(c, rnd);
    }
  }

  private async doInsert(c: pg.Client, rnd: () => number): Promise<void> {
    const id = this.nextId++;
    const row = randomRow(id, rnd);
    await c.query(
      `INSERT INTO ${this.t.sql} (${COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      row,
    );
    this.stats.inserts++;
    if (typeof row[5] === 'string' && row[5].length > TOAST_MIN_BYTES) this.toastIds.push(id);
  }

  /** one of several single-row updates of a random id; never rewrites a TOASTed note */
  private async doUpdate(c: pg.Client, rnd: () => number): Promise<void> {
    const id = this.randomId(rnd);
    const k = Math.floor(rnd() * 6);
    let res: pg.QueryResult;
    const t = this.t.sql;
    switch (k) {
      case 0:
        res = await c.query(
          `UPDATE ${t} SET status = $2::${this.t.enumSql},
             ship_date = CASE WHEN $2::${this.t.enumSql} = 'shipped' THEN current_date ELSE ship_date END
           WHERE id = $1`,
          [id, STATUSES[Math.floor(rnd() * STATUSES.length)]],
        );
        break;
      case 1:
        res = await c.query(`UPDATE ${t} SET amount = $2, price = $3 WHERE id = $1`, [
          id,
          rnd() < 0.1 ? null : (rnd() * 10000).toFixed(2),
          rnd() < 0.1 ? null : rnd() * 1000,
        ]);
        break;
      case 2:
        res = await c.query(
          `UPDATE ${t} SET note = $2 WHERE id = $1 AND (note IS NULL OR octet_length(note) <= ${TOAST_MIN_BYTES})`,
          [id, rnd() < 0.2 ? null : `updated ${id} ${randomHex(rnd, 8)}`],
        );
        break;
      case 3:
        res = await c.query(
          `UPDATE ${t} SET attrs = coalesce(attrs, '{}'::jsonb) || jsonb_build_object('touched', $2::int), tags = coalesce(tags, '{}') || $3::text WHERE id = $1`,
          [id, Math.floor(rnd() * 1000), `u${Math.floor(rnd() * 10)}`],
        );
        break;
      case 4:
        res = await c.query(`UPDATE ${t} SET flags = $2::varbit, active = $3, payload = $4 WHERE id = $1`, [
          id,
          randomBits(rnd),
          rnd() < 0.1 ? null : rnd() < 0.5,
          rnd() < 0.1 ? null : randomBytes(rnd, 1 + Math.floor(rnd() * 32)),
        ]);
        break;
      default:
        res = await c.query(`UPDATE ${t} SET customer_id = $2, ref = $3 WHERE id = $1`, [
          id,
          1 + Math.floor(rnd() * 50000),
          rnd() < 0.1 ? null : randomUuid(rnd),
        ]);
    }
    if (res.rowCount) this.stats.updates++;
    else this.stats.misses++;
  }

  private async doDelete(c: pg.Client, rnd: () => number): Promise<void> {
    const res = await c.query(`DELETE FROM ${this.t.sql} WHERE id = $1`, [this.randomId(rnd)]);
    if (res.rowCount) this.stats.deletes++;
    else this.stats.misses++;
  }

  private async doKeyChange(c: pg.Client, rnd: () => number): Promise<void> {
    const oldId = this.randomId(rnd);
    const newId = this.nextId++;
    const res = await c.query<{ toasted: boolean }>(
      `UPDATE ${this.t.sql} SET id = $1 WHERE id = $2 RETURNING coalesce(octet_length(note) > ${TOAST_MIN_BYTES}, false) AS toasted`,
      [newId, oldId],
    );
    if (res.rowCount) {
      this.stats.keyChanges++;
      if (res.rows[0].toasted) {
        const i = this.toastIds.indexOf(oldId);
        if (i >= 0) this.toastIds[i] = newId;
        else this.toastIds.push(newId);
      }
    } else {
      this.stats.misses++;
    }
  }

  /** update a row with a TOASTed note without touching note */
  private async doToastUpdate(c: pg.Client, rnd: () => number): Promise<void> {
    if (this.toastIds.length === 0) {
      // all known ones are gone: look again (once at a time), else do a normal update
      this.toastRefill ??= this.loadToastIds(c).finally(() => (this.toastRefill = undefined));
      await this.toastRefill;
      if (this.toastIds.length === 0) return this.doUpdate(c, rnd);
    }
    const idx = Math.floor(rnd() * this.toastIds.length);
    const id = this.toastIds[idx];
    const res = await c.query(
      `UPDATE ${this.t.sql} SET amount = coalesce(amount, 0) + 1, active = NOT coalesce(active, false)
       WHERE id = $1 AND octet_length(note) > ${TOAST_MIN_BYTES}`,
      [id],
    );
    if (res.rowCount) {
      this.stats.toastUpdates++;
    } else {
      this.stats.misses++;
      // deleted or moved: forget it (swap-remove; the index may have shifted meanwhile)
      const i = this.toastIds.indexOf(id);
      if (i >= 0) {
        this.toastIds[i] = this.toastIds[this.toastIds.length - 1];
        this.toastIds.pop();
      }
    }
  }

  /** BEGIN; 2-4 updates, an insert, a delete; COMMIT (ROLLBACK on error) */
  private async doTransaction(c: pg.Client, rnd: () => number): Promise<void> {
    const t = this.t.sql;
    const ids = Array.from({ length: 2 + Math.floor(rnd() * 3) }, () => this.randomId(rnd));
    let updates = 0;
    let misses = 0;
    let deletes = 0;
    await c.query('BEGIN');
    try {
      for (const id of ids) {
        const res = await c.query(`UPDATE ${t} SET amount = coalesce(amount, 0) + $2, status = 'paid' WHERE id = $1`, [
          id,
          (rnd() * 100).toFixed(2),
        ]);
        if (res.rowCount) updates++;
        else misses++;
      }
      const newId = this.nextId++;
      await c.query(`INSERT INTO ${t} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, randomRow(newId, rnd));
      const del = await c.query(`DELETE FROM ${t} WHERE id = $1`, [this.randomId(rnd)]);
      if (del.rowCount) deletes++;
      else misses++;
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    this.stats.transactions++;
    this.stats.updates += updates;
    this.stats.inserts++;
    this.stats.deletes += deletes;
    this.stats.misses += misses;
  }
}

// ---------------------------------------------------------------------------
// random values for inserts and updates

function randomHex(rnd: () => number, chars: number): string {
  let s = '';
  while (s.length < chars) s += Math.floor(rnd() * 0x100000000).toString(16).padStart(8, '0');
  return s.slice(0, chars);
}

function randomBytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function randomBits(rnd: () => number): string | null {
  if (rnd() < 0.1) return null;
  const n = 1 + Math.floor(rnd() * 8);
  let s = '';
  for (let i = 0; i < n; i++) s += rnd() < 0.5 ? '0' : '1';
  return s;
}

function randomUuid(rnd: () => number): string {
  const h = randomHex(rnd, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** parameter values in COLUMNS order for a new row */
function randomRow(id: number, rnd: () => number): unknown[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const maybe = <T>(p: number, v: () => T): T | null => (rnd() < p ? null : v());
  const toasted = rnd() < 1 / demoSettings.toastEvery;
  const note = toasted
    ? randomHex(rnd, demoSettings.toastNoteChars)
    : maybe(0.2, () => (rnd() < 0.05 ? `café ✓ new order ${id}` : `new order ${id} ${randomHex(rnd, 6)}`));
  return [
    id,
    1 + Math.floor(rnd() * 50000),
    pick(STATUSES),
    maybe(0.06, () => (rnd() * 10000).toFixed(2)),
    maybe(0.04, () => rnd() * 1000),
    note,
    maybe(0.09, () => (rnd() < 0.15 ? [] : [`t${Math.floor(rnd() * 13)}`, `c${Math.floor(rnd() * 5)}`])),
    maybe(0.08, () => JSON.stringify({ v: id, src: pick(['web', 'app', 'pos']), nested: { x: Math.floor(rnd() * 100) } })),
    maybe(0.05, () => randomUuid(rnd)),
    new Date(),
    maybe(0.33, () => new Date(Date.UTC(2024, 0, 1 + Math.floor(rnd() * 700))).toISOString().slice(0, 10)),
    maybe(0.03, () => randomBits(rnd) ?? '0'),
    maybe(0.03, () => rnd() < 0.5),
    maybe(0.11, () => randomBytes(rnd, 1 + Math.floor(rnd() * 16))),
  ];
}
