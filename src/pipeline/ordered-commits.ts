/**
 * Keyset chunks copied two at a time, committed in key order.
 *
 * A keyset chunk's progress is the last key it copied (`_sluice.tables.last_key`), written in the
 * chunk's own transaction: a resume starts after it. For that to stay true with two chunks in
 * flight, a chunk may copy as soon as it is planned, but commits only after the chunk planned before
 * it has committed. Then a crash leaves committed chunks that form a prefix of the key order, exactly
 * as with one chunk at a time, and the in-flight ones (rolled back) are planned again.
 *
 * Turns are handed out when a chunk is planned (planning is serialised per table, in key order).
 * A retried chunk keeps its turn. When the load fails for good (`fail`), every chunk still waiting
 * for its turn gives up with that error, so it rolls back and the load ends.
 */
import type { Chunk, Planner } from './chunking.js';
import type pg from 'pg';

interface Turn {
  /** resolves when every chunk planned before this one has committed */
  readonly before: Promise<void>;
  committed(): void;
}

export class OrderedCommits {
  private tail: Promise<void> = Promise.resolve();
  private readonly turns = new WeakMap<Chunk, Turn>();
  private failure: unknown = null;
  private readonly failed: Promise<never>;
  private rejectAll!: (err: unknown) => void;

  constructor() {
    this.failed = new Promise<never>((_, reject) => (this.rejectAll = reject));
    this.failed.catch(() => {});
  }

  /** Wraps a planner so that each chunk it hands out gets the next turn. */
  plan(inner: Planner): Planner {
    const self = this;
    return {
      strategy: inner.strategy,
      parallelism: inner.parallelism,
      async next(src: pg.ClientBase) {
        const chunk = await inner.next(src);
        if (chunk) self.register(chunk);
        return chunk;
      },
      done(chunk: Chunk, rows: number, seconds: number) {
        inner.done(chunk, rows, seconds);
      },
    };
  }

  private register(chunk: Chunk): void {
    const before = this.tail;
    let committed!: () => void;
    const mine = new Promise<void>((resolve) => (committed = resolve));
    this.tail = mine;
    this.turns.set(chunk, { before, committed });
  }

  /** Waits until `chunk` may commit (its predecessors have); throws once the load has failed. */
  async waitTurn(chunk: Chunk): Promise<void> {
    if (this.failure) throw this.failure;
    const t = this.turns.get(chunk);
    if (!t) return;
    await Promise.race([t.before, this.failed]);
  }

  /** `chunk` has committed: the next one may. */
  committed(chunk: Chunk): void {
    this.turns.get(chunk)?.committed();
  }

  /** The load failed for good: chunks waiting for their turn give up. */
  fail(err: unknown): void {
    if (this.failure) return;
    this.failure = err ?? new Error('the load failed');
    this.rejectAll(this.failure);
  }
}
