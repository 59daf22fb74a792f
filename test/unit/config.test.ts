import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceError } from '../../src/core/errors.js';
import { expandEnv, loadConfig, parseConfig, redactConfig, redactUrl, formatPath } from '../../src/config/load.js';
import { slotNameOf, publicationNameOf } from '../../src/config/schema.js';

const MINIMAL = `
pipeline: { name: app }
source: { type: postgres, url: "postgres://u:secret@src:5432/db" }
destination: { type: postgres, url: "postgresql://u:pw@dst/db" }
tables:
  - name: orders
`;

function configError(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SluiceError, `expected a SluiceError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

test('a minimal config gets every default', () => {
  const cfg = parseConfig(MINIMAL, { env: {} });
  assert.deepEqual(cfg.pipeline, { name: 'app', concurrency: 10, workers: 4, heartbeatIntervalMs: 10000, statusIntervalMs: 1000, deadConnectionCheckMs: 30000 });
  assert.equal(slotNameOf(cfg), 'sluice_app');
  assert.equal(publicationNameOf(cfg), 'sluice_app');
  assert.deepEqual(cfg.source, { type: 'postgres', url: 'postgres://u:secret@src:5432/db', onSlotLost: 'stop', replicationTimeoutMs: 60000 });
  assert.deepEqual(cfg.destination, { type: 'postgres', url: 'postgresql://u:pw@dst/db', schema: 'public' });
  assert.deepEqual(cfg.log, { type: 'embedded', path: '.sluice/app', fsync: true });
  assert.deepEqual(cfg.throttle, {
    maxRowsPerSecond: 0,
    maxChunksPerSecond: 0,
    maxActiveSessions: 0,
    maxReplicaLagSeconds: 0,
    maxSlotLagBytes: 0,
    query: '',
  });
  assert.deepEqual(cfg.apply, { batchRows: 20000, batchBytes: 1048576, flushIntervalMs: 200 });
  assert.deepEqual(cfg.tables, [
    { name: 'orders', strategy: 'keyset', chunkRows: 10000, chunkSeconds: 2, parallelism: 1, where: '', mode: 'online', indexes: 'source' },
  ]);
  assert.deepEqual(cfg.online, { archiveRetentionHours: 24, swapLockTimeoutMs: 100, minFreeSpaceRatio: 1.2, archiveSchema: 'sluice_archive', lowFreeSpacePercent: 10 });
});

test('a complete config keeps its values', () => {
  const cfg = parseConfig(
    `
pipeline: { name: app_2, concurrency: 4, slotName: my_slot, publicationName: my_pub, heartbeatIntervalMs: 500, statusIntervalMs: 250 }
source: { type: postgres, url: postgres://a@h/db, replicaUrl: postgres://a@r/db }
destination: { type: postgres, url: postgres://b@h/db2, schema: mirror }
log: { type: embedded, path: /var/lib/sluice, fsync: false }
throttle: { maxRowsPerSecond: 5000, maxActiveSessions: 20, maxReplicaLagSeconds: 30, maxSlotLagBytes: 1e9, query: "select 1" }
apply: { batchRows: 100, flushIntervalMs: 50 }
tables:
  - { name: public.orders, strategy: keyset, chunkRows: 500, parallelism: 2, where: "id > 0", mode: upsert }
  - { name: sales.items, mode: drop }
`,
    { env: {} },
  );
  assert.equal(slotNameOf(cfg), 'my_slot');
  assert.equal(publicationNameOf(cfg), 'my_pub');
  assert.equal(cfg.source.replicaUrl, 'postgres://a@r/db');
  assert.equal(cfg.destination.schema, 'mirror');
  assert.deepEqual(cfg.log, { type: 'embedded', path: '/var/lib/sluice', fsync: false });
  assert.equal(cfg.throttle.maxSlotLagBytes, 1e9);
  assert.equal(cfg.tables[0].mode, 'upsert');
  assert.equal(cfg.tables[1].strategy, 'keyset');
});

test('an unknown top-level key is reported with its path', () => {
  const err = configError(() => parseConfig(`${MINIMAL}\ntabels: []\n`, { env: {} }));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /^ {2}tabels: unknown key; did you mean tables\?/m);
});

test('an unknown key inside tables[1] is reported with its path', () => {
  const text = MINIMAL + '  - name: items\n    chunkrows: 5\n';
  const err = configError(() => parseConfig(text, { env: {} }));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /tables\[1\]\.chunkrows: unknown key; did you mean chunkRows\?/);
  assert.match(err.message, /\(line 8\)/);
});

test('a wrong enum value is reported as tables[0].strategy', () => {
  const text = MINIMAL.replace('  - name: orders', '  - name: orders\n    strategy: fast');
  const err = configError(() => parseConfig(text, { env: {} }));
  assert.match(err.message, /tables\[0\]\.strategy: expected one of keyset\|interval\|ctid\|daterange, got "fast" \(line 7\)/);
});

test('source.onSlotLost takes stop or rebackfill', () => {
  const cfg = parseConfig(MINIMAL.replace('5432/db" }', '5432/db", onSlotLost: rebackfill }'), { env: {} });
  assert.equal(cfg.source.onSlotLost, 'rebackfill');
  const err = configError(() => parseConfig(MINIMAL.replace('5432/db" }', '5432/db", onSlotLost: ignore }'), { env: {} }));
  assert.match(err.message, /source\.onSlotLost: expected one of stop\|rebackfill, got "ignore"/);
});

test('every issue is listed, with readable paths', () => {
  const text = `
pipeline: { name: App, concurrency: 0 }
source: { type: mysql, url: "mysql://x" }
destination: { type: postgres }
log: { type: embedded, fsync: "yes" }
tables: []
extra: 1
`;
  const err = configError(() => parseConfig(text, { env: {}, file: 'sluice.yaml' }));
  const m = err.message;
  assert.match(m, /^invalid config sluice\.yaml/);
  assert.match(m, /pipeline\.name: must be .*slot and publication names/);
  assert.match(m, /pipeline\.concurrency: must be >= 1, got 0/);
  assert.match(m, /source\.type: expected postgres, got "mysql"/);
  assert.match(m, /source\.url: must be a URL starting with postgres:\/\/ or postgresql:\/\//);
  assert.match(m, /destination\.url: required/);
  assert.match(m, /log\.fsync: expected true or false, got a string/);
  assert.match(m, /tables: must have at least 1 entry/);
  assert.match(m, /extra: unknown key/);
});

test('env expansion: ${VAR}, ${VAR:-default}, $${ and a missing variable', () => {
  assert.equal(expandEnv('a: ${A}\nb: ${B:-dflt}\nc: ${C:-x}', { A: '1', C: '3' }), 'a: 1\nb: dflt\nc: 3');
  assert.equal(expandEnv('empty: ${E:-d}', { E: '' }), 'empty: d');
  assert.equal(expandEnv('lit: $${NOT_EXPANDED} $HOME', {}), 'lit: ${NOT_EXPANDED} $HOME');
  assert.equal(expandEnv('# comment ${NOPE}\nx: 1', {}), '# comment ${NOPE}\nx: 1');

  const err = configError(() => expandEnv('a: 1\nb: ${MISSING_VAR}\n', {}));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /MISSING_VAR/);
  assert.match(err.message, /line 2/);

  const cfg = parseConfig(MINIMAL.replace('u:secret@src', 'u:${PGPASS}@${PGHOST:-src}'), { env: { PGPASS: 'p' } });
  assert.equal(cfg.source.url, 'postgres://u:p@src:5432/db');

  const err2 = configError(() => parseConfig(MINIMAL.replace('secret', '${PGPASS}'), { env: {}, file: 'x.yaml' }));
  assert.match(err2.message, /^x\.yaml: line 3: environment variable PGPASS is not set/);
});

test('SLUICE_* env overrides the file, and flags override SLUICE_* env', () => {
  const env = { SLUICE_SOURCE_URL: 'postgres://env@src/db', SLUICE_LOG_PATH: '/tmp/envlog' };
  const cfg = parseConfig(MINIMAL, { env });
  assert.equal(cfg.source.url, 'postgres://env@src/db');
  assert.equal((cfg.destination.type === 'postgres' && cfg.destination.url), 'postgresql://u:pw@dst/db');
  assert.equal(cfg.log.type === 'embedded' && cfg.log.path, '/tmp/envlog');

  const cfg2 = parseConfig(MINIMAL, {
    env: { ...env, SLUICE_DESTINATION_URL: 'postgres://env@dst/db' },
    overrides: { sourceUrl: 'postgres://flag@src/db' },
  });
  assert.equal(cfg2.source.url, 'postgres://flag@src/db');
  assert.equal((cfg2.destination.type === 'postgres' && cfg2.destination.url), 'postgres://env@dst/db');

  const err = configError(() => parseConfig(MINIMAL, { env: { SLUICE_SOURCE_URL: 'mysql://x' } }));
  assert.match(err.message, /source\.url: .*\(set by SLUICE_SOURCE_URL\)/);
});

test('duplicate table names are rejected naming both indexes', () => {
  const text = MINIMAL + '  - name: public.items\n  - name: public.orders\n';
  const err = configError(() => parseConfig(text, { env: {} }));
  assert.match(err.message, /tables\[2\]\.name: duplicate table public\.orders: tables\[0\] and tables\[2\]/);

  // Still reported when another entry has a type error (zod skips its own check then).
  const text2 = MINIMAL + '  - { name: items, chunkRows: 1.5 }\n  - name: Orders\n  - name: public.orders\n';
  const err2 = configError(() => parseConfig(text2, { env: {} }));
  assert.match(err2.message, /tables\[1\]\.chunkRows: expected an integer/);
  assert.match(err2.message, /tables\[3\]\.name: duplicate table public\.orders: tables\[0\] and tables\[3\]/);
  assert.doesNotMatch(err2.message, /tables\[2\]\.name/);
});

test('log.type jetstream is rejected for now', () => {
  const text = MINIMAL + 'log: { type: jetstream, url: "nats://localhost:4222" }\n';
  const err = configError(() => parseConfig(text, { env: {} }));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /log\.type: jetstream is not available yet; use embedded/);
});

test('redaction replaces URL passwords', () => {
  assert.equal(redactUrl('postgres://user:pa:ss@host:5432/db?sslmode=require'), 'postgres://user:***@host:5432/db?sslmode=require');
  assert.equal(redactUrl('postgres://user@host/db?password=x&a=b'), 'postgres://user@host/db?password=***&a=b');
  assert.equal(redactUrl('postgres://host/db'), 'postgres://host/db');
  const cfg = parseConfig(MINIMAL, { env: {} });
  const red = redactConfig(cfg) as typeof cfg;
  assert.equal(red.source.url, 'postgres://u:***@src:5432/db');
  assert.equal((red.destination.type === 'postgres' && red.destination.url), 'postgresql://u:***@dst/db');
  assert.equal(cfg.source.url, 'postgres://u:secret@src:5432/db', 'the original is not modified');
  assert.doesNotMatch(JSON.stringify(red), /secret/);
});

test('a YAML syntax error reports its line', () => {
  const err = configError(() => parseConfig('pipeline:\n  name: app\n  bad: [1, 2\nsource: {}\n', { env: {}, file: 'sluice.yaml' }));
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.match(err.message, /YAML syntax error at line \d+, column \d+/);
  assert.match(err.message, /^sluice\.yaml:\d+:\d+:/);
});

test('loadConfig: missing file is CONFIG_NOT_FOUND; a file loads', () => {
  const err = configError(() => loadConfig('./does-not-exist/sluice.yaml', { env: {} }));
  assert.equal(err.code, 'CONFIG_NOT_FOUND');
  assert.match(err.message, /config file \.\/does-not-exist\/sluice\.yaml not found; pass -c\/--config PATH/);

  const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
  try {
    const file = join(dir, 'sluice.yaml');
    writeFileSync(file, MINIMAL);
    assert.equal(loadConfig(file, { env: {} }).pipeline.name, 'app');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('formatPath', () => {
  assert.equal(formatPath(['tables', 2, 'strategy']), 'tables[2].strategy');
  assert.equal(formatPath([]), '(root)');
  assert.equal(formatPath(['a b']), '["a b"]');
});

test('tables: a plain name is short for { name }', () => {
  const cfg = parseConfig(MINIMAL.replace('tables:\n  - name: orders\n', 'tables: [orders, public.track]\n'), { env: {} });
  assert.deepEqual(
    cfg.tables.map((t) => [t.name, t.strategy]),
    [
      ['orders', 'keyset'],
      ['public.track', 'keyset'],
    ],
  );
  const dup = configError(() => parseConfig(MINIMAL.replace('tables:\n  - name: orders\n', 'tables: [orders, public.orders]\n'), { env: {} }));
  assert.match(dup.message, /duplicate table public\.orders: tables\[0\] and tables\[1\]/);
});

test('a relative log.path in the file resolves against the config file, not the current directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
  try {
    const file = join(dir, 'sluice.yaml');
    writeFileSync(file, `${MINIMAL}log: { type: embedded, path: state/app }\n`);
    const cfg = loadConfig(file, { env: {} });
    assert.equal(cfg.log.type === 'embedded' && cfg.log.path, join(dir, 'state/app'));
    writeFileSync(file, MINIMAL);
    const dflt = loadConfig(file, { env: {} });
    assert.equal(dflt.log.type === 'embedded' && dflt.log.path, join(dir, '.sluice/app'), 'the default too');
    const over = loadConfig(file, { env: { SLUICE_LOG_PATH: 'elsewhere' } });
    assert.equal(over.log.type === 'embedded' && over.log.path, 'elsewhere', 'an override stays relative to the current directory');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
