/**
 * The value a column the source gained gave the rows it already had: its DEFAULT when that is a
 * constant (PostgreSQL fills existing rows with it), as text. A DEFAULT that is an expression
 * (`now()`, a sequence) has no value sluice can know here: existing rows get NULL in DuckDB until a
 * change rewrites them (docs/configuration.md, "DuckDB destination").
 */
export function literalDefault(defaultSql: string | null): string | null {
  if (defaultSql === null) return null;
  const quoted = /^'((?:[^']|'')*)'(?:::[\w\s."[\]()]+)?$/.exec(defaultSql);
  if (quoted) return quoted[1].replace(/''/g, "'");
  const number = /^\(?(-?\d+(?:\.\d+)?)\)?(?:::[\w\s]+)?$/.exec(defaultSql);
  if (number) return number[1];
  if (defaultSql === 'true' || defaultSql === 'false') return defaultSql;
  return null;
}
