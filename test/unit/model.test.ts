/**
 * The protocol model (docs/model/sluice.pml) checked exhaustively by spin: the model as built holds
 * every property, and each variant that drops a safeguard (the in-flight wait, acknowledging only what
 * is flushed, the one-transaction swap) yields a counterexample.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Runs from dist/test/unit/: the model lives in the repository, not in dist.
const modelDir = fileURLToPath(new URL('../../../docs/model/', import.meta.url));
const maxDepth = 10_000;

interface PanResult {
  output: string;
  errors: number;
  statesStored: number;
  depthReached: number;
  trail: boolean;
}

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}:\n${out}`);
  return out;
}

function requireTool(cmd: string, versionArg: string, install: string): void {
  const r = spawnSync(cmd, [versionArg], { encoding: 'utf8' });
  assert.ok(!r.error && r.status === 0, `${cmd} is not installed: ${install} (.ci/run installs it)`);
}

/**
 * spin -a with the given switches, gcc, pan: the exhaustive search's report. A variant stops at its
 * first counterexample, so it compiles unoptimized (faster to build, and the search is tiny).
 */
function check(defines: string[], optimize = '-O2'): PanResult {
  requireTool('spin', '-V', 'apt-get install -y spin');
  requireTool('gcc', '--version', 'apt-get install -y gcc');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-model-'));
  try {
    copyFileSync(join(modelDir, 'sluice.pml'), join(dir, 'sluice.pml'));
    run('spin', [...defines, '-a', 'sluice.pml'], dir);
    run('gcc', [optimize, '-w', '-o', 'pan', 'pan.c'], dir);
    // pan's exit status does not tell errors apart; its report does.
    const pan = spawnSync('./pan', [`-m${maxDepth}`, '-w21'], { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    if (pan.error) throw pan.error;
    const output = `${pan.stdout}${pan.stderr}`;
    const num = (re: RegExp): number => {
      const m = re.exec(output);
      assert.ok(m, `pan's report lacks ${re}:\n${output}`);
      return Number(m[1]);
    };
    return {
      output,
      errors: num(/errors: (\d+)/),
      statesStored: num(/(\d+) states, stored/),
      depthReached: num(/depth reached (\d+)/),
      trail: existsSync(join(dir, 'sluice.pml.trail')),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the model holds every property over its whole state space', { timeout: 300_000 }, (t) => {
  const r = check([]);
  t.diagnostic(`${r.statesStored} states stored, depth ${r.depthReached}`);
  assert.equal(r.errors, 0, r.output);
  assert.ok(!r.trail, r.output);
  assert.doesNotMatch(r.output, /search not completed/i, 'the search must be complete');
  assert.doesNotMatch(r.output, /max search depth too small/, 'the search must not be cut by the depth limit');
  assert.ok(r.depthReached < maxDepth, r.output);
  assert.match(r.output, /Full statespace search/, r.output);
  assert.doesNotMatch(r.output, /bit ?state|hash-compact/i, 'the search must be exhaustive, not approximate');
  assert.ok(r.statesStored > 100_000, `a suspiciously small state space:\n${r.output}`);
});

test('without the in-flight wait a change is lost (the destination differs from the source)', { timeout: 300_000 }, () => {
  const r = check(['-DNO_INFLIGHT_WAIT'], '-O0');
  assert.ok(r.errors >= 1, r.output);
  assert.ok(r.trail, 'a counterexample trail');
  assert.match(r.output, /assertion violated \(tab\[.*\]==src\[i\]\)/, r.output);
});

test('acknowledging the slot before the log flush violates contract 1', { timeout: 300_000 }, () => {
  const r = check(['-DACK_BEFORE_FLUSH'], '-O0');
  assert.ok(r.errors >= 1, r.output);
  assert.match(r.output, /assertion violated \(confirmed<=logHead\)/, r.output);
});

test('a swap in two transactions lets a reader find the table missing', { timeout: 300_000 }, () => {
  const r = check(['-DNONATOMIC_SWAP'], '-O0');
  assert.ok(r.errors >= 1, r.output);
  assert.match(r.output, /assertion violated \(live!=255\)/, r.output);
});
