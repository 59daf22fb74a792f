/**
 * The layout's nevers (docs/architecture.md, "Ports"), checked over the import statements of every
 * .ts file under src/ (the repository's sources, not dist/), so the layout cannot drift silently:
 *
 * - core imports nothing of ours outside core;
 * - a source never imports a destination, and the other way round; a driver never imports another driver;
 * - drivers never import the pipeline, the verifier, the CLI or the composition root;
 * - the ports (sources/source.ts, destinations/destination.ts, changelog/changelog.ts) import only core;
 * - the change log never imports the pipeline or a driver;
 * - the pipeline never imports the CLI;
 * - the verifier never imports the copier or the chunk code it uses;
 * - only the composition root (src/engines.ts) imports a concrete driver. The pipeline, verifier and
 *   CLI files that still run PostgreSQL SQL of their own are listed in STILL_ON_POSTGRES: a listed
 *   file that no longer imports a driver fails the test until it is taken off the list, and a file
 *   not on the list that starts to import one fails it too. The list only ever shrinks.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/unit/: three levels up is the repository root.
const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Repository-relative paths (src/...) of every .ts file under src/. */
function sourceFiles(dir = 'src'): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** Relative imports and re-exports of a .ts file (static, type-only, side-effect and dynamic), resolved to .ts paths. */
function importsOf(rel: string): string[] {
  const text = readFileSync(path.join(root, rel), 'utf8');
  const pattern = /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\s*\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;
  const out: string[] = [];
  for (const m of text.matchAll(pattern)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith('.')) continue;
    out.push(path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const PORTS = new Set(['src/sources/source.ts', 'src/destinations/destination.ts', 'src/changelog/changelog.ts']);
const ROOT = 'src/engines.ts';

const under = (file: string, dir: string) => file.startsWith(`${dir}/`);
const isSource = (f: string) => under(f, 'src/sources');
const isDestination = (f: string) => under(f, 'src/destinations');
/** A file of a concrete driver: sources/<engine>/, destinations/<engine>/, or postgres/ (what both PostgreSQL drivers share). */
function isDriver(f: string): boolean {
  if (under(f, 'src/postgres')) return true;
  return (isSource(f) || isDestination(f)) && f.split('/').length > 3;
}
/** Which driver a driver file belongs to: `sources/postgres`, `destinations/duckdb`, `postgres`. */
const driverOf = (f: string) => (under(f, 'src/postgres') ? 'postgres' : f.split('/').slice(1, 3).join('/'));
/** Which engine a driver serves: both PostgreSQL drivers share src/postgres/. */
const engineOf = (f: string) => (under(f, 'src/postgres') ? 'postgres' : f.split('/')[2]);
const COPIER = ['src/pipeline/copier.ts', 'src/pipeline/chunking.ts', 'src/pipeline/chunk-queue.ts'];

/**
 * Files outside the drivers that still import a PostgreSQL driver: their SQL moves behind the ports
 * next (docs/architecture.md, "Ports", what is left). Nothing may be added here.
 */
const STILL_ON_POSTGRES = new Set([
  'src/pipeline/chunk-queue.ts',
  'src/pipeline/chunking.ts',
  'src/pipeline/context.ts',
  'src/pipeline/control-channel.ts',
  'src/pipeline/copier.ts',
  'src/pipeline/inspector.ts',
  'src/pipeline/orchestrator.ts',
  'src/pipeline/slot-guard.ts',
  'src/pipeline/source-indexes.ts',
  'src/pipeline/status.ts',
  'src/pipeline/streamer.ts',
  'src/pipeline/target-tables.ts',
  'src/pipeline/throttler.ts',
  'src/verify/verifier.ts',
]);

/** Every rule broken by one import of `file`, in words. */
function broken(file: string, dep: string): string[] {
  const out: string[] = [];
  const edge = `${file} imports ${dep}`;
  if (under(file, 'src/core') && !under(dep, 'src/core')) out.push(`core imports nothing of ours: ${edge}`);
  if ((isSource(file) && isDestination(dep)) || (isDestination(file) && isSource(dep))) out.push(`a source and a destination never import each other: ${edge}`);
  if (isDriver(file) && isDriver(dep) && driverOf(file) !== driverOf(dep) && !(under(dep, 'src/postgres') && engineOf(file) === 'postgres')) {
    out.push(`a driver never imports another driver: ${edge}`);
  }
  if (isDriver(file) && (under(dep, 'src/pipeline') || under(dep, 'src/verify') || under(dep, 'src/cli') || dep === ROOT)) {
    out.push(`drivers never import the pipeline, the verifier, the CLI or the composition root: ${edge}`);
  }
  if (PORTS.has(file) && !under(dep, 'src/core')) out.push(`a port imports only core: ${edge}`);
  if (under(file, 'src/changelog') && (under(dep, 'src/pipeline') || isDriver(dep))) out.push(`the change log never imports the pipeline or a driver: ${edge}`);
  if (under(file, 'src/pipeline') && under(dep, 'src/cli')) out.push(`the pipeline never imports the CLI: ${edge}`);
  if (under(file, 'src/verify') && COPIER.includes(dep)) out.push(`the verifier never imports the copier: ${edge}`);
  return out;
}

const graph = new Map(sourceFiles().map((f) => [f, importsOf(f)] as const));

test('the import graph keeps the nevers', () => {
  assert.ok(graph.size > 50, `expected the sources under src/, found ${graph.size} files`);
  const problems = [...graph].flatMap(([file, deps]) => deps.flatMap((dep) => broken(file, dep)));
  assert.deepEqual(problems, []);
});

test('every import resolves to a file under src/ (the check reads what the build compiles)', () => {
  const missing = [...graph].flatMap(([file, deps]) => deps.filter((d) => under(d, 'src') && !graph.has(d)).map((d) => `${file} imports ${d}`));
  assert.deepEqual(missing, []);
});

test('only the composition root names a concrete driver (besides the files still on the list)', () => {
  const onDrivers = [...graph]
    .filter(([file]) => !isDriver(file) && file !== ROOT)
    .filter(([file]) => under(file, 'src/pipeline') || under(file, 'src/verify') || under(file, 'src/cli') || under(file, 'src/api'))
    .filter(([, deps]) => deps.some(isDriver))
    .map(([file]) => file);
  const added = onDrivers.filter((f) => !STILL_ON_POSTGRES.has(f));
  const done = [...STILL_ON_POSTGRES].filter((f) => !onDrivers.includes(f));
  assert.deepEqual(added, [], 'these files import a concrete driver: go through the ports (sources/source.ts, destinations/destination.ts)');
  assert.deepEqual(done, [], 'these files no longer import a driver: take them off STILL_ON_POSTGRES');
});

test('the composition root is the one file that builds drivers for both sides', () => {
  const deps = graph.get(ROOT) ?? [];
  assert.ok(deps.some(isSource) && deps.some(isDestination), `${ROOT} maps config types to source and destination drivers`);
});
