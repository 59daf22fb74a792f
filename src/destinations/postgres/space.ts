/**
 * The destination's free disk space, when it can be told: the server runs on this machine (a
 * local address or a Unix socket) and its data directory is readable here. Anything else is
 * "cannot tell" (null), never a guess: a remote server's disk is not this machine's.
 */
import type pg from 'pg';
import { statfs } from 'node:fs/promises';

export interface DiskSpace {
  /** Bytes available to an unprivileged writer (statfs bavail). */
  readonly freeBytes: number;
  readonly totalBytes: number;
}

/** Free and total bytes of the filesystem of the destination's data directory; null when it cannot tell. */
export async function diskSpace(dst: pg.ClientBase): Promise<DiskSpace | null> {
  try {
    const host = (dst as unknown as { host?: string }).host ?? '';
    if (!['localhost', '127.0.0.1', '::1', ''].includes(host) && !host.startsWith('/')) return null;
    const dir = (await dst.query(`SELECT current_setting('data_directory') AS d`)).rows[0].d as string;
    const s = await statfs(dir);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return null;
  }
}
