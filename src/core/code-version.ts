/** The git commit sluice runs from, for audit records: read from the checkout's .git, null in an installed package. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null | undefined;

export function gitCommit(): string | null {
  if (cached !== undefined) return cached;
  cached = null;
  try {
    // dist/src/core → the package root; src/core under a TypeScript runner → also found by walking up.
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 5 && !existsSync(join(dir, 'package.json')); i++) dir = dirname(dir);
    const git = join(dir, '.git');
    if (!existsSync(git)) return cached;
    // A worktree's .git is a file naming the real git directory.
    const gitDir = readFileSync(git, 'utf8').startsWith('gitdir:') ? readFileSync(git, 'utf8').slice(7).trim() : git;
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref:')) return (cached = head);
    const ref = head.slice(4).trim();
    const loose = join(gitDir, ref);
    if (existsSync(loose)) return (cached = readFileSync(loose, 'utf8').trim());
    const common = existsSync(join(gitDir, 'commondir')) ? join(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim()) : gitDir;
    for (const base of [join(common, ref), join(common, 'packed-refs')]) {
      if (!existsSync(base)) continue;
      const text = readFileSync(base, 'utf8');
      if (base.endsWith(ref)) return (cached = text.trim());
      const line = text.split('\n').find((l) => l.endsWith(` ${ref}`));
      if (line) return (cached = line.split(' ')[0]);
    }
  } catch {
    // an unreadable checkout: no commit recorded
  }
  return cached;
}
