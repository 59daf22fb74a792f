// The table page (#/t/<table>), the activity list (#/activity), and the overview's in-place jobs.
import { $, api, bytes, duration, el, num, stateWord } from './util.js';
import { canRollBack, openRollback, verdictText } from './dialogs.js';

// ---- table page and activity ----
export async function renderTablePage() {
  const name = decodeURIComponent(location.hash.slice('#/t/'.length));
  const d = await api('GET', `/tables/${encodeURIComponent(name)}`).catch((e) => ({ error: e.message }));
  if (d.error) return void ($('#tp-name').textContent = d.error);
  $('#tp-name').textContent = d.table;
  const s = d.status ?? {};
  const cur = d.runs.find((r) => r.status === 'running' || r.status === 'catching_up');
  const facts = [
    ['State', s.state ? stateWord(s.state) : '–'],
    ['Mode', s.mode ?? '–'],
    ['Rows copied', `${num(s.rowsCopied)} of ~${num(s.rowsEstimated)}`],
    ['Lag', s.lagSeconds === null || s.lagSeconds === undefined ? '–' : `${duration(s.lagSeconds)} · ${bytes(s.lagBytes)}`],
    ['Detail', s.error ?? s.detail ?? '–'],
    ['Current run', cur ? `#${cur.id} by ${cur.osUser ?? '?'} at ${cur.startedAt}, ${cur.mode}/${cur.strategy}, L0 ${cur.l0 ?? '–'}, ${num(cur.chunks)} chunks` : 'none'],
  ];
  $('#tp-current').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  $('#tp-runs tbody').replaceChildren(
    ...d.runs.map((r) => el('tr', {}, ...[r.id, r.osUser ?? '', r.startedAt, r.endedAt ?? '', r.mode, r.strategy, r.where, r.status, num(r.rowsCopied), num(r.chunks), r.error ?? ''].map((x) => el('td', {}, x)))),
  );
  $('#tp-archives').replaceChildren(...(s.archives?.length ? s.archives.map((a) => el('li', {}, `${a.name} (dropped after ${a.dropAfter ?? 'never: kept'})`)) : [el('li', {}, 'none')]));
  $('#tp-actions').replaceChildren(...(canRollBack(s) ? [el('button', { type: 'button', onclick: () => openRollback(s) }, `Rollback ${s.name}…`)] : []));
  $('#tp-verify').textContent = d.lastVerify ? verdictText(d.lastVerify) : 'none since this process started';
}

export async function renderActivity() {
  const [requests, events, jobs, deliveries] = await Promise.all([api('GET', '/requests'), api('GET', '/events/recent'), api('GET', '/verify'), api('GET', '/deliveries')]);
  $('#act-requests tbody').replaceChildren(
    ...requests.map((r) => {
      const { reason, ...params } = r.params ?? {};
      return el('tr', {}, ...[r.id, r.requestedAt, r.requestedBy ?? '', r.kind, r.table, JSON.stringify(params), reason ?? '', r.outcome ?? 'waiting'].map((x) => el('td', {}, x)));
    }),
  );
  $('#act-events').replaceChildren(...(events.length ? events.reverse().map((e) => el('li', {}, `${e.at} ${e.name}${e.table ? ` ${e.table}` : ''} ${JSON.stringify(e.detail)}`)) : [el('li', {}, 'none since this process started')]));
  $('#act-deliveries tbody').replaceChildren(...(deliveries.length ? deliveries.map(deliveryRow) : [el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'none (no webhook configured, or nothing sent yet)'))]));
  $('#act-verify').replaceChildren(...(jobs.length ? jobs.map((j) => el('li', {}, `${j.startedAt} by ${j.actor}${j.reason ? ` (${j.reason})` : ''}: ${j.state === 'running' ? 'running' : verdictText(j).split('\n')[0]}`)) : [el('li', {}, 'none')]));
}

/** One webhook delivery: what happened last, and when it is tried again. */
function deliveryRow(d) {
  const last = [d.lastStatusCode === null ? '' : `HTTP ${d.lastStatusCode}`, d.lastError ?? ''].filter(Boolean).join(': ');
  return el('tr', { 'data-delivery': d.id }, ...[d.createdAt, d.event, d.table ?? '', d.urlOrigin, d.status, d.attempts, last || '–', d.nextAttemptAt ?? '–'].map((x) => el('td', {}, x)));
}

export async function renderInplace() {
  const body = $('#inplace-runs tbody');
  const runs = await api('GET', '/inplace').catch((e) => e);
  if (runs instanceof Error) return void body.replaceChildren(el('tr', {}, el('td', { colspan: 9, class: 'error' }, runs.message)));
  if (!runs.length) return void body.replaceChildren(el('tr', {}, el('td', { colspan: 9, class: 'muted' }, 'no in-place run recorded in the source')));
  body.replaceChildren(
    ...runs.map((r) => {
      const st = `${r.state}${r.requested ? ` (${r.requested} asked)` : ''}${r.error ? `: ${r.error}` : ''}`;
      return el('tr', { 'data-run': r.runId }, ...[r.job, r.runId, r.table, st, `${num(r.rowsAffected)} changed of ${num(r.rowsScanned)} scanned`, r.startedAt, r.endedAt ?? '–', r.reason, r.who ?? ''].map((x) => el('td', {}, x)));
    }),
  );
}
