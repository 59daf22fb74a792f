/**
 * A small structured logger with children (`log.child({ table })`). Lines go to one sink:
 * JSON for machines (SLUICE_LOG_FORMAT=json) or a compact human line for terminals.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: Level;
  format?: 'json' | 'pretty';
  write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions = {}, bound: Record<string, unknown> = {}): Logger {
  const min = ORDER[opts.level ?? 'info'];
  const format = opts.format ?? 'pretty';
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const all = { ...bound, ...fields };
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }, jsonSafe));
    } else {
      const ctx = Object.entries(all)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, jsonSafe)}`)
        .join(' ');
      const tag = level === 'info' ? '' : `${level.toUpperCase()} `;
      write(`${new Date().toISOString().slice(11, 23)} ${tag}${msg}${ctx ? '  ' + ctx : ''}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(opts, { ...bound, ...fields }),
  };
}

function jsonSafe(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
