// The dialogs: Backfill tables…, Cancel, Throttle…, Verify…, Rollback….
import { $, api, action, el, num, state, toast } from './util.js';

/** What a cancel leaves the destination as, by mode. */
const CANCEL_TEXT = {
  online: 'The live table is left untouched; the staging table is dropped.',
  upsert: 'The destination keeps a mix of old and reloaded rows until the next backfill.',
  truncate: 'The destination table is left partial: reload it later.',
  drop: 'The destination table is left partial, and the views dropped with it are gone.',
};

// ---- backfill ----
export function openBackfill(preselect) {
  const names = state.last?.status.tables.map((t) => t.name) ?? [];
  const pick = new Set(preselect?.length ? preselect : state.selected);
  $('#bf-tables').replaceChildren(
    ...names.map((n) => el('label', {}, el('input', { type: 'checkbox', name: 'tables', value: n, checked: pick.has(n), onchange: updateBackfill }), ` ${n}`)),
  );
  const form = $('#backfill-form');
  form.reset();
  for (const i of form.querySelectorAll('input[name=tables]')) i.checked = pick.has(i.value);
  form.querySelector('input[name=mode][value=online]').checked = true;
  $('#bf-error').textContent = '';
  updateBackfill();
  $('#backfill-dialog').showModal();
}

function backfillChoice() {
  const form = $('#backfill-form');
  const tables = [...form.querySelectorAll('input[name=tables]:checked')].map((i) => i.value);
  const mode = form.querySelector('input[name=mode]:checked')?.value ?? 'online';
  return { form, tables, mode, expected: tables.length === 1 ? tables[0] : `${tables.length} tables` };
}

export async function updateBackfill() {
  const { form, tables, mode, expected } = backfillChoice();
  const destructive = mode === 'truncate' || mode === 'drop';
  $('#bf-confirm-label').hidden = !destructive;
  $('#bf-confirm-expected').textContent = expected;
  $('#bf-submit').disabled = tables.length === 0 || (destructive && form.confirm.value !== expected);
  const dep = $('#bf-dependents');
  if (mode !== 'drop' || tables.length === 0) return void (dep.hidden = true);
  const lists = await Promise.all(tables.map((t) => api('GET', `/tables/${encodeURIComponent(t)}/dependents`).catch(() => ({ table: t, dependents: [] }))));
  const items = lists.flatMap((l) => l.dependents.map((d) => `${l.table}: ${d}`));
  dep.querySelector('ul').replaceChildren(...(items.length ? items.map((x) => el('li', {}, x)) : [el('li', {}, 'nothing')]));
  dep.hidden = false;
}

export async function submitBackfill(ev) {
  ev.preventDefault();
  const { form, tables, mode } = backfillChoice();
  const body = { tables, mode };
  for (const k of ['strategy', 'where', 'confirm', 'reason']) if (form[k].value) body[k] = form[k].value;
  if (form.parallelism.value) body.parallelism = Number(form.parallelism.value);
  if (form.keepArchive.checked) body.keepArchive = true;
  try {
    await action('POST', '/backfills', body, `backfill (${mode})`);
    $('#backfill-dialog').close();
  } catch (e) {
    $('#bf-error').textContent = `${e.message}${e.data?.fix ? ` — ${e.data.fix}` : ''}`;
  }
}

// ---- cancel, throttle, verify ----
let cancelling = null;
export function openCancel(t) {
  cancelling = t;
  $('#cx-title').textContent = `Cancel the backfill of ${t.name}`;
  $('#cx-text').textContent = CANCEL_TEXT[t.mode] ?? '';
  $('#cx-error').textContent = '';
  $('#cancel-form').reset();
  $('#cancel-dialog').showModal();
}
export async function submitCancel(ev) {
  ev.preventDefault();
  try {
    const reason = $('#cancel-form').reason.value;
    await action('POST', '/backfills/cancel', { tables: [cancelling.name], ...(reason ? { reason } : {}) }, `cancel ${cancelling.name}`);
    $('#cancel-dialog').close();
  } catch (e) {
    $('#cx-error').textContent = e.message;
  }
}

