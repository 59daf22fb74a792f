/**
 * The machine's own PostgreSQL server binaries (Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin),
 * for starting throwaway clusters of another major version than the embedded 17 with
 * `startClusters({ binDir })`. Runs as the `postgres` OS user when we are root, like the embedded ones.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** The bin directory of the installed PostgreSQL `major` (initdb and postgres present), or null. */
export function systemPostgresBinDir(major: number, root = '/usr/lib/postgresql'): string | null {
  const dir = path.join(root, String(major), 'bin');
  return existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'postgres')) ? dir : null;
}

/** Same, but a missing installation is an error naming the package to install. */
export function requireSystemPostgresBinDir(major: number): string {
  const dir = systemPostgresBinDir(major);
  if (!dir) {
    throw new Error(
      `PostgreSQL ${major} server binaries not found in /usr/lib/postgresql/${major}/bin; install them (apt-get install postgresql-${major})`,
    );
  }
  return dir;
}
