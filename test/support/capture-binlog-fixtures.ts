/**
 * Captures binlog bytes from a private MariaDB server into test/fixtures/binlog/:
 * - scenario.bin: the binlog file of test/support/binlog-scenario.ts, byte for byte (what the dump
 *   protocol sends, event by event);
 * - stream.bin: events as a replica receives them over the dump protocol (each as a 4-byte
 *   little-endian length and the event): the server's made-up ROTATE and FORMAT_DESCRIPTION, a
 *   GTID start, one transaction and a HEARTBEAT of an idle binlog.
 * Run after changing the scenario, then commit the fixtures:
 *
 *   npm run build && node dist/test/support/capture-binlog-fixtures.js
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BinlogClient } from '../../src/sources/mysql/binlog-client.js';
import { GtidPosition } from '../../src/sources/mysql/binlog-position.js';
import { startMariaDb } from './mariadb.js';
import { SCENARIO, STREAM_INSERT } from './binlog-scenario.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const out = path.join(root, 'test/fixtures/binlog');

const server = await startMariaDb({ serverId: 7 });
try {
  const c = await server.connect();
  // Start from a fresh file so the fixture holds the scenario only.
  await c.query('FLUSH BINARY LOGS');
  const [[status]] = (await c.query('SHOW MASTER STATUS')) as unknown as [[{ File: string }]];
  for (const sql of SCENARIO) await c.query(sql);
  await c.query('FLUSH BINARY LOGS');
  await fs.mkdir(out, { recursive: true });
  await fs.copyFile(path.join(server.dataDir, status.File), path.join(out, 'scenario.bin'));
  console.log(`captured ${status.File} into ${path.join(out, 'scenario.bin')}`);

  const [[{ p }]] = (await c.query('SELECT @@gtid_binlog_pos AS p')) as unknown as [[{ p: string }]];
  const raw: Buffer[] = [];
  const client = await BinlogClient.open({
    url: server.url(),
    serverId: 99,
    replicaName: 'fixture',
    start: { gtid: GtidPosition.parse(p) },
    heartbeatMs: 200,
    onRawEvent: (e) => raw.push(e),
  });
  await c.query(STREAM_INSERT);
  let sawXid = false;
  for (;;) {
    const { event } = await client.next();
    if (event.kind === 'xid') sawXid = true;
    if (sawXid && event.kind === 'heartbeat') break;
  }
  client.close();
  await c.end();
  const framed = raw.flatMap((e) => {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length, 0);
    return [len, e];
  });
  await fs.writeFile(path.join(out, 'stream.bin'), Buffer.concat(framed));
  console.log(`captured ${raw.length} streamed events into ${path.join(out, 'stream.bin')}`);
} finally {
  await server.destroy();
}