export function openThrottle() {
  const form = $('#throttle-form');
  const t = state.last?.status.pipeline.throttle ?? {};
  for (const k of ['maxRowsPerSecond', 'maxChunksPerSecond', 'maxActiveSessions', 'maxReplicaLagSeconds', 'maxSlotLagBytes']) form[k].value = t[k] ?? '';
  form.reason.value = '';
  $('#th-error').textContent = '';
  $('#throttle-dialog').showModal();
}
export async function submitThrottle(ev, reset = false) {
  ev.preventDefault();
  const form = $('#throttle-form');
  const t = state.last?.status.pipeline.throttle ?? {};
  const body = {};
  if (reset) body.reset = true;
  else for (const k of ['maxRowsPerSecond', 'maxChunksPerSecond', 'maxActiveSessions', 'maxReplicaLagSeconds', 'maxSlotLagBytes']) if (form[k].value !== '' && Number(form[k].value) !== t[k]) body[k] = Number(form[k].value);
  if (form.reason.value) body.reason = form.reason.value;
  try {
    await action('PATCH', '/throttle', body, 'throttle');
    $('#throttle-dialog').close();
  } catch (e) {
    $('#th-error').textContent = `${e.message}${e.data?.fix ? ` — ${e.data.fix}` : ''}`;
  }
}

export function openVerify() {
  const names = state.last?.status.tables.map((t) => t.name) ?? [];
  $('#vf-tables').replaceChildren(...names.map((n) => el('label', {}, el('input', { type: 'checkbox', name: 'tables', value: n, checked: state.selected.size === 0 || state.selected.has(n) }), ` ${n}`)));
  $('#vf-error').textContent = '';
  $('#verify-dialog').showModal();
}
export async function submitVerify(ev) {
  ev.preventDefault();
  const form = $('#verify-form');
  const tables = [...form.querySelectorAll('input[name=tables]:checked')].map((i) => i.value);
  const body = { tables };
  if (form.where.value) body.where = form.where.value;
  if (form.reason.value) body.reason = form.reason.value;
  try {
    const job = await api('POST', '/verify', body);
    $('#verify-dialog').close();
    toast(`verify ${job.verifyId} running…`);
    showVerify(await waitVerify(job.verifyId));
  } catch (e) {
    $('#vf-error').textContent = e.message;
  }
}
async function waitVerify(id) {
  for (;;) {
    const j = await api('GET', `/verify/${id}`);
    if (j.state !== 'running') return j;
    await new Promise((r) => setTimeout(r, 500));
  }
}
export function verdictText(j) {
  if (j.state === 'failed') return `verify ${j.id} failed: ${j.error}`;
  return [
    `verify ${j.id}: ${j.equal ? 'EQUAL' : 'DIFFERENT'}`,
    ...j.verdicts.map((v) => `${v.equal ? 'EQUAL    ' : 'DIFFERENT'} ${v.table}: source ${num(v.sourceRows)} rows, destination ${num(v.destinationRows)} rows${v.rangesDiffering ? `; ${v.rangesDiffering} of ${v.ranges} key ranges differ` : ''}`),
  ].join('\n');
}
function showVerify(j) {
  $('#verify-result').hidden = false;
  $('#verify-text').textContent = verdictText(j);
  toast(`verify ${j.id}: ${j.state === 'failed' ? 'failed' : j.equal ? 'equal' : 'different'}`, j.state === 'failed' || !j.equal);
}

// ---- rollback ----
/** A streaming table with an archive kept can be rolled back to its newest archive. */
export const canRollBack = (t) => t?.state === 'streaming' && (t.archives?.length ?? 0) > 0;

let rollingBack = null;
export function openRollback(t) {
  rollingBack = t;
  const newest = t.archives[t.archives.length - 1];
  $('#rb-title').textContent = `Roll back ${t.name}`;
  $('#rb-text').textContent =
    `The archive ${newest.name} (the table the last online backfill replaced) is brought current by replaying the changes since its swap, ` +
    `then swapped in as ${t.name}. The current table becomes the newest archive, so the rollback can itself be rolled back while that archive is kept.`;
  $('#rb-expected').textContent = t.name;
  $('#rb-error').textContent = '';
  const form = $('#rollback-form');
  form.reset();
  $('#rb-submit').disabled = true;
  $('#rollback-dialog').showModal();
}
export function updateRollback() {
  $('#rb-submit').disabled = $('#rollback-form').confirm.value !== rollingBack?.name;
}
export async function submitRollback(ev) {
  ev.preventDefault();
  const form = $('#rollback-form');
  const body = { tables: [rollingBack.name] };
  if (form.keepArchive.checked) body.keepArchive = true;
  if (form.reason.value) body.reason = form.reason.value;
  try {
    await action('POST', '/rollback', body, `rollback ${rollingBack.name}`);
    $('#rollback-dialog').close();
  } catch (e) {
    $('#rb-error').textContent = `${e.message}${e.data?.fix ? ` — ${e.data.fix}` : ''}`;
  }
}
