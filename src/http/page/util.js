// What the page's modules share: DOM, numbers, the API, the toast, and the page's state.
export const $ = (sel) => document.querySelector(sel);
export const ACTIVE = new Set(['queued', 'backfilling', 'catching_up', 'swapping']);
/** The last status snapshot and the tables selected in the grid. */
export const state = { last: null, selected: new Set() };

export function el(tag, attrs = {}, ...children) {
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

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
export const num = (n) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
export function duration(s) {
  if (s === null || s === undefined) return '–';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
export const stateWord = (s) => s.replace('_', ' ');

export async function api(method, path, body) {
  const r = await fetch(`/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.message ?? r.statusText), { status: r.status, data });
  return data;
}

export function toast(text, error = false) {
  const t = $('#toast');
  t.textContent = text;
  t.className = error ? 'error' : '';
}

function describeAnswer(a) {
  if (!a.answered) return a.running ? 'recorded; the pipeline has not answered yet' : 'recorded; no pipeline is running, it acts at the next start';
  return a.answers.map((x) => (x.table === '*' ? x.outcome : `${x.table}: ${x.outcome}`)).join('; ');
}

export async function action(method, path, body, label) {
  try {
    const a = await api(method, path, body);
    toast(`${label}: ${describeAnswer(a)}`);
    return a;
  } catch (e) {
    toast(`${label} refused: ${e.message}${e.data?.fix ? ` (${e.data.fix})` : ''}`, true);
    throw e;
  }
}
