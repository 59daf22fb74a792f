/**
 * A binlog replica connection: logs in with mysql2 (authentication, TLS, packet framing), registers
 * as a replica under a server_id, asks for the binlog from a MariaDB GTID position (or file:pos) and
 * yields decoded events (binlog-decoder.ts) with the file they are in. Backpressure: when more than
 * `highWaterMark` events wait for the consumer, the socket is paused (TCP then stops the server);
 * it resumes when the queue is half drained. The server sends a heartbeat every `heartbeatMs` on an
 * idle binlog, so that capture can prove it has passed a position with no traffic.
 *
 * mysql2 has no public API for the dump: the replica commands are written as raw packets through the
 * connection's command queue (`addCommand`, `write`), the one internal hook zongji also uses.
 */
import mysql from 'mysql2';
import { SluiceError } from '../../core/errors.js';
import { BinlogDecoder } from './binlog-decoder.js';
import type { BinlogEvent } from './binlog-events.js';
import { GtidPosition, type FilePosition } from './binlog-position.js';
import { classify } from './errors.js';
import { checkServerId } from './server-id.js';

/**
 * Where the dump starts: a GTID position (a BinlogPosition too, when its GTID is known: GTIDs survive
 * a failover) or a file:pos on this server. An empty GTID position with no file starts at the oldest binlog.
 */
export type BinlogStart = { readonly gtid: GtidPosition } | FilePosition | (FilePosition & { readonly gtid: GtidPosition });

/** The GTID position to start from, when the start has a non-empty one. */
function startGtid(start: BinlogStart): GtidPosition | null {
  return 'gtid' in start && !start.gtid.isEmpty ? start.gtid : null;
}

export interface BinlogClientOptions {
  readonly url: string;
  /** This replica's server_id: unique among the source's replicas; the same for every run of one pipeline. */
  readonly serverId: number;
  /** Reported as this replica's host in SHOW SLAVE HOSTS; a replica with the same name may take over its own server_id. */
  readonly replicaName: string;
  readonly start: BinlogStart;
  /** Heartbeat period on an idle binlog (default 1000 ms). */
  readonly heartbeatMs?: number;
  /** Events queued before reading pauses (default 2000). */
  readonly highWaterMark?: number;
  /** Sees each event's bytes as received, before decoding (fixture capture, diagnostics). */
  readonly onRawEvent?: (event: Buffer) => void;
}

export interface StreamedEvent {
  readonly event: BinlogEvent;
  /** The binlog file the event is in (from the last ROTATE). */
  readonly file: string;
}

const COM_BINLOG_DUMP = 0x12;
const COM_REGISTER_SLAVE = 0x15;
/** MariaDB: send ANNOTATE_ROWS events (the SQL of row events). */
const BINLOG_SEND_ANNOTATE_ROWS_EVENT = 2;
/** MariaDB replica capability: understands GTID events. */
const MARIA_SLAVE_CAPABILITY_GTID = 4;

interface RawPacket {
  buffer: Buffer;
  start: number;
  end: number;
  isError(): boolean;
  asError(encoding?: string): Error;
}

interface ConnectionInternals {
  addCommand(cmd: unknown): unknown;
  write(buffer: Buffer): void;
  sequenceId: number;
  compressedSequenceId: number;
  clientEncoding?: string;
  pause(): void;
  resume(): void;
}

/** One command-phase packet: 3-byte length, sequence 0, payload. */
function commandPacket(payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = 0;
  return Buffer.concat([header, payload]);
}

function lenString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8').subarray(0, 255);
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/**
 * A mysql2 command that sends one request and hands every reply packet to `onPacket` until it
 * returns false. Duck-typed to mysql2's Command (execute(packet, connection) → done).
 */
class RawCommand {
  private started = false;

  constructor(
    private readonly request: Buffer,
    private readonly onPacket: (packet: RawPacket | null, error: Error | null) => boolean,
  ) {}

  execute(packet: RawPacket | undefined, connection: ConnectionInternals): boolean {
    if (!this.started) {
      this.started = true;
      connection.write(commandPacket(this.request));
      connection.sequenceId = 1;
      connection.compressedSequenceId = 1;
      return false;
    }
    if (!packet) return false;
    if (packet.isError()) {
      this.onPacket(null, packet.asError(connection.clientEncoding ?? 'utf8'));
      return true;
    }
    return !this.onPacket(packet, null);
  }
  // mysql2 calls these on commands in some paths (errors, debug)
  onResult?: (err: Error) => void = (err) => this.onPacket(null, err);
  stateName(): string {
    return 'binlog';
  }
}

export class BinlogClient implements AsyncIterable<StreamedEvent> {
  private readonly queue: StreamedEvent[] = [];
  private waiting: { resolve: (e: StreamedEvent) => void; reject: (err: Error) => void } | null = null;
  private failure: Error | null = null;
  private paused = false;
  private file = '';
  private readonly decoder: BinlogDecoder;
  private readonly highWaterMark: number;
  private closed = false;

