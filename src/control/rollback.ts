/**
 * `sluice rollback` as a request (the CLI and the API): what can be checked without the running
 * pipeline is checked here first, so a table with nothing to roll back to is refused before anything
 * is recorded. The running pipeline does the rest (src/pipeline/rollback.ts).
 */
import type { SluiceConfig } from '../config/schema.js';
import { noArchiveToRollBack, SluiceError } from '../core/errors.js';
import { Lsn } from '../core/types.js';
import { destinationFor } from '../engines.js';

/** For each table, the archive it would go back to ("public.t: back to sluice_archive.public_t__7 (archived at 0/1A2B3C)"). */
export async function checkRollback(cfg: SluiceConfig, tables: readonly string[]): Promise<string[]> {
  const destination = destinationFor(cfg);
  const control = await destination.openControl('sluice-cli');
  try {
    if (!control.rollbackArchive) throw new SluiceError('BAD_USAGE', `${destination.type} destinations cannot roll back a table yet`);
    const out: string[] = [];
    for (const t of tables) {
      const a = await control.rollbackArchive(cfg.pipeline.name, t);
      if (!a) throw noArchiveToRollBack(t);
      out.push(`${t}: back to ${a.archive} (archived at ${Lsn.format(a.at.lsn)})`);
    }
    return out;
  } finally {
    await control.close();
  }
}
