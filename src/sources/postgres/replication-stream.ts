/**
 * A logical replication connection streaming pgoutput from a slot (START_REPLICATION), with the
 * standby status updates that acknowledge what the caller says is durable.
 *
 * It never acknowledges on its own: `confirm(lsn)` is called by the streamer only after the change
 * log has fsync'd everything up to `lsn` (DESIGN.md contract 1).
 */
import pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { Lsn } from '../../core/types.js';
import { quoteIdent } from '../../destinations/postgres/dialect.js';
import { connectError, classify, redactUrl } from './errors.js';
import { decodeCopyData, decodePgoutput, encodeStandbyStatus, type PgoutputMessage } from './pgoutput-decoder.js';

export interface ReplicationStreamOptions {
  readonly url: string;
  readonly slot: string;
  readonly publication: string;
  readonly startLsn: Lsn;
  /** How often a status update is sent even when nothing changed (keeps wal_sender_timeout away). */
  readonly statusIntervalMs?: number;
  /** Called for every pgoutput message, in stream order, synchronously. */
  readonly onMessage: (msg: PgoutputMessage, walEnd: Lsn) => void;
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

  constructor(private readonly opts: ReplicationStreamOptions) {}

  async start(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      replication: 'database',
      // Text values must round-trip exactly: fix the output styles of the walsender session.
      options: '-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC',
    } as pg.ClientConfig);
    try {
      await client.connect();
    } catch (err) {
      throw connectError('source', redactUrl(this.opts.url), err);
    }
    this.client = client;
    this.confirmed = this.opts.startLsn;
    client.on('error', (err) => {
      if (!this.stopped) this.opts.onError(classify('source', 'replication connection', err));
    });
    client.connection.on('copyData', (msg: { chunk: Buffer }) => this.handle(msg.chunk));
    const pub = this.opts.publication.replace(/'/g, "''").replace(/"/g, '""');
    const sql =
      `START_REPLICATION SLOT ${quoteIdent(this.opts.slot)} LOGICAL ${Lsn.format(this.opts.startLsn)} ` +
      `(proto_version '1', publication_names '"${pub}"', messages 'true')`;
    await new Promise<void>((resolve, reject) => {
      let started = false;
      const onStart = () => {
        started = true;
        resolve();
      };
      client.connection.once('copyBothResponse' as never, onStart);
      client.connection.once('replicationStart' as never, onStart);
      client.query(sql, (err: Error | null) => {
        if (err && !this.stopped) {
          const e = classify('source', 'START_REPLICATION', err);
          if (started) this.opts.onError(e);
          else reject(e);
        }
      });
    });
    this.timer = setInterval(() => this.sendStatus(false), this.opts.statusIntervalMs ?? 1000);
    this.timer.unref();
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
    try {
      msg = decodeCopyData(chunk);
      if (msg.type === 'keepalive') {
        if (msg.walEnd > this.received) this.received = msg.walEnd;
        this.opts.onKeepalive(msg.walEnd);
        if (msg.replyRequested) this.sendStatus(false);
        return;
      }
      if (msg.endLsn > this.received) this.received = msg.endLsn;
      this.opts.onMessage(decodePgoutput(msg.payload), msg.endLsn);
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
