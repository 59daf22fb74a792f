/**
 * The change log as a NATS JetStream stream (one per pipeline, a subject per table; layout in
 * segment.ts), behind the async port (AsyncChangeLog).
 *
 * - Capture is single-writer and fenced: every publish carries the stream's expected last sequence,
 *   so a second capturer's publish, or a stale one's, is refused (CHANGELOG_FENCED). Opening as the
 *   writer publishes a fence first, so an older writer still running can publish nothing more.
 * - `flush()` publishes the buffered committed transactions (one message per table and flush, cut at
 *   segmentBytes; one publish at a time, each expecting the sequence before it), then the head; it resolves only when the server acknowledged all of
 *   them (replicas 3: stored on a quorum). A flush that times out (no quorum) rejects with a retryable
 *   CHANGELOG_NO_QUORUM and keeps what it had not got acknowledged; the next flush publishes it again
 *   with the same ids (Nats-Msg-Id), so a message stored without its ack reaching us is not stored twice.
 * - A transaction is buffered in memory until its commit; only committed transactions are published,
 *   so a transaction sent again by the source (a reconnect before its commit) is stored once.
 * - Reopening as the writer resumes after the last head message; messages stored after it (a flush
 *   that never finished) are deleted, since the source sends those transactions again.
 * - Reads use direct gets (served by any replica, so reads of what is stored go on while the stream
 *   has no leader), find where to start with a binary search over stream sequences, and remember
 *   where the last read of each table stopped.
 */
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient, type JetStreamManager, type PubAck, type StoredMsg } from '@nats-io/jetstream';
import { SluiceError } from '../../core/errors.js';
import { encodeTuple } from '../../core/tuple-data.js';
import { Lsn, Position, type Change, type RelationColumns } from '../../core/types.js';
import type { AsyncChangeLog, LogHead, PendingChange } from '../changelog.js';
import {
  buildSegments,
  decodeSegment,
  logNames,
  tableSubject,
  type LogNames,
  type Outgoing,
  type SegmentChange,
} from './segment.js';
import { SegmentReader, segmentsBefore } from './segment-reader.js';
import { apiCode, connectNats, ensureStream, fenced, unavailable, type StreamOptions } from './stream.js';

export interface JetStreamLogOptions extends StreamOptions {
  readonly pipeline: string;
  /** Stream name; defaults to `SLUICE_<pipeline>`. */
  readonly stream?: string;
  /** 'writer' (capture: fences the stream, resumes it) or 'reader' (apply in another process: learns the head from the stream). */
  readonly role?: 'writer' | 'reader';
  /** How long a flush waits for the server's acknowledgement of each message. */
  readonly ackTimeoutMs?: number;
  /** Bytes of changes per message (the server refuses messages over its max_payload, 1 MB by default). */
  readonly segmentBytes?: number;
}

const DEFAULT_SEGMENT_BYTES = 256 << 10;
/** Every this many flushes, head messages but the last are purged (each flush adds one). */
const HEAD_PURGE_EVERY = 64;

interface Relation {
  readonly version: number;
  readonly table: string;
  readonly columns: RelationColumns;
}

/** Messages of one flush, each with the sequence it must land at; kept until all are acknowledged. */
interface Batch {
  readonly messages: Outgoing[];
  /** Sequence of messages[0]. */
  readonly firstSeq: number;
  /** Messages acknowledged so far (a prefix). */
  acked: number;
  readonly head: LogHead;
  readonly totals: Map<string, number>;
}

