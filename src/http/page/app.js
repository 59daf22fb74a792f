// sluice's operator page: static modules, no build step. Data only from /api/v1 (docs/api.md);
// the overview is fed by server-sent events (/api/v1/events).
import { $, ACTIVE, action, api, bytes, duration, el, num, state, stateWord, toast } from './util.js';
import { canRollBack, openBackfill, openCancel, openRollback, openThrottle, openVerify, submitBackfill, submitCancel, submitRollback, submitThrottle, submitVerify, updateBackfill, updateRollback } from './dialogs.js';
import { renderActivity, renderInplace, renderTablePage } from './pages.js';

const HISTORY = 900; // points kept for the small charts (15 min at one a second)
const INPLACE_EVERY_MS = 5000;
let prevLive = null;
const history = { slot: [], log: [], lag: [], rows: [], changes: [] };

// ---- charts: a line over the kept history, scaled to its own maximum ----
function spark(canvas, values) {
  const c = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  c.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  const max = Math.max(...values, 1e-9);
  c.strokeStyle = '#2b6cb0';
  c.lineWidth = 1.5;
  c.beginPath();
  // The first minute fills the width; after that the whole kept history does.
  const span = Math.max(values.length, 60) - 1;
  values.forEach((v, i) => {
    const x = (i / span) * w;
    const y = h - 2 - (v / max) * (h - 4);
    i ? c.lineTo(x, y) : c.moveTo(x, y);
  });
  c.stroke();
}
function keep(name, v) {
  const a = history[name];
  a.push(v ?? 0);
  if (a.length > HISTORY) a.shift();
  spark($(`#chart-${name}`), a);
}

// ---- overview ----
function render(snap) {
  state.last = snap;
  const { status: s, live } = snap;
  const p = s.pipeline;
  $('#pipeline-name').textContent = p.name;
  const rs = $('#run-state');
  rs.textContent = p.running ? `running (pid ${p.pid}@${p.host})` : `stopped (state.last seen ${p.lastSeen ?? 'never'})`;
  rs.className = `badge ${p.running ? 'ok' : 'bad'}`;
  $('#route').textContent = `${snap.route} · slot ${p.slot}${p.slotActive === false ? ' (inactive)' : ''}${p.sourceError ? ` · source: ${p.sourceError}` : ''}`;
  $('#card-slot').textContent = bytes(p.slotLagBytes);
  $('#card-log').textContent = `${bytes(live.changeLogBytes)} · ${num(Math.max(0, live.captured - live.applied))} pending`;
  const lagged = s.tables.filter((t) => t.lagSeconds !== null).sort((a, b) => b.lagSeconds - a.lagSeconds)[0];
  $('#card-lag').textContent = lagged ? `${duration(lagged.lagSeconds)} (${lagged.name})` : '–';
  const t = p.throttle ?? {};
  $('#card-throttle').textContent = t.state ?? '–';
  $('#card-apply').textContent = t.applyPaused ? `apply ${t.applyPaused}` : 'apply running';
  const rows = s.tables.reduce((n, x) => n + (x.rowsPerSecond ?? 0), 0);
  let changes = 0;
  if (prevLive && live.at > prevLive.at) changes = ((live.applied - prevLive.applied) * 1000) / (live.at - prevLive.at);
  prevLive = live;
  $('#card-rows').textContent = num(rows);
  $('#card-changes').textContent = num(Math.max(0, changes));
  keep('slot', p.slotLagBytes);
  keep('log', live.changeLogBytes);
  keep('lag', lagged?.lagSeconds);
  keep('rows', rows);
  keep('changes', Math.max(0, changes));
  renderTables(s.tables);
  if (!$('#table-page').hidden) renderTablePage();
}

function renderTables(tables) {
  const body = $('#tables tbody');
  body.replaceChildren(
    ...tables.map((t) => {
      const active = ACTIVE.has(t.state);
      const pct = t.percent ?? (t.state === 'streaming' ? 100 : null);
      const progress =
        t.state === 'queued'
          ? el('td', { class: 'muted' }, 'waiting for its turn')
          : el('td', {},
              pct === null ? el('progress', { 'aria-label': `progress of ${t.name}` }) : el('progress', { max: 100, value: pct, 'aria-label': `progress of ${t.name}` }),
              ` ${pct === null ? '' : `${pct} % · `}${num(t.rowsCopied)} / ~${num(t.rowsEstimated)}`,
            );
      const eta = t.state === 'backfilling' ? (t.etaSeconds === null ? (t.rowsPerSecond ? 'unknown (no row estimate)' : 'measuring the rate') : duration(t.etaSeconds)) : '';
      return el('tr', { 'data-table': t.name, 'data-state': t.state },
        el('td', {}, el('input', { type: 'checkbox', 'aria-label': `select ${t.name}`, checked: state.selected.has(t.name), onchange: (e) => (e.target.checked ? state.selected.add(t.name) : state.selected.delete(t.name)) })),
        el('td', {}, el('a', { href: `#/t/${encodeURIComponent(t.name)}` }, t.name)),
        el('td', {}, el('span', { class: `badge state-${t.state}`, 'data-role': 'state' }, stateWord(t.state))),
        el('td', {}, t.mode ?? ''),
        progress,
        el('td', {}, t.rowsPerSecond ? `${num(t.rowsPerSecond)} rows/s` : ''),
        el('td', {}, eta),
        el('td', {}, t.lagSeconds === null ? '' : `${duration(t.lagSeconds)} · ${bytes(t.lagBytes)}`),
        el('td', { class: 'detail' }, t.error ?? t.detail ?? ''),
        el('td', {},
          active ? el('button', { type: 'button', onclick: () => openCancel(t) }, `Cancel ${t.name}`) : el('button', { type: 'button', onclick: () => openBackfill([t.name]) }, `Backfill ${t.name}…`),
          canRollBack(t) ? el('button', { type: 'button', onclick: () => openRollback(t) }, `Rollback ${t.name}…`) : null,
        ),
      );
    }),
  );
}

