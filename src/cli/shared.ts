/** What every command shares: config loading, the logger, exit codes. */
import { loadConfig, redactConfig } from '../config/load.js';
import type { SluiceConfig } from '../config/schema.js';
import { SluiceError, errorMessage } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';

export interface GlobalOptions {
  config: string;
  logFormat?: 'json' | 'pretty';
  verbose?: boolean;
}

export function makeLogger(opts: GlobalOptions, write?: (line: string) => void): Logger {
  const format = opts.logFormat ?? (process.env.SLUICE_LOG_FORMAT === 'json' ? 'json' : 'pretty');
  return createLogger({ level: opts.verbose ? 'debug' : 'info', format, write });
}

export function readConfig(opts: GlobalOptions): SluiceConfig {
  return loadConfig(opts.config, { env: process.env });
}

export { redactConfig };

/** Exit codes: 0 success; 1 a difference or a failed run; 2 bad usage, bad config or an environment that cannot work. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof SluiceError) return err.isUsageError ? 2 : 1;
  return 1;
}

export function reportError(err: unknown): void {
  const code = err instanceof SluiceError ? ` [${err.code}]` : '';
  process.stderr.write(`sluice: ${errorMessage(err)}${code}\n`);
  if (process.env.SLUICE_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
}
