import { TableName } from '../../core/types.js';
import { verifyTables, type TableVerdict } from '../../verify/verifier.js';
import { readConfig, type GlobalOptions } from '../shared.js';

/** Exit 0 when every table is equal, 1 with the differing keys otherwise, 2 on error. */
export async function verifyCommand(names: string[], flags: { json?: boolean; attempts?: string }, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const tables = names.length ? names : cfg.tables.map((t) => TableName.format(TableName.parse(t.name)));
  const verdicts = await verifyTables(cfg, tables, { attempts: flags.attempts ? Number(flags.attempts) : undefined });
  if (flags.json) process.stdout.write(JSON.stringify({ equal: verdicts.every((v) => v.equal), tables: verdicts }, null, 2) + '\n');
  else process.stdout.write(renderVerdicts(verdicts) + '\n');
  return verdicts.every((v) => v.equal) ? 0 : 1;
}

export function renderVerdicts(verdicts: TableVerdict[]): string {
  return verdicts
    .map((v) => {
      const head = `${v.equal ? 'EQUAL    ' : 'DIFFERENT'} ${v.table}: source ${v.sourceRows.toLocaleString('en-US')} rows (md5 ${v.sourceMd5.slice(0, 12)}), destination ${v.destinationRows.toLocaleString('en-US')} rows (md5 ${v.destinationMd5.slice(0, 12)})`;
      return [head, ...v.differences.map((d) => `  ${d.key}: ${d.problem}`)].join('\n');
    })
    .join('\n');
}