function route() {
  const h = location.hash || '#/';
  $('#overview').hidden = h !== '#/';
  $('#table-page').hidden = !h.startsWith('#/t/');
  $('#activity-page').hidden = h !== '#/activity';
  if (h.startsWith('#/t/')) void renderTablePage();
  if (h === '#/activity') void renderActivity();
  if (h === '#/') void renderInplace();
}

// ---- wiring ----
async function main() {
  const modes = await api('GET', '/modes');
  $('#bf-modes').append(
    ...Object.entries(modes).map(([m, help]) => el('label', { class: 'mode' }, el('input', { type: 'radio', name: 'mode', value: m, onchange: updateBackfill }), ` ${m}`, el('small', {}, ` — ${help}`))),
  );
  $('#backfill-form').confirm.addEventListener('input', updateBackfill);
  $('#backfill-form').addEventListener('submit', submitBackfill);
  $('#bf-cancel').addEventListener('click', () => $('#backfill-dialog').close());
  $('#open-backfill').addEventListener('click', () => openBackfill());
  $('#cancel-form').addEventListener('submit', submitCancel);
  $('#cx-close').addEventListener('click', () => $('#cancel-dialog').close());
  $('#open-throttle').addEventListener('click', openThrottle);
  $('#throttle-form').addEventListener('submit', (e) => submitThrottle(e));
  $('#th-reset').addEventListener('click', (e) => submitThrottle(e, true));
  $('#th-cancel').addEventListener('click', () => $('#throttle-dialog').close());
  $('#open-verify').addEventListener('click', openVerify);
  $('#verify-form').addEventListener('submit', submitVerify);
  $('#vf-cancel').addEventListener('click', () => $('#verify-dialog').close());
  $('#rollback-form').confirm.addEventListener('input', updateRollback);
  $('#rollback-form').addEventListener('submit', submitRollback);
  $('#rb-close').addEventListener('click', () => $('#rollback-dialog').close());
  for (const [id, path, scope, label] of [
    ['#pause-backfills', '/pause', 'backfills', 'pause backfills'],
    ['#resume-backfills', '/resume', 'backfills', 'resume backfills'],
    ['#pause-apply', '/pause', 'apply', 'pause apply'],
    ['#resume-apply', '/resume', 'apply', 'resume apply'],
  ]) $(id).addEventListener('click', () => action('POST', path, { scope }, label).catch(() => {}));
  $('#select-all').addEventListener('change', (e) => {
    for (const t of state.last?.status.tables ?? []) e.target.checked ? state.selected.add(t.name) : state.selected.delete(t.name);
    if (state.last) renderTables(state.last.status.tables);
  });
  window.addEventListener('hashchange', route);
  route();
  // In-place runs are read from the source, not pushed: refreshed while the overview is shown.
  setInterval(() => !$('#overview').hidden && void renderInplace(), INPLACE_EVERY_MS);
  // The activity lists are re-read while shown too: a read that failed (a busy server) is not the last word.
  setInterval(() => !$('#activity-page').hidden && void renderActivity(), INPLACE_EVERY_MS);
  const source = new EventSource('/api/v1/events');
  const conn = $('#connection');
  source.addEventListener('status', (e) => {
    conn.hidden = true;
    render(JSON.parse(e.data));
  });
  source.addEventListener('lifecycle', (e) => {
    const ev = JSON.parse(e.data);
    if (location.hash === '#/activity') void renderActivity();
    if (ev.name.startsWith('backfill.') || ev.name === 'swap.completed') toast(`${ev.name} ${ev.table ?? ''}`);
  });
  source.addEventListener('unavailable', () => {
    conn.hidden = false;
    conn.textContent = 'the destination does not answer: showing the state.last state';
  });
  source.onerror = () => {
    conn.hidden = false;
    conn.textContent = 'reconnecting…';
    // A restarted sluice with a generated token no longer knows this browser's.
    fetch('/api/v1/status').then(
      (r) => r.status === 401 && (conn.textContent = 'sluice restarted with a new token: open the login link it printed'),
      () => {},
    );
  };
}

void main();
