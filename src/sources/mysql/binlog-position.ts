/**
 * Positions in a MariaDB binlog. Two coordinates, kept together:
 * - the GTID position: per replication domain, the last committed `domain-server-seq` (MariaDB's
 *   `gtid_binlog_pos` / `@slave_connect_state` text, e.g. `0-1-42,1-3-7`). It survives failover and
 *   is what capture resumes from; a domain's entry is overwritten by each commit, never maxed;
 * - file:pos: the binlog file and the end position of the event, on this server. It totally orders
 *   commits (files are numbered, positions grow within a file) and gives the change log's order key:
 *   `(file number << 32) | pos` (binlog positions are 32-bit in the event header).
 * No I/O.
 */
import type { Gtid } from './binlog-events.js';

/** A MariaDB GTID position: the last GTID of each domain. */
export class GtidPosition {
  private readonly domains: ReadonlyMap<number, Gtid>;

  private constructor(domains: ReadonlyMap<number, Gtid>) {
    this.domains = domains;
  }

  static readonly empty = new GtidPosition(new Map());

  /** Parses `D-S-N[,D-S-N…]` (empty text: no GTID yet). Throws on malformed text or a domain given twice. */
  static parse(text: string): GtidPosition {
    const m = new Map<number, Gtid>();
    for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
      const g = /^(\d+)-(\d+)-(\d+)$/.exec(part);
      if (!g) throw new Error(`not a MariaDB GTID position: ${JSON.stringify(text)} (expected domain-server-seq, comma-separated)`);
      const domain = Number(g[1]);
      if (m.has(domain)) throw new Error(`GTID position ${JSON.stringify(text)} names domain ${domain} twice`);
      m.set(domain, { domain, server: Number(g[2]), seq: BigInt(g[3]) });
    }
    return new GtidPosition(m);
  }

  static of(gtids: Iterable<Gtid>): GtidPosition {
    return GtidPosition.empty.with(...gtids);
  }

  /** This position after `gtids` committed: each one replaces its domain's entry. */
  with(...gtids: Gtid[]): GtidPosition {
    const m = new Map(this.domains);
    for (const g of gtids) m.set(g.domain, g);
    return new GtidPosition(m);
  }

  get(domain: number): Gtid | undefined {
    return this.domains.get(domain);
  }

  /** The GTIDs, by domain. */
  list(): Gtid[] {
    return [...this.domains.values()].sort((a, b) => a.domain - b.domain);
  }

  get isEmpty(): boolean {
    return this.domains.size === 0;
  }

  /** Whether every domain of `other` is at or before this position's entry for it (same domain order of seq). */
  contains(other: GtidPosition): boolean {
    for (const [d, g] of other.domains) {
      const mine = this.domains.get(d);
      if (!mine || mine.seq < g.seq) return false;
    }
    return true;
  }

  /** Sorted by domain: the text MariaDB accepts in `@slave_connect_state` and `MASTER_GTID_WAIT`. */
  toString(): string {
    return this.list()
      .map((g) => `${g.domain}-${g.server}-${g.seq}`)
      .join(',');
  }
}

/** A binlog coordinate on one server. */
export interface FilePosition {
  readonly file: string;
  readonly pos: number;
}

/** The number of a binlog file (`binlog.000042` → 42). */
export function fileNumber(file: string): number {
  const m = /\.(\d+)$/.exec(file);
  if (!m) throw new Error(`not a binlog file name: ${JSON.stringify(file)} (expected base.NNNNNN)`);
  return Number(m[1]);
}

/** The total order key of a commit at `file:pos`: file number in the high 32 bits, position in the low. */
export function orderKey(p: FilePosition): bigint {
  if (p.pos < 0 || p.pos > 0xffffffff) throw new Error(`binlog position ${p.pos} out of range`);
  return (BigInt(fileNumber(p.file)) << 32n) | BigInt(p.pos);
}

/** The file:pos of an order key, given the binlog's base name (`binlog` for `binlog.000042`). */
export function filePositionOf(key: bigint, base: string): FilePosition {
  return { file: `${base}.${String(key >> 32n).padStart(6, '0')}`, pos: Number(key & 0xffffffffn) };
}

export function compareFilePositions(a: FilePosition, b: FilePosition): number {
  const ka = orderKey(a);
  const kb = orderKey(b);
  return ka === kb ? 0 : ka < kb ? -1 : 1;
}

/** Where capture stands: both coordinates of the last committed event group. */
export interface BinlogPosition extends FilePosition {
  readonly gtid: GtidPosition;
}

/** `file:pos` then `@gtid` when known: `binlog.000002:7492@0-7-11`. */
export function formatBinlogPosition(p: BinlogPosition): string {
  return `${p.file}:${p.pos}${p.gtid.isEmpty ? '' : `@${p.gtid}`}`;
}

export function parseBinlogPosition(text: string): BinlogPosition {
  const m = /^([^:@\s]+):(\d+)(?:@(.*))?$/.exec(text.trim());
  if (!m) throw new Error(`not a binlog position: ${JSON.stringify(text)} (expected file:pos[@domain-server-seq,…])`);
  return { file: m[1], pos: Number(m[2]), gtid: GtidPosition.parse(m[3] ?? '') };
}
