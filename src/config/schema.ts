/**
 * The shape of sluice.yaml: one zod schema per section, every object strict (an unknown key is an
 * error, so a typo never silently falls back to a default), and every default lives here.
 * docs/configuration.md describes each key; keep the two in step.
 *
 * Loading (env expansion, YAML, overrides, readable errors) is in load.ts.
 */
import { z } from 'zod';
import { SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';

const POSTGRES_URL = /^postgres(ql)?:\/\//;
/** One or more NATS server URLs, comma-separated: `nats://a:4222,nats://b:4222`. */
const NATS_URLS = /^\s*nats:\/\/[^,\s]+(\s*,\s*nats:\/\/[^,\s]+)*\s*$/;
/** A JetStream stream name: no whitespace, '.', '*', '>' or path separators. */
const STREAM_NAME = /^[A-Za-z0-9_-]{1,200}$/;

function postgresUrl() {
  return z.string().regex(POSTGRES_URL, { error: 'must be a URL starting with postgres:// or postgresql://' });
}

export const PIPELINE_NAME = /^[a-z][a-z0-9_]{0,40}$/;
/** PostgreSQL's rule for replication slot names: lower case letters, digits, underscore, ≤ 63. */
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;
/** An unquoted lower-case identifier, so it can be used in SQL without quoting. */
const PUBLICATION_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export const pipelineSchema = z
  .object({
    name: z.string().regex(PIPELINE_NAME, {
      error:
        'must be 1-41 characters of lower-case letters, digits and _, starting with a letter ' +
        '(it is used in replication slot and publication names)',
    }),
    concurrency: z.number().int().min(1).default(10),
    /** Chunk workers shared by all backfilling tables (each holds a source and a destination connection). */
    workers: z.number().int().min(1).max(64).default(4),
    /** Replication slot name; defaults to `sluice_<name>` (see `slotNameOf`). */
    slotName: z
      .string()
      .regex(SLOT_NAME, { error: 'must be 1-63 characters of lower-case letters, digits and _ (PostgreSQL slot name rules)' })
      .optional(),
    /** Publication name; defaults to `sluice_<name>` (see `publicationNameOf`). */
    publicationName: z
      .string()
      .regex(PUBLICATION_NAME, {
        error: 'must be 1-63 characters of lower-case letters, digits and _, not starting with a digit',
      })
      .optional(),
    heartbeatIntervalMs: z.number().int().min(100).default(10_000),
    statusIntervalMs: z.number().int().min(100).default(1_000),
    /**
     * A statement that has heard nothing from its server for this long is checked from a second
     * connection; a dead path, a vanished session or a lost reply drops the connection and the work
     * is retried. A statement still running or waiting for a lock is left alone. 0 turns it off.
     */
    deadConnectionCheckMs: z.number().int().min(0).default(30_000),
  })
  .strict();

export const sourceSchema = z
  .object({
    type: z.literal('postgres'),
    url: postgresUrl(),
    replicaUrl: postgresUrl().optional(),
    /**
     * What `sluice run` does when the replication slot was dropped or invalidated (changes since its
     * last position are gone): `stop` (exit 2 and say how to recover) or `rebackfill` (recreate the
     * slot and reload every table online).
     */
    onSlotLost: z.enum(['stop', 'rebackfill']).default('stop'),
    /**
     * The replication connection is treated as dead (dropped and opened again) after this long
     * without a byte from the source; a ping is sent after half of it. 0 turns the check off.
     */
    replicationTimeoutMs: z.number().int().min(0).default(60_000),
  })
  .strict();

export const postgresDestinationSchema = z
  .object({
    type: z.literal('postgres'),
    url: postgresUrl(),
    schema: z.string().min(1).default('public'),
  })
  .strict();

/** A DuckDB database file (created when absent); sluice holds it for the run (one writer per file). */
export const duckdbDestinationSchema = z
  .object({
    type: z.literal('duckdb'),
    path: z.string().min(1),
    schema: z.string().min(1).default('main'),
  })
  .strict();

export const destinationSchema = z.discriminatedUnion('type', [postgresDestinationSchema, duckdbDestinationSchema]);

export const embeddedLogSchema = z
  .object({
    type: z.literal('embedded'),
    /** Directory of the change log; defaults to `.sluice/<pipeline.name>` (filled in by configSchema). */
    path: z.string().min(1).optional(),
    fsync: z.boolean().default(true),
  })
  .strict();

export const jetstreamLogSchema = z
  .object({
    type: z.literal('jetstream'),
    url: z.string().regex(NATS_URLS, { error: 'must be one or more URLs starting with nats://, comma-separated' }),
    /** Copies of the stream on the cluster's servers; a flush is durable once a quorum stored it. */
    replicas: z.number().int().min(1).max(5).default(3),
    /** Stream name; defaults to `SLUICE_<pipeline.name>`. */
    stream: z.string().regex(STREAM_NAME, { error: 'must be 1-200 letters, digits, _ or -' }).optional(),
  })
  .strict();

export const logSchema = z.discriminatedUnion('type', [embeddedLogSchema, jetstreamLogSchema]);

const nonNegative = () => z.number().min(0).default(0);

export const throttleSchema = z
  .object({
    maxRowsPerSecond: nonNegative(),
    maxChunksPerSecond: nonNegative(),
    maxActiveSessions: nonNegative(),
    maxReplicaLagSeconds: nonNegative(),
    maxSlotLagBytes: nonNegative(),
    query: z.string().default(''),
  })
  .strict();

export const applySchema = z
  .object({
    batchRows: z.number().int().min(1).default(20_000),
    /** Most bytes of stored rows (the change log's encoding) applied in one batch. */
    batchBytes: z.number().int().min(1024).default(1 << 20),
    flushIntervalMs: z.number().int().min(1).default(200),
  })
  .strict();

/** Online backfills: the swap's lock budget and how long the replaced table is kept. */
export const onlineSchema = z
  .object({
    /** Hours the replaced table is kept under its archive name before it is dropped. */
    archiveRetentionHours: z.number().min(0).default(24),
    /** lock_timeout of the swap transaction; on timeout it rolls back and retries with backoff. */
    swapLockTimeoutMs: z.number().int().min(1).default(100),
    /** Refuse an online backfill when the destination has less free space than this many times the live table's size (when it can tell). */
    minFreeSpaceRatio: z.number().min(0).default(1.2),
    /** The schema the swap moves replaced tables into (created when missing). */
    archiveSchema: z
      .string()
      .min(1)
      .refine((s) => Buffer.byteLength(s) <= 63, 'at most 63 bytes (a PostgreSQL identifier)')
      .refine((s) => s !== '_sluice' && !s.startsWith('pg_') && s !== 'information_schema', 'not _sluice, information_schema or a pg_ schema')
      .default('sluice_archive'),
    /** Warn (log after a swap, `status`) when the destination's free space, when it can tell, is under this percentage of its disk. */
    lowFreeSpacePercent: z.number().min(0).max(100).default(10),
  })
  .strict();

/**
 * The operator's HTTP surface (`sluice run --http`): off unless `api` is given. A non-loopback
 * `listen` needs a `token` (checked at start, exit 2). Tokens may also come from the environment
 * (SLUICE_API_TOKEN, SLUICE_API_READ_ONLY_TOKEN).
 */
export const apiSchema = z
  .object({
    /** host:port to listen on; loopback by default. */
    listen: z.string().min(1).default('127.0.0.1:7433'),
    /** Bearer token for every request; when absent, one is generated per start into a 0600 file. */
    token: z.string().min(16, 'at least 16 characters').optional(),
    /** A token that may read (status, events, metrics, runs, requests) but not act. */
    readOnlyToken: z.string().min(16, 'at least 16 characters').optional(),
    /** Host header values accepted besides the loopback names and the listen host (DNS-rebinding guard). */
    allowedHosts: z.array(z.string().min(1)).default([]),
  })
  .strict();

/** A webhook: where lifecycle events matching its patterns are POSTed, signed with its secret. */
export const webhookSchema = z
  .object({
    url: z.string().regex(/^https?:\/\//, { error: 'must be a URL starting with http:// or https://' }),
    /** Event names or patterns: `backfill.*`, `swap.completed`, `*` (every event). */
    events: z.array(z.string().regex(/^(\*|[a-z_]+\.(\*|[a-z_]+))$/, { error: 'an event name, `<group>.*` or `*`' })).min(1).default(['*']),
    /** The HMAC-SHA256 key of the X-Sluice-Signature header; or `secretEnv`, the environment variable holding it. */
    secret: z.string().min(16, { error: 'at least 16 characters' }).optional(),
    secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
    /** How long one delivery attempt may take. */
    timeoutMs: z.number().int().min(100).default(10_000),
    /** Attempts before a delivery is marked failed (backoff 1 s, 2 s, 4 s … up to 5 min between them). */
    maxAttempts: z.number().int().min(1).max(50).default(10),
  })
  .strict()
  .refine((w) => (w.secret === undefined) !== (w.secretEnv === undefined), { error: 'set one of secret or secretEnv (the key that signs each delivery)' });

/** Lifecycle notifications: webhooks, executable hooks, and the thresholds of the lag and slot events. */
export const notifySchema = z
  .object({
    webhooks: z.array(webhookSchema).default([]),
    /** A directory of executables `sluice-on-<event>` (gh-ost style), run with the event as JSON on stdin. */
    hooksDir: z.string().min(1).optional(),
    /** A hook still running after this long is killed (and logged). */
    hookTimeoutMs: z.number().int().min(100).default(30_000),
    /** The delivery log (SQLite); default `<log.path>/notify.db`. */
    path: z.string().min(1).optional(),
    /** lag.exceeded when a table's apply lag passes this many seconds (lag.recovered when back under); 0: never. */
    lagSeconds: z.number().min(0).default(60),
    /** slot.retained_exceeded when the replication slot retains more WAL than this; 0: never. */
    slotRetainedBytes: z.number().min(0).default(0),
    /** catchup.not_converging when a catching-up table's backlog has not shrunk for this long. */
    notConvergingSeconds: z.number().min(1).default(300),
  })
  .strict();

export const BACKFILL_STRATEGIES = ['keyset', 'interval', 'ctid', 'daterange'] as const;
export const BACKFILL_MODES = ['online', 'upsert', 'truncate', 'drop'] as const;
export const INDEX_POLICIES = ['source', 'none'] as const;

export const tableSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .refine(
        (name) => {
          try {
            TableName.parse(name);
            return true;
          } catch {
            return false;
          }
        },
        { error: 'must be "table" or "schema.table"' },
      ),
    strategy: z.enum(BACKFILL_STRATEGIES).default('keyset'),
    /** daterange: the timestamptz, timestamp or date column (indexed) whose time ranges the chunks are. */
    dateColumn: z.string().min(1).optional(),
    chunkRows: z.number().int().min(1).default(10_000),
    /** Target duration of a chunk's statements; chunk sizes adapt towards it (0 = fixed chunkRows). */
    chunkSeconds: z.number().min(0).default(2),
    parallelism: z.number().int().min(1).default(1),
    where: z.string().default(''),
    mode: z.enum(BACKFILL_MODES).default('online'),
    /** When sluice creates the destination table: build the source's secondary indexes after the load, or none. */
    indexes: z.enum(INDEX_POLICIES).default('source'),
  })
  .strict();

