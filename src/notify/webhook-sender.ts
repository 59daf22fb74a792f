/**
 * The WebhookSender: turns each lifecycle event into one stored delivery per matching webhook, and
 * sends due deliveries as signed JSON POSTs. Only a 2xx response counts; anything else (an error
 * code, a refused connection, a timeout) is tried again on the backoff schedule until the webhook's
 * maxAttempts, then the delivery is marked failed. At least once: a receiver drops duplicates by the
 * X-Sluice-Delivery header (or the body's `id`). Never blocks the pipeline: events are stored at once
 * and sent by a timer.
 */
import { randomUUID } from 'node:crypto';
import { eventMatches, type SluiceEvent } from '../core/events.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { WebhookConfig } from '../config/schema.js';
import { retryDelayMs } from './backoff.js';
import type { Delivery, DeliveryLog } from './delivery-log.js';
import { SIGNATURE_HEADER, signBody } from './signature.js';

/** How often due deliveries are looked for (a new event is sent at once). */
const POLL_MS = 500;
/** Deliveries in flight at once, over every webhook. */
const MAX_IN_FLIGHT = 8;

export interface Webhook extends WebhookConfig {
  /** The signing key, resolved from `secret` or `secretEnv`. */
  readonly key: string;
}

/** The body sent: the event, with an id that stays the same across retries. */
export function deliveryBody(id: string, event: SluiceEvent): string {
  return JSON.stringify({ id, event: event.name, at: event.at, pipeline: event.pipeline, table: event.table ?? null, detail: event.detail });
}

/** Scheme, host and port: webhook URLs often carry a secret in their path (Slack's do), never logged. */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}

export class WebhookSender {
  private timer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<string>();
  private readonly sends = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly log: DeliveryLog,
    private readonly webhooks: readonly Webhook[],
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.timer) return;
    this.log.prune();
    this.timer = setInterval(() => this.sendDue(), POLL_MS);
    this.timer.unref();
    this.sendDue();
  }

  /** Stores a delivery for each webhook whose patterns match, then sends what is due. */
  enqueue(event: SluiceEvent): void {
    let added = false;
    for (const w of this.webhooks) {
      if (!w.events.some((p) => eventMatches(p, event.name))) continue;
      const id = randomUUID();
      this.log.add({ id, event: event.name, table: event.table ?? null, url: w.url, body: deliveryBody(id, event) });
      added = true;
    }
    if (added && this.timer) this.sendDue();
  }

  /** Stops sending; attempts in flight finish (and are recorded), pending deliveries stay for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.sends]);
  }

  private sendDue(): void {
    if (this.stopped) return;
    let due: Delivery[];
    try {
      due = this.log.due(Date.now(), MAX_IN_FLIGHT * 2);
    } catch (err) {
      this.logger.warn('reading the webhook delivery log failed', { error: errorMessage(err) });
      return;
    }
    for (const d of due) {
      if (this.inFlight.size >= MAX_IN_FLIGHT) break;
      if (this.inFlight.has(d.id)) continue;
      this.inFlight.add(d.id);
      const p = this.attempt(d).finally(() => {
        this.inFlight.delete(d.id);
        this.sends.delete(p);
      });
      this.sends.add(p);
    }
  }

  private async attempt(d: Delivery): Promise<void> {
    const attempt = d.attempts + 1;
    const at = Date.now();
    const hook = this.webhooks.find((w) => w.url === d.url);
    let statusCode: number | null = null;
    let error: string | null = null;
    if (!hook) {
      error = 'no webhook with this url in the config any more';
    } else {
      try {
        const res = await fetch(d.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'sluice-webhook',
            'x-sluice-event': d.event,
            'x-sluice-delivery': d.id,
            [SIGNATURE_HEADER.toLowerCase()]: signBody(hook.key, d.body, at / 1000),
          },
          body: d.body,
          signal: AbortSignal.timeout(hook.timeoutMs),
          redirect: 'manual',
        });
        statusCode = res.status;
        await res.body?.cancel().catch(() => {});
        if (res.status < 200 || res.status > 299) error = `HTTP ${res.status}`;
      } catch (err) {
        error = errorMessage((err as { cause?: unknown }).cause ?? err);
      }
    }
    const delivered = error === null;
    const giveUp = !hook || attempt >= hook.maxAttempts;
    const outcome = delivered
      ? { status: 'delivered' as const, nextAttemptAt: null }
      : giveUp
        ? { status: 'failed' as const, nextAttemptAt: null }
        : { status: 'pending' as const, nextAttemptAt: Date.now() + retryDelayMs(attempt) };
    try {
      this.log.recordAttempt({ deliveryId: d.id, attempt, at, statusCode, error, durationMs: Date.now() - at }, outcome);
    } catch (err) {
      this.logger.warn('recording a webhook delivery failed', { error: errorMessage(err) });
    }
    if (delivered) this.logger.debug('webhook delivered', { event: d.event, url: originOf(d.url), delivery: d.id, attempt });
    else if (outcome.status === 'failed') this.logger.error('webhook delivery failed; giving up', { event: d.event, url: originOf(d.url), delivery: d.id, attempt, error });
    else this.logger.warn('webhook delivery failed; will retry', { event: d.event, url: originOf(d.url), delivery: d.id, attempt, error, inMs: outcome.nextAttemptAt! - Date.now() });
  }
}
