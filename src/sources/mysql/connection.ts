/**
 * Connections to a MariaDB/MySQL source with mysql2 (authentication, TLS from the URL's `ssl`
 * parameter), set up so that every value arrives losslessly: BIGINT and DECIMAL as strings,
 * temporal values as the server's text, JSON as its text, binary strings as Buffers. Identifier quoting with
 * backticks lives here too. Connect failures become SOURCE_UNREACHABLE with the fix.
 */
import mysql, { type Connection } from 'mysql2/promise';
import { SluiceError } from '../../core/errors.js';
import type { TableName } from '../../core/types.js';
import { isConnectionError, mysqlFields } from './errors.js';

/** The URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

export async function connectSource(url: string, applicationName: string): Promise<Connection> {
  try {
    const conn = await mysql.createConnection({
      uri: url,
      supportBigNumbers: true,
      bigNumberStrings: true,
      decimalNumbers: false,
      dateStrings: true,
      jsonStrings: true,
      timezone: 'Z',
      connectAttributes: { program_name: applicationName },
    });
    // Session time zone UTC: TIMESTAMP values read and logged the same way.
    await conn.query(`SET SESSION time_zone = '+00:00'`);
    return conn;
  } catch (err) {
    const e = err as { errno?: number; message?: string };
    let why = e?.message ?? String(err);
    if (e?.errno === 1045) why = `authentication failed (${why}); check the user and password in source.url`;
    else if (e?.errno === 1049) why = `${why}; fix the database name in source.url`;
    else why = `${why}; check that the server runs and source.url is right`;
    throw new SluiceError('SOURCE_UNREACHABLE', `source ${redactUrl(url)}: cannot connect: ${why}`, {
      cause: err,
      context: mysqlFields(err),
      retryable: isConnectionError(err),
    });
  }
}

/** A MariaDB identifier in backticks (valid whatever the sql_mode). */
export function quoteName(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

/** `database`.`table`: sluice's schema.table is MariaDB's database.table. */
export function qualifiedName(t: TableName): string {
  return `${quoteName(t.schema)}.${quoteName(t.name)}`;
}
