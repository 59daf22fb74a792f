/**
 * Captures the binlog of test/support/binlog-scenario.ts from a private MariaDB server into
 * test/fixtures/binlog/scenario.bin (the server's binlog file byte for byte: what the dump protocol
 * sends, event by event). Run after changing the scenario, then commit the fixture:
 *
 *   npm run build && node dist/test/support/capture-binlog-fixtures.js
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMariaDb } from './mariadb.js';
import { SCENARIO } from './binlog-scenario.js';

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
  await c.end();
  await fs.mkdir(out, { recursive: true });
  await fs.copyFile(path.join(server.dataDir, status.File), path.join(out, 'scenario.bin'));
  console.log(`captured ${status.File} into ${path.join(out, 'scenario.bin')}`);
} finally {
  await server.destroy();
}
