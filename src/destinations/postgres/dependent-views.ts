/**
 * Views that a `--mode drop --cascade` reload drops with its table, and how to create them again
 * once the table is recreated: plain views (and views on those), with their options, owner and
 * grants, from their own definition text. Materialized views are not recreated (they would be
 * filled from a table still empty); the reload names them.
 */
import type pg from 'pg';
import type { Logger } from '../../core/logger.js';
import { TableName } from '../../core/types.js';
import { qualified, quoteIdent } from './dialect.js';

export interface DependentView {
  readonly name: TableName;
  readonly materialized: boolean;
  readonly statements: readonly string[];
}

/** The views on `table`, directly or through other views, in an order that creates each after what it reads. */
export async function dependentViews(client: pg.ClientBase, table: TableName): Promise<DependentView[]> {
  const r = await client.query(
    `WITH RECURSIVE v(oid, depth) AS (
       SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
          AND d.refobjid = to_regclass($1) AND r.ev_class <> d.refobjid
       UNION
       SELECT r.ev_class, v.depth + 1 FROM v JOIN pg_depend d ON d.refobjid = v.oid AND d.classid = 'pg_rewrite'::regclass
         AND d.refclassid = 'pg_class'::regclass JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> v.oid
     )
     SELECT n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized, pg_get_viewdef(c.oid) AS def,
            coalesce(c.reloptions, '{}') AS options, pg_get_userbyid(c.relowner) AS owner, max(v.depth) AS depth,
            ARRAY(SELECT a.privilege_type || ' TO ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                         || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
                    FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) AS grants
       FROM v JOIN pg_class c ON c.oid = v.oid JOIN pg_namespace n ON n.oid = c.relnamespace
      GROUP BY c.oid, n.nspname
      ORDER BY max(v.depth), n.nspname, c.relname`,
    [qualified(table)],
  );
  return r.rows.map((x) => {
    const name = { schema: x.schema as string, name: x.name as string };
    const q = qualified(name);
    const opts = (x.options as string[]).length ? ` WITH (${(x.options as string[]).join(', ')})` : '';
    return {
      name,
      materialized: x.materialized as boolean,
      statements: [
        `CREATE VIEW ${q}${opts} AS ${(x.def as string).replace(/;\s*$/, '')}`,
        `ALTER VIEW ${q} OWNER TO ${quoteIdent(x.owner as string)}`,
        ...(x.grants as string[]).map((g) => `GRANT ${g.replace(' TO ', ` ON ${q} TO `)}`),
      ],
    };
  });
}

/** Creates the plain views again, each under a savepoint: one that no longer fits is skipped with a warning. */
export async function recreateViews(client: pg.ClientBase, views: readonly DependentView[], log: Logger): Promise<void> {
  for (const v of views) {
    const name = TableName.format(v.name);
    if (v.materialized) {
      log.warn('mode drop --cascade: a materialized view was dropped with the table and is not recreated; create it again', { view: name });
      continue;
    }
    try {
      await client.query('SAVEPOINT sluice_view');
      for (const s of v.statements) await client.query(s);
      await client.query('RELEASE SAVEPOINT sluice_view');
      log.info('mode drop --cascade: view created again', { view: name });
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT sluice_view');
      log.warn('mode drop --cascade: could not create a view again; create it by hand', { view: name, sql: v.statements.join('; '), error: (err as Error).message });
    }
  }
}
