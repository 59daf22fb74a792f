// sluice's operator page: one static module, no build step. Data only from /api/v1 (docs/api.md);
// the overview is fed by server-sent events (/api/v1/events).
const $ = (sel) => document.querySelector(sel);
const HISTORY = 900; // points kept for the small charts (15 min at one a second)
const ACTIVE = new Set(['queued', 'backfilling', 'catching_up', 'swapping']);
const CANCEL_TEXT = {
  online: 'The live table is left untouched; the staging table is dropped.',
  upsert: 'The destination keeps a mix of old and reloaded rows until the next backfill.',
  truncate: 'The destination table is left partial: reload it later.',
  drop: 'The destination table is left partial, and the views dropped with it are gone.',
};

let last = null; // the last status snapshot
let prevLive = null;
const history = { slot: [], log: [], lag: [], rows: [], changes: [] };
const selected = new Set();
let modes = {};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
const num = (n) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
function duration(s) {
  if (s === null || s === undefined) return '–';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
const stateWord = (s) => s.replace('_', ' ');

async function api(method, path, body) {
  const r = await fetch(`/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.message ?? r.statusText), { status: r.status, data });
  return data;
}

function toast(text, error = false) {
  const t = $('#toast');
  t.textContent = text;
  t.className = error ? 'error' : '';
}

function describeAnswer(a) {
  if (!a.answered) return a.running ? 'recorded; the pipeline has not answered yet' : 'recorded; no pipeline is running, it acts at the next start';
  return a.answers.map((x) => (x.table === '*' ? x.outcome : `${x.table}: ${x.outcome}`)).join('; ');
}

async function action(method, path, body, label) {
  try {
    const a = await api(method, path, body);
    toast(`${label}: ${describeAnswer(a)}`);
    return a;
  } catch (e) {
    toast(`${label} refused: ${e.message}${e.data?.fix ? ` (${e.data.fix})` : ''}`, true);
    throw e;
  }
}

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
  last = snap;
  const { status: s, live } = snap;
  const p = s.pipeline;
  $('#pipeline-name').textContent = p.name;
  const rs = $('#run-state');
  rs.textContent = p.running ? `running (pid ${p.pid}@${p.host})` : `stopped (last seen ${p.lastSeen ?? 'never'})`;
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
        el('td', {}, el('input', { type: 'checkbox', 'aria-label': `select ${t.name}`, checked: selected.has(t.name), onchange: (e) => (e.target.checked ? selected.add(t.name) : selected.delete(t.name)) })),
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
        ),
      );
    }),
  );
}

// ---- backfill dialog ----
function openBackfill(preselect) {
  const names = last?.status.tables.map((t) => t.name) ?? [];
  const pick = new Set(preselect?.length ? preselect : selected);
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

async function updateBackfill() {
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

async function submitBackfill(ev) {
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
function openCancel(t) {
  cancelling = t;
  $('#cx-title').textContent = `Cancel the backfill of ${t.name}`;
  $('#cx-text').textContent = CANCEL_TEXT[t.mode] ?? '';
  $('#cx-error').textContent = '';
  $('#cancel-form').reset();
  $('#cancel-dialog').showModal();
}
async function submitCancel(ev) {
  ev.preventDefault();
  try {
    const reason = $('#cancel-form').reason.value;
    await action('POST', '/backfills/cancel', { tables: [cancelling.name], ...(reason ? { reason } : {}) }, `cancel ${cancelling.name}`);
    $('#cancel-dialog').close();
  } catch (e) {
    $('#cx-error').textContent = e.message;
  }
}

function openThrottle() {
  const form = $('#throttle-form');
  const t = last?.status.pipeline.throttle ?? {};
  for (const k of ['maxRowsPerSecond', 'maxChunksPerSecond', 'maxActiveSessions', 'maxReplicaLagSeconds', 'maxSlotLagBytes']) form[k].value = t[k] ?? '';
  form.reason.value = '';
  $('#th-error').textContent = '';
  $('#throttle-dialog').showModal();
}
async function submitThrottle(ev, reset = false) {
  ev.preventDefault();
  const form = $('#throttle-form');
  const t = last?.status.pipeline.throttle ?? {};
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

function openVerify() {
  const names = last?.status.tables.map((t) => t.name) ?? [];
  $('#vf-tables').replaceChildren(...names.map((n) => el('label', {}, el('input', { type: 'checkbox', name: 'tables', value: n, checked: selected.size === 0 || selected.has(n) }), ` ${n}`)));
  $('#vf-error').textContent = '';
  $('#verify-dialog').showModal();
}
async function submitVerify(ev) {
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
function verdictText(j) {
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

// ---- table page and activity ----
async function renderTablePage() {
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
  $('#tp-verify').textContent = d.lastVerify ? verdictText(d.lastVerify) : 'none since this process started';
}

async function renderActivity() {
  const [requests, events, jobs] = await Promise.all([api('GET', '/requests'), api('GET', '/events/recent'), api('GET', '/verify')]);
  $('#act-requests tbody').replaceChildren(
    ...requests.map((r) => {
      const { reason, ...params } = r.params ?? {};
      return el('tr', {}, ...[r.id, r.requestedAt, r.requestedBy ?? '', r.kind, r.table, JSON.stringify(params), reason ?? '', r.outcome ?? 'waiting'].map((x) => el('td', {}, x)));
    }),
  );
  $('#act-events').replaceChildren(...(events.length ? events.reverse().map((e) => el('li', {}, `${e.at} ${e.name}${e.table ? ` ${e.table}` : ''} ${JSON.stringify(e.detail)}`)) : [el('li', {}, 'none since this process started')]));
  $('#act-verify').replaceChildren(...(jobs.length ? jobs.map((j) => el('li', {}, `${j.startedAt} by ${j.actor}${j.reason ? ` (${j.reason})` : ''}: ${j.state === 'running' ? 'running' : verdictText(j).split('\n')[0]}`)) : [el('li', {}, 'none')]));
}

function route() {
  const h = location.hash || '#/';
  $('#overview').hidden = h !== '#/';
  $('#table-page').hidden = !h.startsWith('#/t/');
  $('#activity-page').hidden = h !== '#/activity';
  if (h.startsWith('#/t/')) void renderTablePage();
  if (h === '#/activity') void renderActivity();
}

// ---- wiring ----
async function main() {
  modes = await api('GET', '/modes');
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
  for (const [id, path, scope, label] of [
    ['#pause-backfills', '/pause', 'backfills', 'pause backfills'],
    ['#resume-backfills', '/resume', 'backfills', 'resume backfills'],
    ['#pause-apply', '/pause', 'apply', 'pause apply'],
    ['#resume-apply', '/resume', 'apply', 'resume apply'],
  ]) $(id).addEventListener('click', () => action('POST', path, { scope }, label).catch(() => {}));
  $('#select-all').addEventListener('change', (e) => {
    for (const t of last?.status.tables ?? []) e.target.checked ? selected.add(t.name) : selected.delete(t.name);
    if (last) renderTables(last.status.tables);
  });
  window.addEventListener('hashchange', route);
  route();
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
    conn.textContent = 'the destination does not answer: showing the last state';
  });
  source.onerror = () => {
    conn.hidden = false;
    conn.textContent = 'reconnecting…';
  };
}

void main();
