/**
 * Lifecycle events of a running pipeline: what an operator is told about (the page's live stream,
 * webhooks, executable hooks, the activity log). The pipeline emits them on one bus; listeners
 * subscribe and must not throw or block (a listener's error is swallowed: an event never stops a
 * backfill). Names are stable: they are matched by webhook patterns and hook file names.
 */
export const EVENT_NAMES = [
  'backfill.requested',
  'backfill.started',
  'backfill.completed',
  'backfill.failed',
  'backfill.cancelled',
  'swap.completed',
  'lag.exceeded',
  'lag.recovered',
  'slot.retained_exceeded',
  'throttle.engaged',
  'throttle.released',
  'catchup.not_converging',
  'verify.completed',
] as const;

export type EventName = (typeof EVENT_NAMES)[number];

export interface SluiceEvent {
  readonly name: EventName;
  /** ISO-8601 time the event happened. */
  readonly at: string;
  readonly pipeline: string;
  /** The source table (schema.name) the event is about, when it is about one. */
  readonly table?: string;
  /** Event-specific facts (run id, mode, rows, reason, lag seconds…): small, JSON-serialisable. */
  readonly detail: Readonly<Record<string, unknown>>;
}

export type EventListener = (event: SluiceEvent) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();

  constructor(readonly pipeline: string) {}

  /** Subscribes; the returned function unsubscribes. */
  on(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(name: EventName, detail: Record<string, unknown> = {}, table?: string): SluiceEvent {
    const event: SluiceEvent = { name, at: new Date().toISOString(), pipeline: this.pipeline, table, detail };
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own: the pipeline goes on.
      }
    }
    return event;
  }
}

/** Whether an event name matches a pattern: exact, `*`, or a prefix wildcard such as `backfill.*`. */
export function eventMatches(pattern: string, name: EventName): boolean {
  if (pattern === '*' || pattern === name) return true;
  return pattern.endsWith('.*') && name.startsWith(pattern.slice(0, -1));
}
