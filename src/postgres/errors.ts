/**
 * Classifies errors from PostgreSQL (source or destination) at the driver boundary, keeping the
 * server's fields (code, detail, hint) in the context.
 */
import { SluiceError, type ErrorCode } from '../core/errors.js';

interface PgLikeError {
  code?: string;
  detail?: string;
  hint?: string;
  message?: string;
  errno?: number;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN', 'ENETUNREACH', 'EPIPE']);

/** True for errors that mean the server is not there (or dropped the connection): worth a retry. */
export function isConnectionError(err: unknown): boolean {
  const e = err as PgLikeError & { code?: string };
  if (!e) return false;
  if (e.code && CONNECT_CODES.has(e.code)) return true;
  if (e.code && /^(08|57P0)/.test(e.code)) return true;
  const msg = e.message ?? '';
  return /Connection terminated|connection.*(closed|terminated)|Client has encountered a connection error|timeout expired|no data from the source|dead path/i.test(msg);
}

export function pgFields(err: unknown): Record<string, unknown> {
  const e = err as PgLikeError;
  const out: Record<string, unknown> = {};
  if (e?.code) out.sqlstate = e.code;
  if (e?.detail) out.detail = e.detail;
  if (e?.hint) out.hint = e.hint;
  return out;
}

/**
 * Wraps a connect failure into the error that names the fix. A server that is not there (refused,
 * timed out, starting up or shutting down) is retryable: a running pipeline waits for it to come
 * back; at start the CLI still exits 2 with this message.
 */
export function connectError(side: 'source' | 'destination', redactedUrl: string, err: unknown): SluiceError {
  const code: ErrorCode = side === 'source' ? 'SOURCE_UNREACHABLE' : 'DESTINATION_UNREACHABLE';
  const e = err as PgLikeError;
  let why = e?.message ?? String(err);
  if (e?.code === '28P01' || e?.code === '28000') why = `authentication failed (${why}); check the user and password in ${side}.url`;
  else if (e?.code === '3D000') why = `${why}; create the database or fix the database name in ${side}.url`;
  else why = `${why}; check that the server runs and ${side}.url is right`;
  return new SluiceError(code, `${side} ${redactedUrl}: cannot connect: ${why}`, {
    cause: err,
    context: pgFields(err),
    retryable: isConnectionError(err),
  });
}

/** The server or the path to it is gone (not a statement's own failure): waiting and reconnecting fixes it. */
export function isConnectionLoss(err: unknown): boolean {
  if (err instanceof SluiceError) {
    if (err.code === 'SOURCE_UNREACHABLE' || err.code === 'DESTINATION_UNREACHABLE') return err.retryable;
    return err.retryable && isConnectionError(err.cause);
  }
  return isConnectionError(err);
}

/** Classifies an error raised while talking to a connected server. */
export function classify(side: 'source' | 'destination', what: string, err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as PgLikeError;
  if (e?.code === '55006' && /replication slot/i.test(e.message ?? '')) {
    return new SluiceError(
      'SLOT_IN_USE',
      `${side}: ${e.message}; another consumer (or another sluice run of this pipeline) is reading the slot: stop it, or give this pipeline its own pipeline.slotName`,
      { cause: err, context: pgFields(err) },
    );
  }
  // The slot was dropped (42704) or invalidated (55000): reconnecting cannot bring it back.
  if ((e?.code === '42704' || e?.code === '55000') && /replication slot/i.test(e.message ?? '') && /does not exist|no longer get changes|invalidated/i.test(`${e.message} ${e.detail ?? ''}`)) {
    return new SluiceError('SLOT_LOST', `${side}: ${what}: ${e.message}${e.detail ? ` (${e.detail})` : ''}`, { cause: err, context: pgFields(err) });
  }
  const retryable = isConnectionError(err) || e?.code === '40001' || e?.code === '40P01' || e?.code === '55P03';
  const code: ErrorCode = side === 'source' ? 'SOURCE_ERROR' : 'DESTINATION_ERROR';
  const extra = e?.detail ? ` (${e.detail})` : '';
  return new SluiceError(code, `${side}: ${what}: ${e?.message ?? String(err)}${extra}`, {
    cause: err,
    retryable,
    context: pgFields(err),
  });
}

export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]+:)([^@]*)@/, '$1***@');
}
