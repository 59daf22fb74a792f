/**
 * The one DuckDB file a destination holds, shared by everything of the process that writes it (the
 * chunk writers, the apply session, the CLI's control). DuckDB lets one process write a file
 * (connection.ts), so sluice opens it once and every unit of work takes its turn on the one
 * connection: `exclusive()` runs one at a time, whole transactions included. The file is opened on
 * first use and closed when the last user lets it go.
 */
import type { DuckDbFile } from './connection.js';
import { openDuckDb } from './connection.js';

export class HeldFile {
  private file: Promise<DuckDbFile> | null = null;
  private users = 0;
  private tail: Promise<void> = Promise.resolve();

  constructor(readonly path: string) {}

  /** Counts a user of the file and opens it when none had; a failed open counts nobody. */
  async acquire(): Promise<DuckDbFile> {
    this.users++;
    if (!this.file) this.file = openDuckDb(this.path);
    try {
      return await this.file;
    } catch (err) {
      this.users--;
      this.file = null;
      throw err;
    }
  }

  /** One user lets the file go; the last closes it (after the work queued before). */
  async release(): Promise<void> {
    if (this.users === 0) return;
    this.users--;
    if (this.users > 0 || !this.file) return;
    const file = this.file;
    this.file = null;
    await this.tail;
    (await file.catch(() => null))?.close();
  }

  /** Runs `fn` on the file when the work before it is done: nothing else of this process touches the file meanwhile. */
  async exclusive<T>(fn: (file: DuckDbFile) => Promise<T>): Promise<T> {
    const file = this.file;
    if (!file) throw new Error(`DuckDB destination ${this.path}: used before it was opened`);
    const prev = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((r) => (done = r));
    await prev;
    try {
      return await fn(await file);
    } finally {
      done();
    }
  }
}
