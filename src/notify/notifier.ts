/**
 * The Notifier: subscribes to a pipeline's EventBus and hands every event to the webhooks (through
 * the stored delivery log) and to the executable hooks. Built from the `notify` section of the
 * config; `sluice run` and `sluice verify` start one. It never throws into the pipeline: a bus
 * listener's failure is logged here.
 */
import { join } from 'node:path';
import type { SluiceConfig } from '../config/schema.js';
import type { EventBus } from '../core/events.js';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { DeliveryLog } from './delivery-log.js';
import { HookRunner } from './hook-runner.js';
import { WebhookSender, type Webhook } from './webhook-sender.js';

/** Where the delivery log of a pipeline is: `notify.path`, else `notify.db` beside the embedded change log. */
export function notifyDbPath(cfg: Pick<SluiceConfig, 'notify' | 'log' | 'pipeline'>): string {
  if (cfg.notify.path) return cfg.notify.path;
  return join(cfg.log.type === 'embedded' ? cfg.log.path : join('.sluice', cfg.pipeline.name), 'notify.db');
}

/** The webhooks of the config with their signing keys; a `secretEnv` that is not set is a config error (exit 2). */
export function resolveWebhooks(cfg: Pick<SluiceConfig, 'notify'>, env: NodeJS.ProcessEnv = process.env): Webhook[] {
  return cfg.notify.webhooks.map((w, i) => {
    const key = w.secret ?? env[w.secretEnv!];
    if (!key) {
      throw new SluiceError(
        'CONFIG_INVALID',
        `notify.webhooks[${i}].secretEnv: the environment variable ${w.secretEnv} is not set; set it to the webhook's signing secret, or give notify.webhooks[${i}].secret`,
      );
    }
    return { ...w, key };
  });
}

export class Notifier {
  private readonly log: DeliveryLog | null;
  private readonly sender: WebhookSender | null;
  private readonly hooks: HookRunner | null;
  private readonly logger: Logger;
  private unsubscribe: (() => void) | null = null;

  constructor(cfg: SluiceConfig, logger: Logger) {
    const log = logger.child({ part: 'notify' });
    const webhooks = resolveWebhooks(cfg);
    this.log = webhooks.length > 0 ? new DeliveryLog(notifyDbPath(cfg)) : null;
    this.sender = this.log ? new WebhookSender(this.log, webhooks, log) : null;
    this.hooks = cfg.notify.hooksDir ? new HookRunner(cfg.notify.hooksDir, cfg.notify.hookTimeoutMs, log) : null;
    this.logger = log;
  }

  /** Whether anything listens (webhooks or a hooks directory). */
  get enabled(): boolean {
    return this.sender !== null || this.hooks !== null;
  }

  /** Subscribes to `bus` and sends what earlier runs left pending. */
  start(bus: EventBus): this {
    if (!this.enabled || this.unsubscribe) return this;
    this.sender?.start();
    this.unsubscribe = bus.on((event) => {
      try {
        this.sender?.enqueue(event);
        this.hooks?.run(event);
      } catch (err) {
        this.logger.warn('notification failed', { event: event.name, error: errorMessage(err) });
      }
    });
    return this;
  }

  /** Stops listening; attempts and hooks in flight finish, pending deliveries wait for the next start. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.sender?.stop();
    await this.hooks?.stop();
    this.log?.close();
  }
}

/**
 * For a command that is not the running pipeline (`sluice verify`): a bus of its own, its events
 * sent (the first attempt of each webhook is made before this returns; a failed one stays in the
 * delivery log and the next `sluice run` retries it), and the hooks waited for.
 */
export async function notifyOnce(cfg: SluiceConfig, logger: Logger, bus: EventBus, emit: () => void): Promise<void> {
  const notifier = new Notifier(cfg, logger);
  if (!notifier.enabled) return emit();
  notifier.start(bus);
  try {
    emit();
  } finally {
    await notifier.stop();
  }
}
