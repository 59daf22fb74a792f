/**
 * The operator's page end to end in a real browser: playwright-core driving Debian's Chromium
 * (/usr/bin/chromium; .ci/run installs it when missing) against `sluice run --http` on real clusters.
 * Opened from the login link (the token leaves the address bar); a progress bar moves; the throttle
 * is retuned; Backfill tables… with truncate (the typed name enables it) and with online; backfills
 * paused and resumed; a backfill cancelled; verify run; an online reload rolled back with Rollback… (the
 * typed name enables it). Each checked on the page and in the database.
 * Screenshots for people (no pixel comparisons): docs/img/overview.png, docs/img/backfill-dialog.png,
 * docs/img/rollback-dialog.png,
 * rewritten with SLUICE_SCREENSHOTS=docs.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, killIfRunning, makeWorkdir, waitUntil, type Workdir } from '../support/sluice.js';
import { startHttpRun, type HttpRun } from '../support/http.js';

const CHROMIUM = '/usr/bin/chromium';
// The README's screenshots are rewritten only when asked (SLUICE_SCREENSHOTS=docs); otherwise they go
// to a temporary folder, so a test run leaves the checkout as it was.
const IMG =
  process.env.SLUICE_SCREENSHOTS === 'docs'
    ? resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../docs/img')
    : mkdtempSync(join(tmpdir(), 'sluice-screenshots-'));
const DB = 'browser';
/** The page's document, inside waitForFunction callbacks (they run in the browser). */
declare const document: { querySelector(s: string): any; querySelectorAll(s: string): any[] };

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let h: HttpRun;
let browser: BrowserContext | undefined;
let profile: string;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  ({ source, destination, stopAll } = await startClusters());
  await destination.createDatabase(DB);
  await source.query(`CREATE TABLE public.orders (id int PRIMARY KEY, customer int, total numeric(10,2), note text)`);
  await source.query(`INSERT INTO public.orders SELECT g, g % 997, (g % 1000) / 7.0, md5(g::text) FROM generate_series(1, 20000) g`);
  await source.query(`CREATE TABLE public.customers (id int PRIMARY KEY, name text)`);
  await source.query(`INSERT INTO public.customers SELECT g, 'customer ' || g FROM generate_series(1, 2000) g`);
  await source.query(`ANALYZE`);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(DB),
    pipeline: 'shop',
    pipelineExtra: 'concurrency: 1',
    tables: [{ name: 'public.orders', chunkRows: 500 }, { name: 'public.customers' }],
    extra: 'throttle: { maxRowsPerSecond: 2000 }',
  });
  profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  // A fresh profile (--user-data-dir) each run.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  // After the browser is up: the first backfill is watched from its start.
  h = await startHttpRun(work.config);
});