  private constructor(
    private readonly conn: mysql.Connection,
    collations: ReadonlyMap<number, string>,
    highWaterMark: number,
    private readonly onRawEvent?: (event: Buffer) => void,
  ) {
    this.decoder = new BinlogDecoder({ collations });
    this.highWaterMark = highWaterMark;
    conn.on('error', (err: Error) => this.fail(classify('binlog stream', err)));
    conn.on('end', () => this.fail(new SluiceError('SOURCE_UNREACHABLE', 'source: the binlog connection closed', { retryable: true })));
  }

  /** Connects, checks the server_id, registers and starts the dump. */
  static async open(options: BinlogClientOptions): Promise<BinlogClient> {
    const conn = mysql.createConnection({ uri: options.url, supportBigNumbers: true, bigNumberStrings: true });
    const q = async <T>(sql: string): Promise<T> => (await conn.promise().query(sql))[0] as T;
    try {
      await conn.promise().connect();
      await checkServerId(q, options.serverId, options.replicaName);
      const collations = new Map<number, string>(
        (await q<{ ID: number; CHARACTER_SET_NAME: string }[]>('SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS')).map((r) => [Number(r.ID), r.CHARACTER_SET_NAME]),
      );
      const heartbeatNs = BigInt(options.heartbeatMs ?? 1000) * 1_000_000n;
      await q(`SET @master_binlog_checksum = @@global.binlog_checksum, @master_heartbeat_period = ${heartbeatNs}, @mariadb_slave_capability = ${MARIA_SLAVE_CAPABILITY_GTID}`);
      const gtid = startGtid(options.start);
      if (gtid) await q(`SET @slave_connect_state = ${conn.escape(gtid.toString())}, @slave_gtid_strict_mode = 1, @slave_gtid_ignore_duplicates = 0`);
      await runRaw(conn, registerPayload(options.serverId, options.replicaName));
      const client = new BinlogClient(conn, collations, options.highWaterMark ?? 2000, options.onRawEvent);
      client.dump(options.serverId, gtid || !('file' in options.start) ? { file: '', pos: 4 } : options.start);
      return client;
    } catch (err) {
      conn.destroy();
      throw classify('start the binlog stream', err);
    }
  }

  private dump(serverId: number, from: FilePosition): void {
    const name = Buffer.from(from.file, 'utf8');
    const payload = Buffer.alloc(11 + name.length);
    payload[0] = COM_BINLOG_DUMP;
    payload.writeUInt32LE(from.pos, 1);
    payload.writeUInt16LE(BINLOG_SEND_ANNOTATE_ROWS_EVENT, 5);
    payload.writeUInt32LE(serverId, 7);
    name.copy(payload, 11);
    (this.conn as unknown as ConnectionInternals).addCommand(
      new RawCommand(payload, (packet, error) => {
        if (error) {
          this.fail(classify('read the binlog', error));
          return false;
        }
        const p = packet as RawPacket;
        const first = p.buffer[p.start + 4];
        if (first === 0xfe && p.end - p.start - 4 < 9) {
          this.fail(new SluiceError('SOURCE_ERROR', 'source: the server ended the binlog stream'));
          return false;
        }
        try {
          const bytes = Buffer.from(p.buffer.subarray(p.start + 5, p.end));
          this.onRawEvent?.(bytes);
          this.push(this.decoder.decode(bytes));
        } catch (err) {
          this.fail(new SluiceError('SOURCE_ERROR', `source: binlog: ${(err as Error).message}`, { cause: err }));
          return false;
        }
        return true;
      }),
    );
  }

  private push(event: BinlogEvent): void {
    if (event.kind === 'rotate') this.file = event.file;
    const item = { event, file: this.file };
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve(item);
      return;
    }
    this.queue.push(item);
    if (!this.paused && this.queue.length >= this.highWaterMark) {
      this.paused = true;
      (this.conn as unknown as ConnectionInternals).pause();
    }
  }

  private fail(err: Error): void {
    if (this.closed || this.failure) return;
    this.failure = err;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w.reject(err);
    }
  }

  /** Events waiting for the consumer (for tests and metrics). */
  get queued(): number {
    return this.queue.length;
  }

  /** Whether reading is paused because the consumer is behind. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** The next event; rejects when the stream failed or closed. */
  next(): Promise<StreamedEvent> {
    const item = this.queue.shift();
    if (item) {
      if (this.paused && this.queue.length <= this.highWaterMark >> 1) {
        this.paused = false;
        (this.conn as unknown as ConnectionInternals).resume();
      }
      return Promise.resolve(item);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('binlog client closed'));
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamedEvent> {
    while (!this.closed) yield await this.next();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.destroy();
    if (this.waiting) this.waiting.reject(new Error('binlog client closed'));
    this.waiting = null;
  }
}

function registerPayload(serverId: number, replicaName: string): Buffer {
  const tail = Buffer.alloc(10); // port (2), replication rank (4), master id (4)
  return Buffer.concat([Buffer.from([COM_REGISTER_SLAVE]), u32(serverId), lenString(replicaName), lenString(''), lenString(''), tail]);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  return b;
}

/** Sends one raw command and waits for its single reply (OK or error). */
function runRaw(conn: mysql.Connection, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    (conn as unknown as ConnectionInternals).addCommand(
      new RawCommand(payload, (_packet, error) => {
        if (error) reject(error);
        else resolve();
        return false;
      }),
    );
  });
}
