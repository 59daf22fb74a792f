/**
 * `GET /api/v1/events`: server-sent events. `event: status` carries the whole snapshot (status and
 * live counters), first at once and then every second; `event: lifecycle` carries the pipeline's
 * lifecycle events (src/core/events.ts) with an `id:`, and a reconnecting client's `Last-Event-ID`
 * replays the ones it missed from the last 500 kept.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SluiceEvent } from '../core/events.js';
import type { Pipeline } from '../pipeline/orchestrator.js';
import type { StatusFeed } from './status-feed.js';

const KEPT = 500;
const TICK_MS = 1000;
const PING_MS = 15_000;

export interface NumberedEvent extends SluiceEvent {
  readonly id: number;
}

export class EventStream {
  private readonly clients = new Set<ServerResponse>();
  private readonly recent: NumberedEvent[] = [];
  private nextId = 1;
  private bus: Pipeline['events'] | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly timer: NodeJS.Timeout;
  private lastPing = Date.now();

  constructor(
    private readonly feed: StatusFeed,
    private readonly pipeline: () => Pipeline,
  ) {
    this.follow();
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  /** The lifecycle events kept, oldest first (the Activity page). */
  events(): NumberedEvent[] {
    return [...this.recent];
  }

  open(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.write('retry: 2000\n\n');
    const after = Number(req.headers['last-event-id']);
    if (Number.isInteger(after)) for (const e of this.recent) if (e.id > after) res.write(frame('lifecycle', e, e.id));
    this.clients.add(res);
    req.on('close', () => this.clients.delete(res));
    void this.feed.snapshot().then(
      (s) => res.write(frame('status', s)),
      () => {},
    );
  }

  close(): void {
    clearInterval(this.timer);
    this.unsubscribe?.();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  /** Subscribes to the pipeline's bus (again when `sluice run` started a new pipeline after a lost slot). */
  private follow(): void {
    const bus = this.pipeline().events;
    if (bus === this.bus) return;
    this.unsubscribe?.();
    this.bus = bus;
    this.unsubscribe = bus.on((e) => {
      const numbered = { ...e, id: this.nextId++ };
      this.recent.push(numbered);
      if (this.recent.length > KEPT) this.recent.shift();
      this.broadcast(frame('lifecycle', numbered, numbered.id));
    });
  }

  private async tick(): Promise<void> {
    this.follow();
    if (this.clients.size === 0) return;
    try {
      this.broadcast(frame('status', await this.feed.snapshot()));
    } catch {
      // The destination is unreachable for a moment: the page keeps its last picture and says so.
      this.broadcast(frame('unavailable', { at: new Date().toISOString() }));
    }
    if (Date.now() - this.lastPing > PING_MS) {
      this.lastPing = Date.now();
      this.broadcast(': ping\n\n');
    }
  }

  private broadcast(text: string): void {
    for (const res of this.clients) res.write(text);
  }
}

/** One SSE message; the data is JSON on one line. */
export function frame(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