after(async () => {
  await browser?.close();
  await killIfRunning(h?.run);
  await stopAll?.();
  work?.remove();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const dst = (sql: string, params?: unknown[]) => destination.query(sql, params, DB);
const row = (page: Page, table: string) => page.locator(`tr[data-table="${table}"]`);
const stateOf = (page: Page, table: string) => row(page, table).getAttribute('data-state');
const lastRun = async (table: string) =>
  (await dst(`SELECT mode, status, os_user FROM _sluice.runs WHERE pipeline = 'shop' AND table_name = $1 ORDER BY id DESC LIMIT 1`, [table])).rows[0];

test('the operator page, from the login link to verify', async () => {
  const page = await browser!.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));

  // Logged in by the link; the token leaves the address bar.
  await page.goto(h.loginUrl);
  assert.equal(page.url(), `${h.base}/`);
  await row(page, 'public.orders').waitFor();

  // The first backfill's progress bar moves (the throttle holds it at 2000 rows/s: 10 s).
  const bar = page.getByLabel('progress of public.orders');
  await page.waitForFunction(() => {
    const p = document.querySelector('progress[aria-label="progress of public.orders"]') as { hasAttribute(a: string): boolean; value: number } | null;
    return p !== null && p.hasAttribute('value') && p.value > 0 && p.value < 80;
  }, undefined, { timeout: 20_000 });
  const first = Number(await bar.getAttribute('value'));
  await page.waitForFunction((v) => Number(document.querySelector('progress[aria-label="progress of public.orders"]')?.getAttribute('value')) > v, first, { timeout: 20_000 });
  await page.waitForFunction(() => Number(document.querySelector('progress[aria-label="progress of public.orders"]')?.getAttribute('value')) >= 45, undefined, { timeout: 20_000 });
  await page.screenshot({ path: join(IMG, 'overview.png') });
  await page.waitForFunction(() => [...document.querySelectorAll('tr[data-table]')].every((r: any) => r.getAttribute('data-state') === 'streaming'), undefined, { timeout: 30_000 });

  // Throttle…: a live retune, kept in the pipeline's record.
  await page.getByRole('button', { name: 'Throttle…' }).click();
  await page.getByLabel('Max rows per second').fill('1000');
  await page.getByRole('button', { name: 'Apply throttle' }).click();
  await page.getByText(/throttle: throttle now/).waitFor();
  await waitUntil('the throttle is recorded', async () => (await dst(`SELECT throttle->>'maxRowsPerSecond' AS m FROM _sluice.pipelines WHERE name = 'shop'`)).rows[0].m === '1000', 10_000);

  // Backfill tables… with truncate: the typed name enables it; the destination-only row goes.
  await dst(`INSERT INTO public.customers VALUES (-1, 'only at the destination')`);
  await page.getByRole('button', { name: 'Backfill tables…' }).click();
  const dialog = page.locator('#backfill-dialog');
  await dialog.getByLabel('public.customers').check();
  await dialog.getByRole('radio', { name: /^truncate/ }).check();
  const start = dialog.getByRole('button', { name: 'Start backfill' });
  assert.equal(await start.isDisabled(), true, 'disabled until the name is typed');
  await dialog.locator('input[name=confirm]').fill('public.customers');
  await dialog.getByLabel('Reason (optional)').fill('customers drifted');
  assert.equal(await start.isDisabled(), false);
  await page.screenshot({ path: join(IMG, 'backfill-dialog.png') });
  await start.click();
  await page.getByText(/backfill \(truncate\): public.customers: (started|queued)/).waitFor();
  await waitUntil('the truncate reload ran', async () => (await lastRun('public.customers'))?.mode === 'truncate', 10_000);
  await eventuallyEqual(source.url(), destination.url(DB), 'public.customers', { run: h.run });
  const req = await dst(`SELECT requested_by, params->>'reason' AS reason FROM _sluice.requests WHERE kind = 'backfill' AND table_name = 'public.customers' ORDER BY id DESC LIMIT 1`);
  assert.deepEqual([/^api@/.test(req.rows[0].requested_by), req.rows[0].reason], [true, 'customers drifted']);

  // Backfill online from the row's button (online is the default).
  await page.getByRole('button', { name: 'Backfill public.orders…' }).click();
  assert.equal(await dialog.getByRole('radio', { name: /^online/ }).isChecked(), true);
  await dialog.getByRole('button', { name: 'Start backfill' }).click();
  await page.waitForFunction(() => document.querySelector('tr[data-table="public.orders"]')?.getAttribute('data-state') === 'backfilling', undefined, { timeout: 10_000 });

  // Pause backfills: the throttle card says so and the rows copied stay put; resume.
  await page.getByRole('button', { name: 'Pause backfills' }).click();
  await page.locator('#card-throttle', { hasText: 'by an operator' }).waitFor();
  const copied = async () => Number((await dst(`SELECT rows_copied FROM _sluice.tables WHERE pipeline = 'shop' AND name = 'public.orders'`)).rows[0].rows_copied);
  await new Promise((r) => setTimeout(r, 1500));
  const held = await copied();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await copied(), held, 'nothing copied while paused');
  await page.getByRole('button', { name: 'Resume backfills' }).click();
  await page.locator('#card-throttle', { hasText: 'open' }).waitFor();
  await waitUntil('copying goes on', async () => (await copied()) > held, 10_000);

  // Cancel it: the dialog says what an online cancel leaves; the run ends cancelled, the table streams.
  await page.getByRole('button', { name: 'Cancel public.orders' }).click();
  await page.getByText('The live table is left untouched; the staging table is dropped.').waitFor();
  await page.locator('#cancel-dialog').getByRole('button', { name: 'Cancel backfill' }).click();
  await page.waitForFunction(() => document.querySelector('tr[data-table="public.orders"]')?.getAttribute('data-state') === 'streaming', undefined, { timeout: 10_000 });
  assert.equal((await lastRun('public.orders')).status, 'cancelled');

  // Verify…: the verdict on the page.
  await page.getByRole('button', { name: 'Verify…' }).click();
  await page.getByRole('button', { name: 'Run verify' }).click();
  await page.locator('#verify-text', { hasText: 'verify 1: EQUAL' }).waitFor({ timeout: 30_000 });
  assert.match(await page.locator('#verify-text').innerText(), /EQUAL\s+public\.orders/);

  // The table page has the run history from the audit; the activity page the requests.
  await page.getByRole('link', { name: 'public.orders' }).click();
  await page.locator('#tp-runs tbody tr', { hasText: 'cancelled' }).waitFor();
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.locator('#act-requests tbody tr', { hasText: 'customers drifted' }).waitFor();
  await page.locator('#act-deliveries tbody', { hasText: 'no webhook configured' }).waitFor();

  // Rollback…: offered only for a streaming table with an archive kept, i.e. after an online backfill.
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('#inplace-runs tbody', { hasText: 'no in-place run recorded in the source' }).waitFor();
  const rollback = page.getByRole('button', { name: 'Rollback public.customers…' });
  assert.equal(await rollback.count(), 0, 'nothing archived yet: no rollback offered');
  await page.getByRole('button', { name: 'Backfill public.customers…' }).click();
  await dialog.getByRole('button', { name: 'Start backfill' }).click();
  await rollback.waitFor({ timeout: 30_000 });
  const archive = (await dst(`SELECT archive FROM _sluice.archives WHERE pipeline = 'shop' AND table_name = 'public.customers' AND dropped_at IS NULL ORDER BY created_at DESC LIMIT 1`)).rows[0].archive as string;
  const oid = async (name: string) => (await dst(`SELECT to_regclass($1)::oid::int AS oid`, [name])).rows[0].oid as number;
  const archivedOid = await oid(archive);
  const replacedOid = await oid('public.customers');
  await rollback.click();
  const rbDialog = page.locator('#rollback-dialog');
  await rbDialog.getByText('is brought current by replaying the changes since its swap').waitFor();
  const rollBack = rbDialog.getByRole('button', { name: 'Roll back' });
  assert.equal(await rollBack.isDisabled(), true, 'disabled until the name is typed');
  await rbDialog.locator('input[name=confirm]').fill('public.customers');
  await rbDialog.getByLabel('Reason (optional)').fill('the reload was wrong');
  assert.equal(await rollBack.isDisabled(), false);
  await page.screenshot({ path: join(IMG, 'rollback-dialog.png') });
  await rollBack.click();
  await page.getByText(/rollback public\.customers: /).waitFor();
  await waitUntil(
    'the rollback run is done',
    async () => (await dst(`SELECT status FROM _sluice.runs WHERE pipeline = 'shop' AND table_name = 'public.customers' AND strategy = 'rollback' ORDER BY id DESC LIMIT 1`)).rows[0]?.status === 'done',
    20_000,
  );
  assert.equal(await oid('public.customers'), archivedOid, 'the archived table is live again');
  const newest = (await dst(`SELECT archive FROM _sluice.archives WHERE pipeline = 'shop' AND table_name = 'public.customers' AND dropped_at IS NULL ORDER BY created_at DESC LIMIT 1`)).rows[0].archive as string;
  assert.equal(await oid(newest), replacedOid, 'the table it replaced is the newest archive');
  const rbReq = await dst(`SELECT requested_by, params->>'reason' AS reason FROM _sluice.requests WHERE kind = 'rollback' ORDER BY id DESC LIMIT 1`);
  assert.deepEqual([/^api@/.test(rbReq.rows[0].requested_by), rbReq.rows[0].reason], [true, 'the reload was wrong']);
  await eventuallyEqual(source.url(), destination.url(DB), 'public.customers', { run: h.run });
  await page.waitForFunction(() => document.querySelector('tr[data-table="public.customers"]')?.getAttribute('data-state') === 'streaming', undefined, { timeout: 10_000 });
  await page.getByRole('link', { name: 'public.customers' }).click();
  await page.locator('#tp-runs tbody tr', { hasText: 'rollback' }).waitFor();
  await page.getByRole('button', { name: 'Rollback public.customers…' }).waitFor();
  assert.deepEqual(errors, []);
});
