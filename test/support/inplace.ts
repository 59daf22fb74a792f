/** A database and job files for in-place job tests: `inplaceFixture(name)` in a test file's top level. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { startCluster, type Cluster } from './clusters.js';
import { sluice, type Result } from './sluice.js';

export interface InplaceFixture {
  db(): Cluster;
  dir(): string;
  /** Writes job `name` (database and reason filled in) and returns its path. */
  jobFile(name: string, yaml: string): string;
  /** `sluice inplace …`, with a config path that does not exist, so the job's own database: is used. */
  cli(args: string[]): Promise<Result>;
}

export function inplaceFixture(name: string): InplaceFixture {
  let db: Cluster | undefined;
  let dir = '';
  before(async () => {
    db = await startCluster({ name });
    dir = mkdtempSync(join(tmpdir(), `sluice-${name}-`));
  });
  after(async () => {
    await db?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    db: () => db!,
    dir: () => dir,
    jobFile(job, yaml) {
      const f = join(dir, `${job}.yaml`);
      writeFileSync(f, `job: ${job}\ndatabase: "${db!.url()}"\nreason: "test ${job}"\n${yaml}\n`);
      return f;
    },
    cli: (args) => sluice(['-c', join(dir, 'none.yaml'), 'inplace', ...args], { timeoutMs: 120_000 }),
  };
}
