/**
 * A logical replication connection streaming pgoutput from a slot (START_REPLICATION), with the
 * standby status updates that acknowledge what the caller says is durable.
 *
 * It never acknowledges on its own: `confirm(lsn)` is called by the streamer only after the change
 * log has fsync'd everything up to `lsn` (contract 1).
 *
 * A dead path is noticed like PostgreSQL's own walreceiver does (wal_receiver_timeout): when nothing
 * has arrived for half of `timeoutMs`, a status update asks the walsender to reply at once (a ping);
 * when nothing has arrived for `timeoutMs`, the connection is dropped and reported as a retryable
 * error. A path that silently stops carrying packets is therefore noticed within `timeoutMs` plus one
 * status interval, whatever TCP thinks.
 */
import pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { Lsn } from '../../core/types.js';
import { quoteIdent } from '../../destinations/postgres/dialect.js';
import { clientConfig, destroyClient } from './connection.js';
import { connectError, classify, redactUrl } from './errors.js';
import { decodeCopyData, decodePgoutputRaw, encodeStandbyStatus, type PgoutputRawMessage } from './pgoutput-decoder.js';

export interface ReplicationStreamOptions {
  readonly url: string;
  readonly slot: string;
  readonly publication: string;
  readonly startLsn: Lsn;
  /** How often a status update is sent even when nothing changed (keeps wal_sender_timeout away). */
  readonly statusIntervalMs?: number;
  /** Nothing heard from the walsender for this long: the connection is dead (0: never). Default 60 s. */
  readonly timeoutMs?: number;
  /**
   * Called for every pgoutput message, in stream order, synchronously. Row changes carry their
   * tuples as views of the received frame: copy what must outlive the call.
   */
  readonly onMessage: (msg: PgoutputRawMessage, walEnd: Lsn) => void;
  /** Called for keepalives: the server's current WAL end. */
  readonly onKeepalive: (walEnd: Lsn) => void;
  readonly onError: (err: SluiceError) => void;
}

export class ReplicationStream {
  private client: pg.Client | null = null;
  private confirmed: Lsn = Lsn.zero;
  private received: Lsn = Lsn.zero;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastHeardMs = Date.now();
  private pinged = false;
  /** The walsender's backend pid (to end it when this connection was given up as dead). */
  backendPid: number | null = null;

  constructor(private readonly opts: ReplicationStreamOptions) {}

