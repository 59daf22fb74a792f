/**
 * Formats of sluice's state: the change log file's version handling (format 1 files written by
 * sluice 0.1.0 are migrated, newer ones refused, new ones created current), and the frozen format-1
 * definitions staying equal to the fixtures taken from the last release.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { LOG_FORMAT, LOG_FORMAT_1_SQL, readLogFormat } from '../../src/changelog/embedded/log-format.js';
import { SluiceError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { Lsn, Position } from '../../src/core/types.js';
import { FORMAT_1_DDL, STATE_FORMAT, STATE_MIGRATIONS } from '../../src/destinations/postgres/state-format.js';

/** dist/test/unit → test/fixtures in the source tree */
const fixtures = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../test/fixtures');
const fixture = (name: string) =>
  readFileSync(join(fixtures, name), 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('--'))
    .join('\n');

const dir = mkdtempSync(join(tmpdir(), 'sluice-format-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function capture(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ format: 'pretty', write: (l) => lines.push(l) }) };
}

/** A change log as sluice 0.1.0 left it: its DDL (the fixture), user_version 0, an identity, a head, a change. */
function writeFormat1Log(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(fixture('changelog-format-1.sql'));
  const meta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
  meta.run('log_id', 'log-of-0.1.0');
  meta.run('head_lsn', '100');
  meta.run('head_end_lsn', '108');
  meta.run('head_commit_ms', '5');
  db.prepare('INSERT INTO relations (version, tbl, columns) VALUES (1, ?, ?)').run(
    'public.t',
    JSON.stringify({ names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] }),
  );
  db.prepare('INSERT INTO changes (tbl, lsn, idx, kind, rel, row, old_key, commit_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
    'public.t',
    100,
    0,
    1,
    1,
    JSON.stringify(['1', 'a']),
    null,
    5,
  );
  db.close();
}

function userVersion(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return Number(db.pragma('user_version', { simple: true }));
  } finally {
    db.close();
  }
}

test('the format-1 definitions are frozen: equal to the fixtures taken from sluice 0.1.0', () => {
  assert.equal(FORMAT_1_DDL.trim(), fixture('state-format-1.sql').trim(), 'edit nothing of format 1: add a step to STATE_MIGRATIONS');
  assert.equal(LOG_FORMAT_1_SQL.trim(), fixture('changelog-format-1.sql').trim(), 'edit nothing of format 1: add a step to LOG_MIGRATIONS');
});

test('migration steps are ordered, one format each, ending at the current format', () => {
  STATE_MIGRATIONS.forEach((m, i) => assert.equal(m.to, i + 2));
  assert.equal(STATE_FORMAT, STATE_MIGRATIONS.length + 1);
  assert.equal(LOG_FORMAT, 3);
});

test('a new change log is created at the current format, silently', () => {
  const file = join(dir, 'new', 'changes.db');
  const { lines, logger } = capture();
  const log = new EmbeddedChangeLog(file, { logger });
  log.identity();
  log.close();
  assert.equal(userVersion(file), LOG_FORMAT);
  assert.deepEqual(lines, []);
});

test('a format-1 change log is migrated once, keeping its identity, head and changes', () => {
  const file = join(dir, 'v1.db');
  writeFormat1Log(file);
  const probe = new Database(file);
  assert.equal(readLogFormat(probe), 1, 'tables and no user_version: format 1');
  probe.close();

  const { lines, logger } = capture();
  const log = new EmbeddedChangeLog(file, { logger, role: 'reader' });
  assert.equal(log.identity(), 'log-of-0.1.0');
  assert.equal(log.head().endLsn, Lsn.of(108));
  const changes = log.read('public.t', Position.start, 10);
  assert.deepEqual(changes.map((c) => [c.kind, c.row, c.position.lsn]), [['insert', ['1', 'a'], Lsn.of(100)]]);
  assert.deepEqual(log.relation(1).names, ['id', 'v']);
  log.close();
  assert.equal(userVersion(file), LOG_FORMAT);
  assert.equal(lines.length, 2);
  assert.match(lines[0], /migrated change log from format 1 to 2/);
  assert.match(lines[1], /migrated change log from format 2 to 3/);

  // Idempotent: the next open (the capture thread's writer, a restart) finds it current.
  const again = capture();
  const writer = new EmbeddedChangeLog(file, { logger: again.logger, role: 'writer' });
  assert.equal(writer.read('public.t', Position.start, 10).length, 1);
  writer.close();
  assert.deepEqual(again.lines, []);
});

test('format 3 reads the JSON rows a format-2 log holds, beside the binary rows it writes', () => {
  const file = join(dir, 'v2.db');
  writeFormat1Log(file);
  const db = new Database(file);
  db.pragma('user_version = 2');
  db.prepare('INSERT INTO changes (tbl, lsn, idx, kind, rel, row, old_key, commit_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
    'public.t', 100, 1, 2, 1, JSON.stringify(['2', null]), JSON.stringify(['9']), 5,
  );
  db.close();

  const { lines, logger } = capture();
  const log = new EmbeddedChangeLog(file, { logger });
  assert.equal(lines.length, 1);
  assert.match(lines[0], /migrated change log from format 2 to 3/);
  const v = log.relationVersion('public.t', { names: ['id', 'v'], typeOids: [20, 25], typeMods: [-1, -1], keyIndexes: [0] });
  log.append({ table: 'public.t', lsn: Lsn.of(200), idx: 0, kind: 'insert', relationVersion: v, row: ['3', 'é\tb'], commitTimeMs: 6 });
  // A view of a buffer that the caller reuses after append (as capture's are): the log keeps a copy.
  const wire = Buffer.from([0, 2, 0x74, 0, 0, 0, 1, 0x34, 0x75]);
  log.append({ table: 'public.t', lsn: Lsn.of(200), idx: 1, kind: 'update', relationVersion: v, rowData: wire.subarray(0), commitTimeMs: 6 });
  wire.fill(0);
  log.commit(Lsn.of(200), Lsn.of(208), 6);
  log.flush();
  assert.deepEqual(
    log.read('public.t', Position.start, 10).map((c) => [c.kind, c.row, c.oldKey]),
    [
      ['insert', ['1', 'a'], undefined],
      ['update', ['2', null], ['9']],
      ['insert', ['3', 'é\tb'], undefined],
      ['update', ['4', false], undefined],
    ],
  );
  log.close();
  const probe = new Database(file, { readonly: true });
  const types = probe.prepare('SELECT typeof(row) AS t FROM changes ORDER BY lsn, idx').all() as { t: string }[];
  probe.close();
  assert.deepEqual(types.map((r) => r.t), ['text', 'text', 'blob', 'blob']);
  assert.equal(userVersion(file), 3);
});

test('a change log of a newer format is refused, naming both formats and the fix, and left as it is', () => {
  const file = join(dir, 'v999.db');
  writeFormat1Log(file);
  const db = new Database(file);
  db.pragma('user_version = 999');
  db.close();
  assert.throws(
    () => new EmbeddedChangeLog(file),
    (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.equal(err.code, 'STATE_FORMAT');
      assert.equal(err.isUsageError, true, 'exit 2');
      assert.match(err.message, /is format 999, this sluice reads formats up to 3/);
      assert.match(err.message, /written by a newer sluice \(format 999\); upgrade sluice to a version that reads format 999/);
      return true;
    },
  );
  assert.equal(userVersion(file), 999);
  const check = new Database(file, { readonly: true });
  assert.equal((check.prepare('SELECT count(*) AS n FROM changes').get() as { n: number }).n, 1, 'nothing deleted');
  check.close();
});