/** `schema.table` for a configured table name, qualified with `public` when it has no schema. */
export function qualifiedTableName(name: string): string {
  return TableName.format(TableName.parse(name, 'public'));
}

export interface DuplicateTable {
  /** `schema.table` */
  qualified: string;
  /** Index of the first entry naming the table. */
  first: number;
  /** Index of the later entry naming it again. */
  index: number;
}

/** Entries of a (raw or parsed) `tables` list that name the same table after qualification with `public`. */
export function findDuplicateTables(tables: readonly unknown[]): DuplicateTable[] {
  const seen = new Map<string, number>();
  const out: DuplicateTable[] = [];
  tables.forEach((t, index) => {
    const name = typeof t === 'string' ? t : (t as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') return;
    let qualified: string;
    try {
      qualified = qualifiedTableName(name);
    } catch {
      return;
    }
    const first = seen.get(qualified);
    if (first === undefined) seen.set(qualified, index);
    else out.push({ qualified, first, index });
  });
  return out;
}

export function duplicateTableMessage(d: DuplicateTable): string {
  return `duplicate table ${d.qualified}: tables[${d.first}] and tables[${d.index}] name the same table`;
}

// zod skips this check when an entry has a type error; load.ts then runs findDuplicateTables on
// the raw input so duplicates are still reported together with the other issues.
export const tablesSchema = z
  // `tables: [public.album, public.track]` is short for `[{ name: public.album }, …]`.
  .array(z.preprocess((t) => (typeof t === 'string' ? { name: t } : t), tableSchema))
  .min(1)
  .superRefine((tables, ctx) => {
    for (const d of findDuplicateTables(tables)) {
      ctx.addIssue({ code: 'custom', path: [d.index, 'name'], message: duplicateTableMessage(d) });
    }
  });

const baseSchema = z
  .object({
    pipeline: pipelineSchema,
    source: sourceSchema,
    destination: destinationSchema,
    log: logSchema.prefault({ type: 'embedded' }),
    throttle: throttleSchema.prefault({}),
    apply: applySchema.prefault({}),
    online: onlineSchema.prefault({}),
    api: apiSchema.optional(),
    notify: notifySchema.prefault({}),
    tables: tablesSchema,
  })
  .strict();

type BaseOutput = z.output<typeof baseSchema>;
export type EmbeddedLogConfig = Omit<z.output<typeof embeddedLogSchema>, 'path'> & { path: string };
export type JetstreamLogConfig = z.output<typeof jetstreamLogSchema>;
export type LogConfig = EmbeddedLogConfig | JetstreamLogConfig;

/** The parsed configuration with every default applied. */
export type SluiceConfig = Omit<BaseOutput, 'log'> & { log: LogConfig };

/** The whole sluice.yaml schema. Parsing fills every default, including `log.path`. */
export const configSchema = baseSchema.transform((cfg): SluiceConfig => {
  if (cfg.log.type === 'embedded') {
    return { ...cfg, log: { ...cfg.log, path: cfg.log.path ?? `.sluice/${cfg.pipeline.name}` } };
  }
  return { ...cfg, log: cfg.log };
});

/** What a sluice.yaml may contain (defaulted keys optional). */
export type ConfigInput = z.input<typeof configSchema>;

export type PipelineConfig = SluiceConfig['pipeline'];
export type SourceConfig = SluiceConfig['source'];
export type DestinationConfig = SluiceConfig['destination'];
export type PostgresDestinationConfig = Extract<DestinationConfig, { type: 'postgres' }>;
export type DuckDbDestinationConfig = Extract<DestinationConfig, { type: 'duckdb' }>;

/**
 * The URL of a PostgreSQL destination, for the parts of sluice that still speak PostgreSQL to the
 * destination themselves (docs/architecture.md, "Ports", what is left); a DuckDB destination there
 * is a usage error naming what it cannot do yet.
 */
export function postgresDestinationUrl(d: DestinationConfig, what: string): string {
  if (d.type === 'postgres') return d.url;
  throw new SluiceError(
    'CONFIG_INVALID',
    `destination.type: ${what} works with a PostgreSQL destination only for now; a DuckDB destination (${d.path}) is not supported there yet — use a postgres destination for it`,
    { context: { type: d.type } },
  );
}
export type ThrottleConfig = SluiceConfig['throttle'];
export type ApplyConfig = SluiceConfig['apply'];
export type OnlineConfig = SluiceConfig['online'];
export type TableConfig = SluiceConfig['tables'][number];
export type ApiConfig = z.output<typeof apiSchema>;
export type NotifyConfig = SluiceConfig['notify'];
export type WebhookConfig = NotifyConfig['webhooks'][number];

/** The replication slot name: `pipeline.slotName`, or `sluice_<pipeline.name>`. */
export function slotNameOf(cfg: Pick<SluiceConfig, 'pipeline'>): string {
  return cfg.pipeline.slotName ?? `sluice_${cfg.pipeline.name}`;
}

/** The publication name: `pipeline.publicationName`, or `sluice_<pipeline.name>`. */
export function publicationNameOf(cfg: Pick<SluiceConfig, 'pipeline'>): string {
  return cfg.pipeline.publicationName ?? `sluice_${cfg.pipeline.name}`;
}

/**
 * The keys allowed in the object at `path` (numbers for list indexes), for "did you mean"
 * hints. `value` is the object itself (needed for `log`, whose keys depend on its type).
 */
export function allowedKeysAt(path: readonly PropertyKey[], value: unknown): string[] | undefined {
  const p = path.map((k) => (typeof k === 'number' ? '[]' : String(k))).join('.');
  switch (p) {
    case '':
      return Object.keys(baseSchema.shape);
    case 'pipeline':
      return Object.keys(pipelineSchema.shape);
    case 'source':
      return Object.keys(sourceSchema.shape);
    case 'destination': {
      const type = (value as { type?: unknown } | null)?.type;
      return Object.keys(type === 'duckdb' ? duckdbDestinationSchema.shape : postgresDestinationSchema.shape);
    }
    case 'log': {
      const type = (value as { type?: unknown } | null)?.type;
      return Object.keys(type === 'jetstream' ? jetstreamLogSchema.shape : embeddedLogSchema.shape);
    }
    case 'throttle':
      return Object.keys(throttleSchema.shape);
    case 'apply':
      return Object.keys(applySchema.shape);
    case 'online':
      return Object.keys(onlineSchema.shape);
    case 'api':
      return Object.keys(apiSchema.shape);
    case 'tables.[]':
      return Object.keys(tableSchema.shape);
    case 'notify':
      return Object.keys(notifySchema.shape);
    case 'notify.webhooks.[]':
      return Object.keys(webhookSchema.shape);
    default:
      return undefined;
  }
}
