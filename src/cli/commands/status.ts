import { computeStatus, renderStatus } from '../../pipeline/status.js';
import { readConfig, type GlobalOptions } from '../shared.js';

export async function statusCommand(flags: { json?: boolean }, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const s = await computeStatus(cfg);
  if (flags.json) {
    process.stdout.write(JSON.stringify(s, null, 2) + '\n');
  } else {
    process.stdout.write(renderStatus(s) + '\n');
  }
  return 0;
}
