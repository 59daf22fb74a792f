/**
 * Connecting to NATS and making sure the pipeline's stream exists with the settings sluice needs;
 * every failure a user can meet becomes a SluiceError naming the fix.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { SluiceError } from '../../core/errors.js';
import type { LogNames } from './segment.js';

export interface StreamOptions {
  /** Server URLs, comma-separated (`nats://a:4222,nats://b:4222`). */
  readonly url: string;
  readonly replicas: number;
  /** Bytes the stream may hold (-1: no limit). A full stream refuses publishes, so capture stops instead of history being dropped. */
  readonly maxBytes?: number;
  /** How long connecting may take before the servers count as unreachable. */
  readonly connectTimeoutMs?: number;
}

/** How long the server remembers a publish id: longer than any publish retry (a flush retried after a lost quorum). */
const DUPLICATE_WINDOW_NS = 10 * 60 * 1e9;

export function servers(url: string): string[] {
  return url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export async function connectNats(opts: StreamOptions): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: servers(opts.url),
      name: 'sluice',
      timeout: opts.connectTimeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  } catch (err) {
    throw new SluiceError(
      'CHANGELOG_UNREACHABLE',
      `change log: cannot reach NATS at ${opts.url} (${(err as Error).message}): start nats-server there or fix log.url`,
      { cause: err, context: { url: opts.url } },
    );
  }
  try {
    return { nc, jsm: await jetstreamManager(nc) };
  } catch (err) {
    await nc.close().catch(() => {});
    // A cluster still electing its JetStream leader answers nothing for a while: retried, not refused.
    if (/timeout|temporarily unavailable/i.test((err as Error).message)) {
      throw new SluiceError(
        'CHANGELOG_NO_QUORUM',
        `change log: JetStream at ${opts.url} does not answer (${(err as Error).message}): the cluster has no leader yet; ` +
          `start the stopped NATS servers (a cluster of 3 needs 2); sluice retries`,
        { cause: err, retryable: true, context: { url: opts.url } },
      );
    }
    throw new SluiceError(
      'CHANGELOG_UNREACHABLE',
      `change log: NATS at ${opts.url} runs without JetStream (${(err as Error).message}): start nats-server with -js ` +
        `(or a jetstream block in its config), or point log.url at servers that have it`,
      { cause: err, context: { url: opts.url } },
    );
  }
}

/** What sluice needs of the stream; compared with an existing stream's settings. */
export function wantedStream(names: LogNames, opts: StreamOptions): Partial<StreamConfig> & { name: string } {
  return {
    name: names.stream,
    subjects: [`${names.prefix}.>`],
    storage: 'file' as StreamConfig['storage'],
    retention: 'limits' as StreamConfig['retention'],
    discard: 'new' as StreamConfig['discard'],
    num_replicas: opts.replicas,
    max_bytes: opts.maxBytes ?? -1,
    duplicate_window: DUPLICATE_WINDOW_NS,
    allow_direct: true,
  };
}

/** Creates the stream, or checks that the one that exists has sluice's settings. */
export async function ensureStream(jsm: JetStreamManager, names: LogNames, opts: StreamOptions): Promise<void> {
  const want = wantedStream(names, opts);
  let have: StreamConfig | null = null;
  try {
    have = (await jsm.streams.info(names.stream)).config;
  } catch (err) {
    if (apiCode(err) !== 10059) throw unavailable(names, 'cannot read the stream', err);
  }
  if (have) {
    const differ = streamDifferences(have, want);
    if (differ.length === 0) return;
    throw new SluiceError(
      'CONFIG_INVALID',
      `change log: stream ${names.stream} exists with other settings (${differ.join('; ')}): set log.stream to another name, ` +
        `or remove the stream if it holds nothing still needed (nats stream rm ${names.stream})`,
      { context: { stream: names.stream, differ } },
    );
  }
  try {
    await jsm.streams.add(want);
  } catch (err) {
    const code = apiCode(err);
    if (code === 10074 || code === 10023 || /insufficient resources|replicas/i.test((err as Error).message)) {
      throw new SluiceError(
        'CONFIG_INVALID',
        `log.replicas: ${opts.replicas} is more than the NATS cluster at ${opts.url} can place (${(err as Error).message}): ` +
          `lower log.replicas to the number of JetStream servers, or add servers`,
        { cause: err, context: { stream: names.stream, replicas: opts.replicas } },
      );
    }
    throw unavailable(names, 'cannot create the stream', err);
  }
}

/** The settings of `have` that are not what sluice wants, in words. */
export function streamDifferences(have: Partial<StreamConfig>, want: Partial<StreamConfig>): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(have.subjects, want.subjects)) out.push(`subjects ${JSON.stringify(have.subjects)}, sluice uses ${JSON.stringify(want.subjects)}`);
  for (const key of ['storage', 'retention', 'discard', 'num_replicas', 'max_bytes'] as const) {
    if (!same(have[key], want[key])) out.push(`${key} ${String(have[key])}, sluice uses ${String(want[key])}`);
  }
  if (have.allow_direct !== true) out.push('allow_direct off, sluice reads with direct gets');
  return out;
}

/** The JetStream API error code (10071: wrong last sequence, 10059: stream not found), or undefined. */
export function apiCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; api_error?: { err_code?: number } };
  if (e?.api_error?.err_code) return e.api_error.err_code;
  return typeof e?.code === 'number' ? e.code : undefined;
}

export function unavailable(names: LogNames, what: string, err: unknown): SluiceError {
  return new SluiceError(
    'CHANGELOG_NO_QUORUM',
    `change log stream ${names.stream}: ${what} (${(err as Error).message}); the stream has no leader or the servers are away: ` +
      `start the stopped NATS servers (a stream with replicas 3 needs 2 of 3); sluice retries`,
    { cause: err, retryable: true, context: { stream: names.stream } },
  );
}

/** The error of a capturer whose publish the stream refused: another one wrote since. */
export function fenced(names: LogNames, err: unknown): SluiceError {
  return new SluiceError(
    'CHANGELOG_FENCED',
    `change log stream ${names.stream}: another capturer wrote to the stream (${(err as Error).message}); this one stops without ` +
      `acknowledging anything more. Only one sluice may capture a pipeline: stop the other, or let it go on alone`,
    { cause: err, context: { stream: names.stream } },
  );
}