  async start(): Promise<void> {
    const client = new pg.Client(
      clientConfig(this.opts.url, {
        replication: 'database',
        // Text values must round-trip exactly: fix the output styles of the walsender session.
        options: '-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC',
      } as pg.ClientConfig),
    );
    try {
      await client.connect();
    } catch (err) {
      throw connectError('source', redactUrl(this.opts.url), err);
    }
    this.client = client;
    this.backendPid = (client as unknown as { processID: number | null }).processID ?? null;
    this.confirmed = this.opts.startLsn;
    client.on('error', (err) => {
      if (!this.stopped) this.opts.onError(classify('source', 'replication connection', err));
    });
    client.connection.on('copyData', (msg: { chunk: Buffer }) => this.handle(msg.chunk));
    const pub = this.opts.publication.replace(/'/g, "''").replace(/"/g, '""');
    const sql =
      `START_REPLICATION SLOT ${quoteIdent(this.opts.slot)} LOGICAL ${Lsn.format(this.opts.startLsn)} ` +
      `(proto_version '1', publication_names '"${pub}"', messages 'true')`;
    const timeoutMs = this.timeoutMs;
    this.lastHeardMs = Date.now();
    try {
      await this.startReplication(client, sql, timeoutMs);
    } catch (err) {
      // Refused (slot in use) or no answer: this connection is of no further use.
      this.stopped = true;
      this.client = null;
      destroyClient(client);
      throw err;
    }
    this.lastHeardMs = Date.now();
    this.timer = setInterval(() => this.tick(), this.opts.statusIntervalMs ?? 1000);
    this.timer.unref();
  }

  private startReplication(client: pg.Client, sql: string, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let started = false;
      // A walsender that never answers START_REPLICATION is on a dead path too.
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              if (started || this.stopped) return;
              destroyClient(client);
              reject(this.deadError(timeoutMs));
            }, timeoutMs)
          : null;
      const onStart = () => {
        started = true;
        if (timer) clearTimeout(timer);
        resolve();
      };
      client.connection.once('copyBothResponse' as never, onStart);
      client.connection.once('replicationStart' as never, onStart);
      client.query(sql, (err: Error | null) => {
        if (err && !this.stopped) {
          const e = classify('source', 'START_REPLICATION', err);
          if (started) this.opts.onError(e);
          else {
            if (timer) clearTimeout(timer);
            reject(e);
          }
        }
      });
    });
  }

  private get timeoutMs(): number {
    return this.opts.timeoutMs ?? 60_000;
  }

  /** Every status interval: a status update; a ping after half the timeout of silence; dead after all of it. */
  private tick(): void {
    const timeoutMs = this.timeoutMs;
    const silentMs = Date.now() - this.lastHeardMs;
    if (timeoutMs > 0 && silentMs >= timeoutMs) {
      this.giveUp(timeoutMs);
      return;
    }
    const ping = timeoutMs > 0 && silentMs >= timeoutMs / 2 && !this.pinged;
    if (ping) this.pinged = true;
    this.sendStatus(ping);
  }

  private deadError(timeoutMs: number): SluiceError {
    const s = Math.round((Date.now() - this.lastHeardMs) / 1000);
    return new SluiceError(
      'SOURCE_ERROR',
      `source: replication connection: no data from the source for ${s} s (source.replicationTimeoutMs is ${timeoutMs} ms): the path to it is treated as dead`,
      { retryable: true },
    );
  }

  /** The path is dead: drop the socket without a goodbye and report it once. */
  private giveUp(timeoutMs: number): void {
    if (this.stopped) return;
    const err = this.deadError(timeoutMs);
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const client = this.client;
    this.client = null;
    if (client) destroyClient(client);
    this.opts.onError(err);
  }

  /** Declares everything up to `lsn` durable: the slot may release WAL before it. */
  confirm(lsn: Lsn): void {
    if (lsn > this.confirmed) {
      this.confirmed = lsn;
      this.sendStatus(false);
    }
  }

  get confirmedLsn(): Lsn {
    return this.confirmed;
  }

  private handle(chunk: Buffer): void {
    let msg;
    this.lastHeardMs = Date.now();
    this.pinged = false;
    try {
      // XLogData, the usual frame: only its end LSN and payload are needed (no object, one BigInt).
      if (chunk[0] === 0x77 /* 'w' */ && chunk.length >= 25) {
        const endLsn = chunk.readBigUInt64BE(9) as Lsn;
        if (endLsn > this.received) this.received = endLsn;
        this.opts.onMessage(decodePgoutputRaw(chunk.subarray(25)), endLsn);
        return;
      }
      msg = decodeCopyData(chunk);
      if (msg.type === 'keepalive') {
        if (msg.walEnd > this.received) this.received = msg.walEnd;
        this.opts.onKeepalive(msg.walEnd);
        if (msg.replyRequested) this.sendStatus(false);
        return;
      }
      if (msg.endLsn > this.received) this.received = msg.endLsn;
      this.opts.onMessage(decodePgoutputRaw(msg.payload), msg.endLsn);
    } catch (err) {
      this.opts.onError(
        err instanceof SluiceError ? err : new SluiceError('SOURCE_ERROR', `source: replication stream: ${(err as Error).message}`, { cause: err }),
      );
    }
  }

  private sendStatus(replyRequested: boolean): void {
    const client = this.client;
    if (!client || this.stopped) return;
    try {
      (client.connection as unknown as { sendCopyFromChunk(b: Buffer): void }).sendCopyFromChunk(
        encodeStandbyStatus(Lsn.max(this.received, this.confirmed), this.confirmed, this.confirmed, Date.now(), replyRequested),
      );
    } catch {
      // The connection is going away; the error event reports it.
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.sendStatus(false);
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const client = this.client;
    this.client = null;
    if (client) {
      // Ending the connection ends the walsender; the last status update above carried the ack.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        client.end().then(
          () => {
            clearTimeout(t);
            resolve();
          },
          () => {
            clearTimeout(t);
            resolve();
          },
        );
      });
    }
  }
}
