/** Tables the backfill benchmark can load: the 14-column demo table, or a 9-column `orders` (jsonb included). */
import { createDemoTable } from '../src/demo/workload.js';
import { withClient } from './support.js';

export type BenchTable = 'demo' | 'orders9';

export function parseBenchTable(raw: string | undefined): BenchTable {
  const t = raw ?? 'demo';
  if (t !== 'demo' && t !== 'orders9') throw new Error(`--table: demo or orders9, not ${t}`);
  return t;
}

/**
 * `public.orders` with 9 mixed columns: bigint key, int, text, numeric, float8, timestamptz, bool,
 * a short text and a jsonb document (~120 bytes), filled in id order, 200,000 rows a statement.
 */
export async function createOrders9(url: string, rows: number): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(`CREATE TABLE public.orders (
      id          bigint PRIMARY KEY,
      customer_id int NOT NULL,
      status      text NOT NULL,
      amount      numeric(12,2),
      price       double precision,
      created_at  timestamptz NOT NULL,
      active      boolean,
      note        text,
      attrs       jsonb
    )`);
    for (let from = 1; from <= rows; from += 200_000) {
      const to = Math.min(rows, from + 199_999);
      await c.query(
        `INSERT INTO public.orders
         SELECT g, (g * 7919) % 100000, (ARRAY['new','paid','shipped','delivered','cancelled'])[1 + g % 5],
                round(((g * 37) % 100000) / 100.0, 2), (g % 1000) * 1.25,
                timestamptz '2024-01-01' + (g % 31536000) * interval '1 second', g % 3 <> 0,
                'order ' || g || ' for customer ' || (g * 7919) % 100000,
                jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', 1 + g % 9, 'gift', g % 7 = 0,
                                   'tags', jsonb_build_array('t' || g % 11, 't' || g % 13), 'score', (g % 997) / 10.0)
           FROM generate_series($1::int8, $2::int8) g`,
        [from, to],
      );
    }
  });
}

export async function createBenchTable(kind: BenchTable, url: string, rows: number): Promise<void> {
  if (kind === 'demo') await createDemoTable(url, { rows });
  else await createOrders9(url, rows);
}
