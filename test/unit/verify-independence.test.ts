/**
 * `sluice verify` checks what the copier wrote, so it must not build its key ranges with the copier's
 * code: a boundary mistake there would then hide in both. This reads the import lines of the .ts
 * sources (the repository's src/, not dist/) and fails when src/verify reaches the copier's chunking
 * or its chunk SQL builders, directly or through anything it imports.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/unit/: three levels up is the repository root.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const verifyDir = path.join(root, 'src', 'verify');

/** Modules src/verify may not reach at all: the copier and how it cuts and queues chunks. */
const FORBIDDEN_MODULES = ['src/pipeline/chunking.ts', 'src/pipeline/copier.ts', 'src/pipeline/chunk-queue.ts'];
/** The copier's SQL module: src/verify may not import it itself. */
const COPIER_DIALECT = 'src/destinations/postgres/dialect.ts';
/** The chunk builders in it (and in chunking.ts): nothing src/verify reaches may import them by name. */
const CHUNK_BUILDERS = ['chunkPredicate', 'chunkSelectSql', 'chunkBoundarySql', 'copyOutSql', 'KeysetTable', 'KeyRange', 'rangePredicate', 'keyLiteral', 'keyTuple'];

interface Import {
  /** Repository-relative path of the imported .ts file. */
  readonly file: string;
  readonly names: string[];
}

/** Relative imports and re-exports of a .ts file (static, side-effect and dynamic), resolved to .ts paths. */
function importsOf(rel: string): Import[] {
  const text = readFileSync(path.join(root, rel), 'utf8');
  const out: Import[] = [];
  const pattern = /\b(?:import|export)\s+(?:type\s+)?([^'";]*?)\s*\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;
  for (const m of text.matchAll(pattern)) {
    const spec = m[2] ?? m[3];
    if (!spec.startsWith('.')) continue;
    const file = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\.js$/, '.ts');
    const names = (m[1] ?? '').replace(/[{}*]/g, ' ').split(/[\s,]+/).filter((n) => n !== '' && n !== 'type' && n !== 'as');
    out.push({ file, names });
  }
  return out;
}

/** Every file reachable from `start` through relative imports, with what each imports. */
function closure(start: string[]): Map<string, Import[]> {
  const seen = new Map<string, Import[]>();
  const todo = [...start];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f) || !existsSync(path.join(root, f))) continue;
    const deps = importsOf(f);
    seen.set(f, deps);
    todo.push(...deps.map((d) => d.file));
  }
  return seen;
}

function violations(start: string[]): string[] {
  const problems: string[] = [];
  for (const [file, deps] of closure(start)) {
    for (const d of deps) {
      if (FORBIDDEN_MODULES.includes(d.file)) problems.push(`${file} imports ${d.file}`);
      if (start.includes(file) && d.file === COPIER_DIALECT) problems.push(`${file} imports ${d.file}`);
      const builders = d.names.filter((n) => CHUNK_BUILDERS.includes(n));
      if (builders.length > 0 && (d.file === COPIER_DIALECT || FORBIDDEN_MODULES.includes(d.file))) {
        problems.push(`${file} imports ${builders.join(', ')} from ${d.file}`);
      }
    }
  }
  return problems;
}

const verifyFiles = readdirSync(verifyDir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => `src/verify/${f}`);

test('src/verify shares no code with the copier: no chunking, copier or chunk-builder import, directly or not', () => {
  assert.ok(verifyFiles.includes('src/verify/verifier.ts') && verifyFiles.includes('src/verify/ranges.ts'), `found ${verifyFiles.join(', ')}`);
  assert.deepEqual(violations(verifyFiles), []);
});

test('the check sees imports: the copier itself fails it', () => {
  // Guards the guard: a pattern that matched nothing would pass everything.
  const problems = violations(['src/pipeline/copier.ts']);
  assert.ok(problems.some((p) => p.includes('src/pipeline/chunking.ts')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('copyOutSql') || p.includes('KeysetTable')), problems.join('\n'));
  const verifierImports = importsOf('src/verify/verifier.ts').map((d) => d.file);
  assert.ok(verifierImports.includes('src/verify/ranges.ts'), verifierImports.join(', '));
});
