/**
 * The change log alone: append + flush, then read, for the embedded log (SQLite, fsync per flush)
 * and the JetStream log (one private nats-server, replicas 1, file storage), both through the async
 * port, in the order A B A B. Prints changes/s with CPU seconds next to wall time: sluice's process
 * and, for JetStream, the server's.
 *
 *   npm run build && node dist/bench/changelog.js [--changes 200000] [--tx 100] [--flush-every 20]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AsyncChangeLog } from '../src/changelog/changelog.js';
import { AsyncEmbeddedChangeLog } from '../src/changelog/embedded/async-embedded-change-log.js';
import { EmbeddedChangeLog } from '../src/changelog/embedded/embedded-change-log.js';
import { JetStreamChangeLog } from '../src/changelog/jetstream/jetstream-change-log.js';
import { Lsn, Position } from '../src/core/types.js';
import { startNats } from '../test/support/nats.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

const CHANGES = arg('changes', 200_000);
const TX = arg('tx', 100);
const FLUSH_EVERY = arg('flush-every', 20);
const TABLES = ['public.orders', 'public.items'];
const cols = { names: ['id', 'customer', 'note', 'amount'], typeOids: [20, 20, 25, 1700], keyIndexes: [0] };

/** CPU seconds (user + system) of a process, from /proc. */
function procCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Result {
  readonly log: string;
  readonly phase: string;
  readonly changes: number;
  readonly wallS: number;
  readonly cpuS: number;
  readonly serverCpuS: number;
}

async function measure(log: string, phase: string, serverPid: number | undefined, fn: () => Promise<number>): Promise<Result> {
  const t0 = process.hrtime.bigint();
  const c0 = selfCpu();
  const s0 = procCpuSeconds(serverPid);
  const changes = await fn();
  return {
    log,
    phase,
    changes,
    wallS: Number(process.hrtime.bigint() - t0) / 1e9,
    cpuS: selfCpu() - c0,
    serverCpuS: procCpuSeconds(serverPid) - s0,
  };
}

async function appendAndFlush(log: AsyncChangeLog): Promise<number> {
  const v = TABLES.map((t) => log.relationVersion(t, cols));
  let n = 0;
  for (let tx = 1; n < CHANGES; tx++) {
    const lsn = Lsn.of(tx * 1000);
    for (let i = 0; i < TX && n < CHANGES; i++, n++) {
      const t = i % TABLES.length;
      log.append({ table: TABLES[t], lsn, idx: i, kind: 'insert', relationVersion: v[t], row: [String(n), String(n % 977), `note ${n} `.padEnd(60, 'x'), '123.45'], commitTimeMs: tx });
    }
    log.commit(lsn, Lsn.of(tx * 1000 + 1), tx);
    if (tx % FLUSH_EVERY === 0) await log.flush();
  }
  await log.flush();
  return n;
}

async function readAll(log: AsyncChangeLog): Promise<number> {
  let n = 0;
  for (const table of TABLES) {
    let at = Position.start;
    for (;;) {
      const batch = await log.read(table, at, 2000);
      if (batch.length === 0) break;
      n += batch.length;
      at = batch[batch.length - 1].position;
    }
  }
  return n;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-log-'));
  const nats = await startNats();
  const pid = nats.nodes[0].pid;
  const results: Result[] = [];
  try {
    for (let round = 1; round <= 2; round++) {
      for (const kind of ['embedded', 'jetstream'] as const) {
        const name = `bench${round}`;
        const log: AsyncChangeLog =
          kind === 'embedded'
            ? new AsyncEmbeddedChangeLog(new EmbeddedChangeLog(join(dir, `${name}.db`)))
            : await JetStreamChangeLog.open({ url: nats.url, pipeline: name, replicas: 1 });
        const server = kind === 'jetstream' ? pid : undefined;
        results.push(await measure(kind, 'append + flush', server, () => appendAndFlush(log)));
        results.push(await measure(kind, 'read', server, () => readAll(log)));
        await log.close();
      }
    }
  } finally {
    await nats.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`change log: ${CHANGES} changes, ${TX} per transaction, a flush every ${FLUSH_EVERY} transactions, 2 tables; order A B A B`);
  console.log('| log | phase | changes/s | wall s | sluice CPU s | server CPU s |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.log} | ${r.phase} | ${Math.round(r.changes / r.wallS).toLocaleString('en')} | ${r.wallS.toFixed(2)} | ${r.cpuS.toFixed(2)} | ${r.log === 'jetstream' ? r.serverCpuS.toFixed(2) : '—'} |`);
  }
}

await main();