export class JetStreamChangeLog implements AsyncChangeLog {
  private readonly js: JetStreamClient;
  private readonly writerId = randomUUID();
  private durable: LogHead = { lsn: Lsn.zero, endLsn: Lsn.zero, commitTimeMs: 0 };
  private staged: LogHead = this.durable;
  /** Sequence of the last head message: nothing after it is durable. */
  private headSeq = 0;
  /** The stream's last sequence as this writer knows it: the next publish expects it. */
  private lastSeq = 0;
  private readonly pending: { table: string; change: SegmentChange }[] = [];
  /** Pending changes that belong to committed transactions (a prefix of `pending`). */
  private committedCount = 0;
  private openTxnResent = false;
  private readonly relations = new Map<number, Relation>();
  private readonly latestVersion = new Map<string, { version: number; key: string }>();
  private pendingRelations: Relation[] = [];
  private nextVersion = 1;
  private relSeq = 0;
  /** Changes of each table ever appended (the Sluice-Total of its last message), as this writer has built them. */
  private totals = new Map<string, number>();
  /** The same at the durable head (carried by the head message: a subject's last message may have been deleted). */
  private durableTotals = new Map<string, number>();
  private readonly reader: SegmentReader;
  private batch: Batch | null = null;
  private flushes = 0;
  private failure: SluiceError | null = null;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    readonly names: LogNames,
    private readonly opts: JetStreamLogOptions,
  ) {
    this.js = jetstream(nc, { timeout: opts.ackTimeoutMs ?? 5000 });
    this.reader = new SegmentReader(names, (q) => this.get(q), () => ({ seq: this.headSeq, lsn: this.durable.lsn }));
  }

  /** Connects, creates or checks the stream, and (writer) fences it and resumes after its last head. */
  static async open(opts: JetStreamLogOptions): Promise<JetStreamChangeLog> {
    const names = logNames(opts.pipeline, opts.stream);
    const { nc, jsm } = await connectNats(opts);
    try {
      await ensureStream(jsm, names, opts);
      const log = new JetStreamChangeLog(nc, jsm, names, opts);
      if (opts.role === 'reader') await log.refreshHead();
      else await log.takeOver();
      await log.loadRelations();
      return log;
    } catch (err) {
      await nc.close().catch(() => {});
      throw err;
    }
  }

  get buffered(): number {
    return this.pending.length + (this.batch ? this.batch.messages.length - this.batch.acked : 0);
  }

  /** The fence: a head message at the stream's last sequence; then the unfinished flush after the previous head is deleted. */
  private async takeOver(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.refreshHead();
      const last = (await this.jsm.streams.info(this.names.stream)).state.last_seq;
      try {
        const ack = await this.js.publish(this.names.head, headJson(this.durable, this.durableTotals), { expect: { lastSequence: last } });
        const orphansAfter = this.headSeq;
        this.headSeq = ack.seq;
        this.lastSeq = ack.seq;
        this.totals = new Map(this.durableTotals);
        for (let seq = orphansAfter + 1; seq <= last; seq++) await this.deleteOrphan(seq);
        return;
      } catch (err) {
        // Another writer published between the read and the fence: read again.
        if (apiCode(err) === 10071 && attempt < 5) continue;
        throw apiCode(err) === 10071 ? fenced(this.names, err) : unavailable(this.names, 'cannot fence the stream', err);
      }
    }
  }

  private async deleteOrphan(seq: number): Promise<void> {
    try {
      await this.jsm.streams.deleteMessage(this.names.stream, seq, false);
    } catch (err) {
      // 10037: no message at that sequence (purged, or never stored).
      if (apiCode(err) !== 10037 && !/no message found/i.test((err as Error).message)) throw unavailable(this.names, `cannot delete message ${seq}`, err);
    }
  }

  /**
   * A reader learns the newest head before reading; when the stream cannot answer that now (no
   * leader), it reads up to the head it knows: older, never wrong.
   */
  private async followHead(): Promise<void> {
    if (this.opts.role !== 'reader') return;
    try {
      await this.refreshHead();
    } catch (err) {
      if (!(err instanceof SluiceError && err.retryable)) throw err;
    }
  }

  /** Reads the last head message (reader: the newest durable head; writer at open: where to resume). */
  private async refreshHead(): Promise<void> {
    const m = await this.get({ last_by_subj: this.names.head });
    if (!m || m.seq <= this.headSeq) return;
    const h = m.json<{ lsn: string; endLsn: string; commitTimeMs: number; totals?: Record<string, number> }>();
    this.durable = { lsn: Lsn.of(BigInt(h.lsn)), endLsn: Lsn.of(BigInt(h.endLsn)), commitTimeMs: h.commitTimeMs };
    this.durableTotals = new Map(Object.entries(h.totals ?? {}));
    this.staged = this.durable;
    this.headSeq = m.seq;
  }

  private async loadRelations(): Promise<void> {
    for (;;) {
      const m = await this.get({ seq: this.relSeq + 1, next_by_subj: this.names.rel });
      if (!m) return;
      this.relSeq = m.seq;
      const r = m.json<Relation>();
      this.relations.set(r.version, r);
      this.latestVersion.set(r.table, { version: r.version, key: JSON.stringify(r.columns) });
      this.nextVersion = Math.max(this.nextVersion, r.version + 1);
    }
  }

  private async get(query: { seq: number; next_by_subj: string } | { last_by_subj: string }): Promise<StoredMsg | null> {
    try {
      return await this.jsm.direct.getMessage(this.names.stream, query);
    } catch (err) {
      throw unavailable(this.names, 'cannot read', err);
    }
  }

  relationVersion(table: string, columns: RelationColumns): number {
    const stored: RelationColumns = { names: columns.names, typeOids: columns.typeOids, typeMods: columns.typeMods, keyIndexes: columns.keyIndexes };
    const key = JSON.stringify(stored);
    const latest = this.latestVersion.get(table);
    if (latest && latest.key === key) return latest.version;
    const r: Relation = { version: this.nextVersion++, table, columns: JSON.parse(key) as RelationColumns };
    this.relations.set(r.version, r);
    this.latestVersion.set(table, { version: r.version, key });
    this.pendingRelations.push(r);
    return r.version;
  }

  async relation(version: number): Promise<RelationColumns> {
    if (!this.relations.has(version)) await this.loadRelations();
    const r = this.relations.get(version);
    if (!r) throw new SluiceError('CHANGELOG_ERROR', `change log stream ${this.names.stream}: unknown relation version ${version}`);
    return r.columns;
  }

  async previousRelation(table: string, version: number): Promise<RelationColumns | null> {
    if (!this.relations.has(version)) await this.loadRelations();
    let best: Relation | null = null;
    for (const r of this.relations.values()) if (r.table === table && r.version < version && (!best || r.version > best.version)) best = r;
    return best?.columns ?? null;
  }

  append(change: PendingChange): void {
    const row = change.rowData ? Buffer.from(change.rowData) : change.row ? encodeTuple(change.row) : null;
    const oldKey = change.oldKey === undefined ? null : Buffer.from(JSON.stringify(change.oldKey));
    const prev = this.pending.length > this.committedCount ? this.pending[this.pending.length - 1].change : null;
    if (prev && prev.lsn === change.lsn && change.idx <= prev.idx) this.openTxnResent = true;
    this.pending.push({
      table: change.table,
      change: { lsn: change.lsn, idx: change.idx, kind: change.kind, relationVersion: change.relationVersion, commitTimeMs: change.commitTimeMs, row, oldKey },
    });
  }

  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void {
    if (this.openTxnResent) this.dedupeOpen(lsn);
    this.openTxnResent = false;
    this.committedCount = this.pending.length;
    this.staged = { lsn, endLsn: Lsn.max(endLsn, this.staged.endLsn), commitTimeMs };
  }

  /** A transaction the source sent again (part of it twice): each position once, the last copy, in order. */
  private dedupeOpen(lsn: Lsn): void {
    const open = this.pending.splice(this.committedCount);
    const byIdx = new Map<number, (typeof open)[number]>();
    for (const p of open) if (p.change.lsn === lsn) byIdx.set(p.change.idx, p);
    this.pending.push(...[...byIdx.values()].sort((a, b) => a.change.idx - b.change.idx));
  }

  advance(endLsn: Lsn): void {
    if (endLsn > this.staged.endLsn) this.staged = { ...this.staged, endLsn };
  }

  async flush(): Promise<LogHead> {
    if (this.failure) throw this.failure;
    if (!this.batch) {
      const head = this.staged;
      const moved = head.lsn !== this.durable.lsn || head.endLsn !== this.durable.endLsn;
      if (this.committedCount === 0 && this.pendingRelations.length === 0 && !moved) return this.durable;
      const messages = this.segments();
      const totals = new Map(this.totals);
      messages.push({ subject: this.names.head, data: new TextEncoder().encode(headJson(head, totals)) });
      this.batch = { messages, firstSeq: this.lastSeq + 1, acked: 0, head, totals };
    }
    await this.publish(this.batch);
    const batch = this.batch;
    this.batch = null;
    this.lastSeq = batch.firstSeq + batch.messages.length - 1;
    this.headSeq = this.lastSeq;
    this.durable = batch.head;
    this.durableTotals = batch.totals;
    if (++this.flushes % HEAD_PURGE_EVERY === 0) await this.purgeOldHeads();
    return this.durable;
  }

  /** Only the last head message matters; the older ones would pile up (one per flush). Best effort: the next round tries again. */
  private async purgeOldHeads(): Promise<void> {
    try {
      await this.jsm.streams.purge(this.names.stream, { filter: this.names.head, keep: 1 });
    } catch {
      // Nothing depends on it but the stream's size.
    }
  }

  /** The messages of the relations and committed transactions buffered, taken off the buffers. */
  private segments(): Outgoing[] {
    const out: Outgoing[] = this.pendingRelations.splice(0).map((r) => ({ subject: this.names.rel, data: new TextEncoder().encode(JSON.stringify(r)) }));
    const committed = this.pending.splice(0, this.committedCount);
    this.committedCount = 0;
    out.push(...buildSegments(this.names, committed, this.totals, this.opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES));
    return out;
  }

  /**
   * Publishes what of `batch` is not acknowledged yet, one message at a time, each expecting the
   * stream's last sequence to be the previous one's: pipelined publishes could not be fenced (a later
   * message would land when another writer's publishes filled the sequence it expects).
   */
  private async publish(batch: Batch): Promise<void> {
    for (let i = batch.acked; i < batch.messages.length; i++) {
      const m = batch.messages[i];
      const seq = batch.firstSeq + i;
      let h: ReturnType<typeof natsHeaders> | undefined;
      if (m.headers) {
        h = natsHeaders();
        for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
      }
      let ack: PubAck;
      try {
        ack = await this.js.publish(m.subject, m.data, { expect: { lastSequence: seq - 1 }, msgID: `${this.writerId}:${seq}`, headers: h });
      } catch (err) {
        if (apiCode(err) === 10071) {
          this.failure = fenced(this.names, err);
          throw this.failure;
        }
        if (/payload/i.test((err as Error).message)) {
          this.failure = new SluiceError(
            'CHANGELOG_ERROR',
            `change log stream ${this.names.stream}: a message of ${m.data.length} bytes is over the server's max_payload ` +
              `(${(err as Error).message}): raise max_payload in the nats-server configuration (a row is never split)`,
            { cause: err, context: { stream: this.names.stream, bytes: m.data.length } },
          );
          throw this.failure;
        }
        // A timeout or a lost connection: the next flush publishes the rest again, with the same ids.
        throw unavailable(this.names, `publish not acknowledged; nothing was acknowledged past position ${Lsn.format(this.durable.endLsn)}`, err);
      }
      if (ack.seq !== seq) {
        this.failure = fenced(this.names, new Error(`stored at sequence ${ack.seq}, expected ${seq}`));
        throw this.failure;
      }
      batch.acked = i + 1;
    }
  }

  head(): LogHead {
    return this.durable;
  }

  async read(table: string, after: Position, limit: number, upTo?: Position): Promise<Change[]> {
    await this.followHead();
    return this.reader.read(table, after, limit, upTo);
  }

  async purge(table: string, upTo: Position): Promise<number> {
    const subject = tableSubject(this.names, table);
    const first = await this.reader.next(subject, 1);
    if (!first) return 0;
    const keep = await this.reader.firstAfter(subject, upTo);
    const seq = keep ? keep.seq : this.headSeq + 1;
    if (seq <= first.seq) return 0;
    const end = keep ? segmentsBefore(keep) : this.durableTotal(table);
    try {
      await this.jsm.streams.purge(this.names.stream, { filter: subject, seq });
    } catch (err) {
      throw unavailable(this.names, `cannot purge ${table}`, err);
    }
    return end - segmentsBefore(first);
  }

  /** Changes of the table ever appended, up to the durable head. */
  private durableTotal(table: string): number {
    return this.durableTotals.get(table) ?? 0;
  }

  async count(table: string, after: Position): Promise<number> {
    await this.followHead();
    const subject = tableSubject(this.names, table);
    const m = await this.reader.firstAfter(subject, after);
    if (!m) return 0;
    const inside = decodeSegment(table, m.data).filter((c) => Position.compare(c.position, after) <= 0).length;
    return this.durableTotal(table) - segmentsBefore(m) - inside;
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => {});
  }
}

function headJson(h: LogHead, totals: Map<string, number>): string {
  return JSON.stringify({ lsn: h.lsn.toString(), endLsn: h.endLsn.toString(), commitTimeMs: h.commitTimeMs, totals: Object.fromEntries(totals) });
}
