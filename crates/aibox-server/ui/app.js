// The aibox dashboard: a single-page app on the REST API, in plain ES
// modules with no framework and no build step. Pages build the DOM with h(),
// which sets text as text, so nothing a sandbox or a key holder writes ever
// becomes markup. Routes live in the URL fragment (#/sandboxes/ID/files).

const main = document.getElementById('main');
let session = null; // {key, csrf, settings} from /ui/session
let leaving = []; // what the current page stops when the route changes

// ---- the API

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call; JSON in and out unless the body is bytes or text. */
export async function api(method, path, body, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (!['GET', 'HEAD'].includes(method) && session) headers['X-CSRF-Token'] = session.csrf;
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || typeof body === 'string') {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the server did not answer (${e.message})`);
  }
  if (!r.ok) {
    let e = {};
    try { e = (await r.json()).error || {}; } catch { /* not JSON */ }
    const err = new ApiError(r.status, e.code || `http_${r.status}`, e.message || r.statusText);
    if (r.status === 401 && !opts.quiet) {
      session = null;
      if (!location.hash.startsWith('#/login')) location.hash = '#/login';
    }
    throw err;
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return (r.headers.get('content-type') || '').includes('json') ? r.json() : r.text();
}

/** The JSON lines of a streamed reply, as they arrive. */
export async function* jsonLines(resp) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) yield JSON.parse(line);
    }
  }
  if (buf.trim()) yield JSON.parse(buf);
}

export const csrf = () => session && session.csrf;
const enc = encodeURIComponent;
const admin = () => session && session.key.scope === 'admin';

// ---- DOM and formatting

/** An element: attributes (on* are listeners), then children (text or nodes). */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (['value', 'checked', 'disabled', 'hidden', 'selected'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const ago = (ms) => (ms ? `${duration(Date.now() - ms)} ago` : '—');
const when = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

/** "30m", "2h", "90" (seconds) → seconds; null when empty. */
export function parseDuration(text) {
  const t = String(text || '').trim();
  if (!t) return null;
  const m = t.match(/^(\d+)\s*(s|m|h|d)?$/i);
  if (!m) throw new Error(`${t} is not a duration: write 90, 30m, 2h or 1d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] || 's').toLowerCase()];
}

function badge(state) {
  return h('span', { class: `badge s-${state}` }, state);
}

function notify(text, bad = false) {
  const box = document.getElementById('toast');
  const item = h('div', { class: bad ? 'bad' : '' }, text);
  box.append(item);
  setTimeout(() => item.remove(), bad ? 9000 : 4000);
}

/** Run an action from a button: disabled while it runs, errors shown. */
async function act(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    notify(e.message, true);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** Call fn now and every ms while the page is shown and the tab visible. */
function every(ms, fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) console.warn(e); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  let timer = setTimeout(tick, 0);
  leaving.push(() => { stopped = true; clearTimeout(timer); });
}

function heading(text, ...extra) {
  document.title = `${text} · aibox`;
  return h('div', { class: 'actions' }, h('h1', { tabindex: '-1' }, text), ...extra);
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const out = [h('label', { for: id }, label), hint ? h('div', {}, input, h('div', { class: 'muted', id: `${id}-hint` }, hint)) : input];
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return out;
}

function table(headers, rows, caption) {
  return h('table', {},
    caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', class: /^(Size|Memory|CPUs|Seq|PID)$/.test(t) ? 'num' : '' }, t)))),
    h('tbody', {}, rows));
}

// ---- login and chrome

async function loginPage(root) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'panel login' },
    heading('Log in to aibox'),
    h('p', {}, 'Paste an API key. The admin key of a local server is in ', h('code', {}, 'DATA_DIR/admin.key'), '; ', h('code', {}, 'aibox keys create NAME'), ' makes others.'),
    h('div', { class: 'stack' }, field('API key', input)),
    h('p', {}, h('button', { class: 'primary', type: 'submit' }, 'Log in')),
    error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      session = await api('POST', '/ui/login', { key: input.value.trim() }, { quiet: true });
      location.hash = '#/';
    } catch (e) {
      error.textContent = e.status === 401 ? 'That key is unknown or revoked.' : e.message;
      input.focus();
    }
  });
  root.append(form);
  input.focus();
}

function chrome(path) {
  const nav = document.getElementById('nav');
  nav.hidden = !session;
  for (const a of nav.querySelectorAll('a')) {
    a.hidden = a.hasAttribute('data-admin') && !admin();
    const target = a.getAttribute('href').slice(1);
    const current = target === '/' ? path === '/' : path.startsWith(target);
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const who = document.getElementById('who');
  who.textContent = session ? `${session.key.name} (${session.key.scope})` : '';
}

// ---- overview

function spark(values, label) {
  const s = svg('svg', { class: 'spark', viewBox: '0 0 100 30', preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 100},${28 - (v / max) * 26}`).join(' ');
  s.append(svg('polyline', { points: pts }));
  return s;
}

function card(label, value, extra) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), extra);
}

async function overviewPage(root) {
  const cards = h('div', { class: 'cards', 'aria-live': 'off' });
  const events = h('div');
  root.append(heading('Overview'), cards, h('h2', {}, admin() ? 'Recent events' : 'Your newest sandboxes'), events);
  every(5000, async () => {
    // Admins see every sandbox: health counts them. Others count their own.
    const [health, list] = await Promise.all([api('GET', '/v1/health'), admin() ? null : api('GET', '/v1/sandboxes?limit=1000&view=summary')]);
    const mine = list ? list.sandboxes : [];
    const count = (s) => (list ? mine.filter((x) => x.state === s).length : health.sandboxes[s] ?? 0);
    const mem = health.memory || {};
    const act = health.activity || { creates: [], execs: [] };
    const last = (a) => a[a.length - 1] || 0;
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    cards.replaceChildren(
      card('Active sandboxes', `${health.sandboxes.active} / ${health.sandboxes.max}`,
        h('div', { class: 'muted' }, `${admin() ? 'all' : 'yours'}: ${count('running')} running, ${count('paused')} paused`)),
      card('Memory reserved', `${bytes(mem.reserved)} / ${bytes(mem.budget)}`,
        h('meter', { min: 0, max: mem.budget || 1, value: mem.reserved || 0, 'aria-label': 'memory reserved of the budget' })),
      card('Creates per minute', String(last(act.creates)),
        h('div', { class: 'muted' }, `${sum(act.creates)} in 30 min`), spark(act.creates, 'sandbox creates per minute, last 30 minutes')),
      card('Execs per minute', String(last(act.execs)),
        h('div', { class: 'muted' }, `${sum(act.execs)} in 30 min`), spark(act.execs, 'execs per minute, last 30 minutes')),
      card('Server', health.version, h('div', { class: 'muted' }, `default TTL ${duration(health.limits.default_ttl_seconds * 1000)}`)));
    if (admin()) {
      const { entries } = await api('GET', '/v1/audit?order=desc&limit=15');
      events.replaceChildren(auditTable(entries));
    } else {
      events.replaceChildren(sandboxTable(mine.slice(-15).reverse()));
    }
  });
}

// ---- sandboxes

function expires(s) {
  if (s.state === 'paused') return `${duration(s.remaining_ms)} (paused)`;
  return s.expires_at_ms ? `in ${duration(s.expires_at_ms - Date.now())}` : '—';
}

const labelText = (s) => Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');

function sandboxCells(s) {
  return [
    h('td', {}, h('a', { href: `#/sandboxes/${s.id}`, class: 'mono' }, s.id)),
    h('td', {}, badge(s.state)),
    h('td', {}, s.spec.template || 'host'),
    h('td', { class: 'num' }, bytes(s.limits?.memory)),
    h('td', { class: 'num' }, s.limits?.cpus ?? '—'),
    h('td', {}, ago(s.created_at_ms)),
    h('td', {}, expires(s)),
    h('td', { class: 'mono' }, labelText(s)),
  ];
}

function sandboxTable(list) {
  return table(['ID', 'State', 'Template', 'Memory', 'CPUs', 'Created', 'Expires', 'Labels'], list.map((s) => h('tr', {}, sandboxCells(s))), 'Sandboxes');
}

/** Columns of the Sandboxes page: title and sort key (null: not sortable). */
const COLUMNS = [
  ['ID', (s) => s.id], ['State', (s) => s.state], ['Template', (s) => s.spec.template || 'host'],
  ['Memory', (s) => s.limits?.memory || 0], ['CPUs', (s) => s.limits?.cpus || 0], ['Created', (s) => s.created_at_ms],
  ['Expires', (s) => (s.state === 'paused' ? Date.now() + s.remaining_ms : s.expires_at_ms ?? Infinity)], ['Labels', labelText],
];

async function sandboxesPage(root, _m, query) {
  const state = h('select', { name: 'state' }, ['', 'running', 'paused', 'creating', 'stopped'].map((s) => h('option', { value: s, selected: query.get('state') === s }, s || 'any')));
  const label = h('input', { name: 'label', placeholder: 'key=value', value: query.get('label') || '' });
  const text = h('input', { name: 'q', type: 'search', placeholder: 'id, template, label', value: query.get('q') || '' });
  const count = h('p', { class: 'muted', role: 'status' });
  const body = h('div');
  const remove = h('button', { class: 'danger', disabled: true }, 'Delete selected');
  let all = [];
  let next = null;
  let shown = [];
  const sort = { col: 'Created', desc: true };
  const selected = new Set();
  const bulk = () => {
    remove.disabled = selected.size === 0;
    remove.textContent = `Delete selected (${selected.size})`;
  };
  const show = () => {
    const q = text.value.trim().toLowerCase();
    shown = q ? all.filter((s) => s.id.includes(q) || (s.spec.template || 'host').toLowerCase().includes(q)
      || labelText(s).toLowerCase().includes(q)) : all.slice();
    const key = COLUMNS.find(([c]) => c === sort.col)[1];
    shown.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (sort.desc ? -1 : 1);
    });
    for (const id of [...selected]) if (!all.some((s) => s.id === id)) selected.delete(id);
    count.textContent = `${shown.length} sandbox${shown.length === 1 ? '' : 'es'}${q ? ` of ${all.length}` : ''}${next ? ' (more on the server)' : ''}`;
    const toggleAll = h('input', { type: 'checkbox', 'aria-label': 'Select every sandbox shown', checked: shown.length > 0 && shown.every((s) => selected.has(s.id)) });
    toggleAll.addEventListener('change', () => {
      for (const s of shown) if (toggleAll.checked) selected.add(s.id); else selected.delete(s.id);
      show();
    });
    const head = h('tr', {}, h('th', { scope: 'col' }, toggleAll), COLUMNS.map(([c]) => h('th', {
      scope: 'col', class: ['Memory', 'CPUs'].includes(c) ? 'num' : '', 'aria-sort': sort.col === c ? (sort.desc ? 'descending' : 'ascending') : 'none',
    }, h('button', { class: 'sort', onclick: () => { sort.desc = sort.col === c ? !sort.desc : c === 'Created'; sort.col = c; show(); } },
      c, sort.col === c ? (sort.desc ? ' ↓' : ' ↑') : ''))));
    const rows = shown.map((s) => {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select ${s.id}`, checked: selected.has(s.id) });
      box.addEventListener('change', () => { if (box.checked) selected.add(s.id); else selected.delete(s.id); toggleAll.checked = shown.every((x) => selected.has(x.id)); bulk(); });
      return h('tr', {}, h('td', {}, box), sandboxCells(s));
    });
    body.replaceChildren(h('table', {}, h('caption', { class: 'sr-only' }, 'Sandboxes'), h('thead', {}, head), h('tbody', {}, rows)));
    if (next) body.append(h('p', {}, h('button', { onclick: (e) => act(e.target, () => load(true)) }, 'Load more')));
    bulk();
  };
  const load = async (more = false) => {
    const params = new URLSearchParams({ limit: '1000', view: 'summary' });
    if (state.value) params.set('state', state.value);
    if (label.value.trim()) params.set('label', label.value.trim());
    if (more && next) params.set('cursor', next);
    const page = await api('GET', `/v1/sandboxes?${params}`);
    all = more ? all.concat(page.sandboxes) : page.sandboxes;
    next = page.next;
    show();
  };
  remove.addEventListener('click', () => act(remove, async () => {
    const ids = [...selected];
    if (!confirm(`Delete ${ids.length} sandbox${ids.length === 1 ? '' : 'es'}? Their processes and files are gone for good.`)) return;
    const failed = [];
    const work = ids.slice();
    await Promise.all(Array.from({ length: 6 }, async () => {
      for (let id = work.shift(); id; id = work.shift()) {
        try { await api('DELETE', `/v1/sandboxes/${id}`); selected.delete(id); } catch (e) { failed.push(`${id}: ${e.message}`); }
      }
    }));
    notify(`Deleted ${ids.length - failed.length} of ${ids.length}`, failed.length > 0);
    if (failed.length) notify(failed.slice(0, 3).join('; '), true);
    await load();
  }));
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sandboxes' },
    h('label', {}, 'State', state), h('label', {}, 'Label', label), h('label', {}, 'Search', text),
    h('button', { type: 'submit' }, 'Apply'));
  filters.addEventListener('submit', (e) => { e.preventDefault(); act(null, () => load()); });
  state.addEventListener('change', () => act(null, () => load()));
  let debounce;
  text.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(show, 120); });
  root.append(heading('Sandboxes', h('a', { class: 'button primary', href: '#/sandboxes/new' }, 'New sandbox'),
    h('button', { onclick: (e) => act(e.target, () => load()) }, 'Refresh')), filters, h('div', { class: 'actions' }, count, remove), body);
  await load();
}

/** The create form's controls, each tagged with the create request's field it fills (`data-field`): the dashboard's test reads the fields from the served OpenAPI document and finds a control for each. */
async function createPage(root, _m, query) {
  const { templates } = await api('GET', '/v1/templates');
  const limits = session.settings;
  const tag = (field, el) => { el.dataset.field = field; return el; };
  const template = tag('template', h('select', { name: 'template' }, templates.map((t) => h('option', { value: t.name }, t.name))));
  const memory = tag('memory', h('input', { name: 'memory', placeholder: 'e.g. 512m' }));
  const cpus = tag('cpus', h('input', { name: 'cpus', type: 'number', min: '0.1', step: '0.1', placeholder: 'e.g. 1' }));
  const pids = tag('pids', h('input', { name: 'pids', type: 'number', min: '1', step: '1', placeholder: 'default 1024' }));
  const disk = tag('disk', h('input', { name: 'disk', placeholder: 'e.g. 1g' }));
  const ttl = tag('ttl_seconds', h('input', { name: 'ttl', placeholder: `default ${duration(limits.default_ttl_seconds * 1000)}` }));
  const idle = tag('idle_timeout_seconds', h('input', { name: 'idle', placeholder: 'e.g. 10m (none by default)' }));
  const network = tag('network', h('select', { name: 'network' }, [['none', 'none (loopback only)'], ['allowlist', 'allowlist'], ['full', 'full']].map(([v, t]) => h('option', { value: v }, t))));
  const rules = h('textarea', { name: 'rules', rows: 4, placeholder: 'pypi.org\n*.githubusercontent.com:443\n10.0.0.0/8\ndeny example.com' });
  const enforcement = h('select', { name: 'enforcement' }, [['', 'the best the host offers'], ['proxy', 'proxy (HTTP and HTTPS)'], ['l4', 'l4 (any TCP, checked per connection)']].map(([v, t]) => h('option', { value: v }, t)));
  const pub = tag('public', h('input', { type: 'checkbox', name: 'public' }));
  const labels = tag('labels', h('textarea', { name: 'labels', rows: 2, placeholder: 'team=ml' }));
  const env = tag('env', h('textarea', { name: 'env', rows: 2, placeholder: 'KEY=value' }));
  const workdir = tag('workdir', h('input', { name: 'workdir', placeholder: '/workspace' }));
  const user = tag('user', h('input', { name: 'user', placeholder: 'user (uid 1000), root, or a uid' }));
  const hostname = tag('hostname', h('input', { name: 'hostname', placeholder: 'the sandbox id' }));
  const level = tag('require_isolation', h('select', { name: 'require_isolation' }, [['', 'no minimum'], ['basic', 'basic'], ['standard', 'standard'], ['strict', 'strict'], ['vm', 'vm']].map(([v, t]) => h('option', { value: v }, t))));
  const backend = tag('backend', h('select', { name: 'backend' }, [['', "the server's default"], ['namespaces', 'namespaces'], ['microvm', 'microvm']].map(([v, t]) => h('option', { value: v }, t))));
  const mounts = tag('mounts', h('textarea', { name: 'mounts', rows: 2, placeholder: '/srv/data:/data:ro' }));
  const volumes = tag('volumes', h('textarea', { name: 'volumes', rows: 2, placeholder: 'pip-cache:/home/user/.cache/pip' }));
  const workspace = tag('workspace', h('input', { name: 'workspace', placeholder: 'a workspace (its files at /workspace)', value: query.get('workspace') || '' }));
  const snapshot = tag('snapshot', h('input', { name: 'snapshot', placeholder: 'a snapshot id (its files and settings)' }));
  const error = h('p', { class: 'error full', role: 'alert' });
  const rulesRow = field('Allowed destinations', rules, 'one rule per line: a domain (*.x.org), host:port, a CIDR, or deny RULE');
  const enforcementRow = field('Enforcement', enforcement);
  const setRules = () => {
    rulesRow.forEach((n) => { n.hidden = network.value !== 'allowlist'; });
    enforcementRow.forEach((n) => { n.hidden = network.value === 'none'; });
  };
  network.addEventListener('change', setRules);
  const pairs = (text, what) => Object.fromEntries(text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const i = l.indexOf('=');
    if (i < 1) throw new Error(`${what}: ${l} is not KEY=value`);
    return [l.slice(0, i), l.slice(i + 1)];
  }));
  const lines = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean);
  const mountOf = (l) => {
    const p = l.split(':');
    if ((p.length !== 2 && p.length !== 3) || (p.length === 3 && p[2] !== 'ro' && p[2] !== 'rw')) throw new Error(`mounts: ${l} is not HOST:GUEST[:ro|rw]`);
    return { host: p[0], guest: p[1], read_only: p[2] === 'ro' };
  };
  const volumeOf = (l) => {
    const p = l.split(':');
    if ((p.length !== 2 && p.length !== 3) || (p.length === 3 && p[2] !== 'ro' && p[2] !== 'rw')) throw new Error(`volumes: ${l} is not NAME:/PATH[:ro|rw]`);
    return p[2] === 'ro' ? { name: p[0], path: p[1], read_only: true } : { name: p[0], path: p[1] };
  };
  const advanced = h('details', { class: 'full', open: !!query.get('workspace') }, h('summary', {}, 'More settings'),
    h('div', { class: 'grid' },
      field('Processes', pids, 'the most processes and threads at once'),
      field('Working directory', workdir), field('User', user), field('Hostname', hostname),
      field('Minimum isolation', level, 'refuse to create the sandbox with less'),
      field('Backend', backend),
      field('Host mounts', mounts, 'HOST:GUEST[:ro|rw] per line, under the paths the operator allowed'),
      field('Volumes', volumes, 'NAME:/PATH[:ro|rw] per line: your volumes (the Volumes page)'),
      field('Workspace', workspace, 'its files at /workspace, its environment and history (the Workspaces page)'),
      field('From snapshot', snapshot)));
  const form = h('form', { class: 'panel grid', 'aria-label': 'New sandbox' },
    field('Template', template), field('Memory', memory), field('CPUs', cpus), field('Disk', disk),
    field('Lifetime (TTL)', ttl, `30m, 2h, or seconds; at most ${duration(limits.max_ttl_seconds * 1000)}`),
    field('Idle timeout', idle), field('Network', network), rulesRow, enforcementRow,
    field('Public ports', pub, 'published ports answer without the port token'),
    field('Labels', labels, 'KEY=value per line'), field('Environment', env, 'KEY=value per line'),
    advanced,
    h('div', { class: 'full actions' }, h('button', { class: 'primary', type: 'submit' }, 'Create sandbox'), h('a', { href: '#/sandboxes' }, 'Cancel')),
    error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const body = { template: template.value, labels: pairs(labels.value, 'labels'), env: pairs(env.value, 'environment'), public: pub.checked };
      const text = [['memory', memory], ['disk', disk], ['workdir', workdir], ['user', user], ['hostname', hostname], ['snapshot', snapshot], ['workspace', workspace]];
      for (const [k, el] of text) if (el.value.trim()) body[k] = el.value.trim();
      for (const [k, el] of [['require_isolation', level], ['backend', backend]]) if (el.value) body[k] = el.value;
      if (cpus.value) body.cpus = Number(cpus.value);
      if (pids.value) body.pids = Number(pids.value);
      const t = parseDuration(ttl.value);
      if (t !== null) body.ttl_seconds = t;
      const i = parseDuration(idle.value);
      if (i !== null) body.idle_timeout_seconds = i;
      const m = lines(mounts.value).map(mountOf);
      if (m.length) body.mounts = m;
      const v = lines(volumes.value).map(volumeOf);
      if (v.length) body.volumes = v;
      if (network.value !== 'none') {
        body.network = { mode: network.value, rules: network.value === 'allowlist' ? lines(rules.value) : [] };
        if (enforcement.value) body.network.enforcement = enforcement.value;
      }
      // A restore keeps the snapshot's template unless one is chosen.
      if (body.snapshot && template.value === 'host') delete body.template;
      const sb = await api('POST', '/v1/sandboxes', body);
      notify(`Created ${sb.id}`);
      location.hash = `#/sandboxes/${sb.id}`;
    } catch (e) {
      error.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  root.append(heading('New sandbox'), form);
  setRules();
}

const TABS = [['overview', 'Overview'], ['terminal', 'Terminal'], ['files', 'Files'], ['processes', 'Processes'], ['ports', 'Ports'], ['snapshots', 'Snapshots']];

async function sandboxPage(root, [id, tab = 'overview'], query) {
  if (!TABS.some(([t]) => t === tab)) tab = 'overview';
  let sb = await api('GET', `/v1/sandboxes/${enc(id)}`);
  const head = h('div');
  const ttl = h('input', { name: 'ttl', size: 6, value: '30m' });
  const renderHead = () => {
    const running = sb.state === 'running';
    head.replaceChildren(
      heading(`Sandbox ${sb.id}`, badge(sb.state)),
      h('div', { class: 'actions panel' },
        running ? h('button', { onclick: (e) => act(e.target, async () => { sb = await api('POST', `/v1/sandboxes/${id}/pause`); renderHead(); notify('Paused'); }) }, 'Pause') : null,
        sb.state === 'paused' ? h('button', { onclick: (e) => act(e.target, async () => { sb = await api('POST', `/v1/sandboxes/${id}/resume`); renderHead(); notify('Resumed'); }) }, 'Resume') : null,
        h('label', { for: 'ttl-input' }, 'Lifetime from now'), Object.assign(ttl, { id: 'ttl-input' }),
        h('button', { onclick: (e) => act(e.target, async () => { sb = await api('POST', `/v1/sandboxes/${id}/timeout`, { ttl_seconds: parseDuration(ttl.value) }); renderHead(); notify('Lifetime set'); }) }, 'Set lifetime'),
        h('span', { class: 'muted' }, sb.state === 'paused' ? `${duration(sb.remaining_ms)} left (clock stopped)` : sb.expires_at_ms ? `expires in ${duration(sb.expires_at_ms - Date.now())}` : ''),
        h('button', { class: 'danger', onclick: (e) => act(e.target, async () => {
          if (!confirm(`Delete sandbox ${id}? Its processes and files are gone for good.`)) return;
          await api('DELETE', `/v1/sandboxes/${id}`);
          notify(`Deleted ${id}`);
          location.hash = '#/sandboxes';
        }) }, 'Delete')));
  };
  renderHead();
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Sandbox views' },
    TABS.map(([t, label]) => h('a', { role: 'tab', id: `tab-${t}`, href: `#/sandboxes/${id}/${t}`, 'aria-selected': String(t === tab), 'aria-controls': 'tabpanel' }, label)));
  // Arrow keys move between tabs (the WAI-ARIA tabs pattern); Tab goes on to the panel.
  tabs.addEventListener('keydown', (e) => {
    const i = TABS.findIndex(([t]) => t === tab);
    const j = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[e.key];
    if (j === undefined) return;
    e.preventDefault();
    location.hash = `#/sandboxes/${id}/${TABS[(j + TABS.length) % TABS.length][0]}`;
  });
  for (const a of tabs.children) a.tabIndex = a.getAttribute('aria-selected') === 'true' ? 0 : -1;
  const panel = h('div', { id: 'tabpanel', role: 'tabpanel', tabindex: '0', 'aria-labelledby': `tab-${tab}` });
  root.append(head, tabs, panel);
  const pages = { overview: sbOverview, terminal: sbTerminal, files: sbFiles, processes: sbProcesses, ports: sbPorts, snapshots: sbSnapshots };
  await pages[tab](panel, sb, query, (fresh) => { sb = fresh; renderHead(); });
}

function chart(title, unit) {
  const box = svg('svg', { class: 'chart', viewBox: '0 0 300 100', preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
  const line = svg('polyline', { points: '' });
  box.append(line);
  const now = h('span', { class: 'muted' });
  const points = [];
  return {
    node: h('figure', { class: 'panel' }, h('figcaption', {}, h('strong', {}, title), ' ', now), box),
    push(v, max, text) {
      points.push(v);
      if (points.length > 60) points.shift();
      const top = Math.max(max || 0, ...points, 1e-9);
      line.setAttribute('points', points.map((p, i) => `${(i / 59) * 300},${98 - (p / top) * 94}`).join(' '));
      now.textContent = text;
      box.setAttribute('aria-label', `${title}: ${text}`);
    },
    unit,
  };
}

function isolationSummary(iso) {
  if (!iso || !iso.backend) return h('p', { class: 'muted' }, 'No isolation report (the sandbox is not running).');
  const ns = Object.entries(iso.namespaces || {}).filter(([, v]) => v === true).map(([k]) => k).join(', ');
  const lim = (l) => (l && l.applied ? `${l.value ?? 'on'}` : l && l.reason ? `not applied: ${l.reason}` : 'none');
  const rows = [
    ['Backend', iso.backend], ['Level', iso.level || 'below every level'], ['Rootless', String(iso.rootless)],
    ['Namespaces', ns || '—'], ['seccomp', iso.seccomp ? `on (${iso.seccomp_allowed_syscalls} syscalls allowed)` : 'off'],
    ['Landlock', iso.landlock_enforced ? `enforced (ABI ${iso.landlock_abi})` : 'not enforced'],
    ['no_new_privs', String(iso.no_new_privs)], ['Capabilities left', iso.bounding_caps && iso.bounding_caps.length ? iso.bounding_caps.join(', ') : 'none'],
    ['cgroups', `${iso.cgroups?.version}: memory ${lim(iso.cgroups?.memory)}, pids ${lim(iso.cgroups?.pids)}, cpu ${lim(iso.cgroups?.cpu)}`],
    ['Disk quota', `${lim(iso.disk_quota)} (${iso.disk_quota_mechanism || '—'})`], ['/proc masked', String(iso.proc_masked)], ['/sys', iso.sys],
    ['Network', iso.network], ['Dedicated uid range', String(iso.dedicated_uid_range)],
  ];
  return h('div', {}, h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('details', {}, h('summary', {}, 'Full report (JSON)'), h('pre', {}, JSON.stringify(iso, null, 2))));
}

async function sbOverview(panel, sb, _q, update) {
  const spec = sb.spec || {};
  const info = h('dl', { class: 'kv' });
  const fill = (s) => info.replaceChildren(...[
    ['State', s.state], ['Template', spec.template || 'host'], ['Created', when(s.created_at_ms)],
    ['Memory limit', bytes(s.limits?.memory)], ['CPUs', s.limits?.cpus ?? 'unlimited'], ['Disk', bytes(s.limits?.disk)], ['Process limit', s.limits?.pids ?? '—'],
    ['Network', `${s.spec.network || 'none'}${(s.spec.network_rules || []).length ? `: ${s.spec.network_rules.join(', ')}` : ''}`],
    ['User', spec.user ?? 'root'], ['Labels', Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ') || '—'],
    ['Processes', s.usage ? s.usage.pids ?? '—' : '—'], ['Memory now', s.usage ? bytes(s.usage.memory_bytes) : '—'],
    ['Memory peak', s.usage ? bytes(s.usage.memory_peak_bytes) : '—'], ['OOM kills', s.usage ? s.usage.oom_kills ?? 0 : '—'],
  ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
  fill(sb);
  const cpu = chart('CPU', '%');
  const mem = chart('Memory', 'bytes');
  panel.append(h('div', { class: 'charts' }, cpu.node, mem.node), h('div', { class: 'panel' }, info),
    networkForm(sb, (fresh) => { fill(fresh); }),
    h('h2', {}, 'Isolation'), h('div', { class: 'panel' }, isolationSummary(sb.isolation)));
  let prev = null;
  every(2000, async () => {
    const s = await api('GET', `/v1/sandboxes/${sb.id}`);
    const u = s.usage;
    if (u) {
      const t = performance.now();
      if (prev && u.cpu_usec !== null && prev.cpu !== null) {
        const pct = Math.max(0, ((u.cpu_usec - prev.cpu) / ((t - prev.t) * 1000)) * 100);
        cpu.push(pct, 100 * (s.limits?.cpus || 1), `${pct.toFixed(1)}%`);
      }
      prev = { t, cpu: u.cpu_usec };
      const limit = s.limits?.memory;
      mem.push(u.memory_bytes || 0, limit, `${bytes(u.memory_bytes)}${limit ? ` of ${bytes(limit)}` : ''}`);
    }
    fill(s);
    if (s.state !== sb.state) update(s);
  });
}

/** Change a sandbox's egress policy; new connections follow it. */
function networkForm(sb, done) {
  const mode = h('select', { id: 'net-mode', name: 'mode' }, ['none', 'allowlist', 'full'].map((m) => h('option', { value: m, selected: (sb.spec.network || 'none') === m }, m)));
  const rules = h('textarea', { id: 'net-rules', name: 'rules', rows: 3, value: (sb.spec.network_rules || []).join('\n') });
  const status = h('p', { role: 'status' });
  const form = h('form', { class: 'panel grid', 'aria-label': 'Network policy' },
    h('h2', { class: 'full' }, 'Network'),
    field('Egress', mode), field('Rules', rules, 'one per line: a domain (*.x.org), host:port, a CIDR, or deny RULE; first match wins'),
    h('div', { class: 'full actions' }, h('button', { type: 'submit' }, 'Apply network policy'), status));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    status.textContent = '';
    act(form.querySelector('button'), async () => {
      try {
        const fresh = await api('PATCH', `/v1/sandboxes/${sb.id}/network`, { mode: mode.value, rules: rules.value.split('\n').map((r) => r.trim()).filter(Boolean) });
        status.textContent = 'Applied: new connections follow it.';
        done(fresh);
      } catch (err) {
        status.replaceChildren(h('span', { class: 'error' }, err.message));
      }
    });
  });
  return form;
}

async function sbTerminal(panel, sb) {
  if (sb.state !== 'running') {
    panel.append(h('p', {}, `The sandbox is ${sb.state}: a terminal needs it running.`));
    return;
  }
  const { openTerminal } = await import('./term.js');
  const stop = openTerminal(panel, sb.id, { csrf, h });
  leaving.push(stop);
}

function pathParts(path) {
  return path.split('/').filter(Boolean);
}

async function sbFiles(panel, sb, query) {
  if (sb.state !== 'running') {
    panel.append(h('p', {}, `The sandbox is ${sb.state}: its files can be read while it runs.`));
    return;
  }
  const dir = query.get('path') || sb.spec.workdir || '/';
  const open = query.get('file');
  const base = `/v1/sandboxes/${sb.id}`;
  const link = (p, f) => `#/sandboxes/${sb.id}/files?path=${enc(p)}${f ? `&file=${enc(f)}` : ''}`;
  const join = (d, n) => (d.endsWith('/') ? d + n : `${d}/${n}`);
  const crumbs = h('nav', { class: 'breadcrumbs', 'aria-label': 'Path' }, h('a', { href: link('/') }, '/'),
    pathParts(dir).map((p, i, all) => [h('a', { href: link(`/${all.slice(0, i + 1).join('/')}`) }, p), i < all.length - 1 ? '/' : '']));
  const upload = h('input', { type: 'file', multiple: true, id: 'upload-input' });
  const mkdir = h('input', { name: 'dirname', placeholder: 'name', size: 14 });
  const newfile = h('input', { name: 'filename', placeholder: 'name', size: 14 });
  const listing = h('div');
  const editor = h('div');
  const refresh = async () => {
    const { entries } = await api('GET', `${base}/files/list?path=${enc(dir)}`);
    entries.sort((a, b) => (a.kind === 'dir') - (b.kind === 'dir') ? (b.kind === 'dir') - (a.kind === 'dir') : a.path.localeCompare(b.path));
    const rows = entries.map((e) => {
      const name = e.path.split('/').pop();
      const full = join(dir, name);
      const nameCell = e.kind === 'dir' ? h('a', { href: link(full) }, `${name}/`)
        : e.kind === 'file' ? h('a', { href: link(dir, full) }, name) : h('span', {}, e.target ? `${name} → ${e.target}` : name);
      return h('tr', {},
        h('td', { class: 'mono' }, nameCell), h('td', {}, e.kind), h('td', { class: 'num' }, e.kind === 'file' ? bytes(e.size) : ''),
        h('td', { class: 'mono' }, (e.mode & 0o7777).toString(8).padStart(4, '0')), h('td', {}, e.mtime ? when(e.mtime * 1000) : '—'),
        h('td', { class: 'actions' },
          e.kind === 'file' ? h('a', { class: 'button', href: `${base}/files?path=${enc(full)}`, download: name, 'aria-label': `Download ${name}` }, 'Download') : null,
          h('button', { class: 'danger', 'aria-label': `Delete ${name}`, onclick: (ev) => act(ev.target, async () => {
            if (!confirm(`Delete ${full}${e.kind === 'dir' ? ' and everything in it' : ''}?`)) return;
            await api('DELETE', `${base}/files?path=${enc(full)}${e.kind === 'dir' ? '&recursive=true' : ''}`);
            notify(`Deleted ${full}`);
            await refresh();
          }) }, 'Delete')));
    });
    listing.replaceChildren(rows.length ? table(['Name', 'Kind', 'Size', 'Mode', 'Modified', 'Actions'], rows, `Files in ${dir}`) : h('p', { class: 'muted' }, 'Empty directory.'));
  };
  upload.addEventListener('change', () => act(null, async () => {
    for (const f of upload.files) {
      await api('PUT', `${base}/files?path=${enc(join(dir, f.name))}`, f);
      notify(`Uploaded ${f.name} (${bytes(f.size)})`);
    }
    upload.value = '';
    await refresh();
  }));
  const toolbar = h('div', { class: 'actions panel' },
    h('label', { for: 'upload-input' }, 'Upload files'), upload,
    h('label', { for: 'mkdir-input' }, 'New folder'), Object.assign(mkdir, { id: 'mkdir-input' }),
    h('button', { onclick: (e) => act(e.target, async () => {
      if (!mkdir.value.trim()) return;
      await api('POST', `${base}/files/mkdir`, { path: join(dir, mkdir.value.trim()) });
      mkdir.value = '';
      await refresh();
    }) }, 'Create folder'),
    h('label', { for: 'newfile-input' }, 'New file'), Object.assign(newfile, { id: 'newfile-input' }),
    h('button', { onclick: () => { if (newfile.value.trim()) location.hash = link(dir, join(dir, newfile.value.trim())); } }, 'Edit new file'));
  panel.append(crumbs, toolbar, editor, listing);
  if (open) await fileEditor(editor, base, open, refresh, () => { location.hash = link(dir); });
  await refresh();
}

const MAX_EDIT = 1 << 20;

async function fileEditor(box, base, path, refresh, close) {
  let text = '';
  let exists = true;
  let binary = false;
  let size = 0;
  try {
    const st = await api('GET', `${base}/files/stat?path=${enc(path)}`);
    size = st.size;
  } catch (e) {
    if (e.status !== 404) throw e;
    exists = false;
  }
  const download = h('a', { class: 'button', href: `${base}/files?path=${enc(path)}`, download: path.split('/').pop() }, 'Download');
  if (exists && size > MAX_EDIT) {
    box.append(h('div', { class: 'panel' }, h('h2', {}, path), h('p', {}, `${bytes(size)}: too large to edit here.`), download));
    return;
  }
  if (exists) {
    const r = await api('GET', `${base}/files?path=${enc(path)}`, undefined, { raw: true });
    const buf = new Uint8Array(await r.arrayBuffer());
    binary = buf.subarray(0, 8192).includes(0);
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { binary = true; }
  }
  if (binary) {
    box.append(h('div', { class: 'panel' }, h('h2', {}, path), h('p', {}, `A binary file (${bytes(size)}).`), download));
    return;
  }
  const area = h('textarea', { id: 'editor', rows: 18, spellcheck: 'false', value: text });
  const status = h('span', { class: 'muted', role: 'status' }, exists ? bytes(size) : 'new file');
  box.append(h('div', { class: 'panel' }, h('h2', {}, h('label', { for: 'editor' }, `Edit ${path}`)), area,
    h('div', { class: 'actions' },
      h('button', { class: 'primary', onclick: (e) => act(e.target, async () => {
        await api('PUT', `${base}/files?path=${enc(path)}`, new Blob([area.value]));
        status.textContent = `saved ${new Date().toLocaleTimeString()}`;
        notify(`Saved ${path}`);
        await refresh();
      }) }, 'Save'),
      exists ? download : null,
      h('button', { onclick: close }, 'Close'), status)));
}

async function sbProcesses(panel, sb) {
  if (sb.state !== 'running') {
    panel.append(h('p', {}, `The sandbox is ${sb.state}.`));
    return;
  }
  const base = `/v1/sandboxes/${sb.id}`;
  const cmd = h('input', { id: 'proc-cmd', name: 'cmd', size: 40, placeholder: 'e.g. python3 -m http.server 8000' });
  const list = h('div');
  const load = async () => {
    const { processes } = await api('GET', `${base}/processes`);
    list.replaceChildren(processes.length ? table(['ID', 'PID', 'Command', 'Kind', 'Status', 'Actions'], processes.map((p) => h('tr', {},
      h('td', { class: 'num' }, p.id), h('td', { class: 'num' }, p.pid), h('td', { class: 'mono' }, p.argv.join(' ')),
      h('td', {}, p.background ? 'background' : 'foreground'),
      h('td', {}, p.running ? 'running' : p.exit ? (p.exit.signal ? `killed by signal ${p.exit.signal}` : `exited ${p.exit.code}`) : 'done'),
      h('td', { class: 'actions' }, p.running ? [[15, 'Stop', 'SIGTERM'], [9, 'Kill', 'SIGKILL']].map(([signal, label, name]) =>
        h('button', { class: 'danger', title: `send ${name}`, 'aria-label': `${label} process ${p.id}`, onclick: (e) => act(e.target, async () => {
          await api('POST', `${base}/processes/${p.id}/kill`, { signal });
          await load();
        }) }, label)) : ''))), 'Processes') : h('p', { class: 'muted' }, 'No processes started through the API are running or remembered.'));
  };
  const form = h('form', { class: 'actions panel' }, h('label', { for: 'proc-cmd' }, 'Start in the background'), cmd, h('button', { type: 'submit' }, 'Start'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const p = await api('POST', `${base}/processes`, { cmd: cmd.value });
      notify(`Started process ${p.id} (pid ${p.pid})`);
      cmd.value = '';
      await load();
    });
  });
  panel.append(form, list);
  every(3000, load);
}

async function sbPorts(panel, sb) {
  const base = `/v1/sandboxes/${sb.id}`;
  const box = h('div');
  const load = async () => {
    if (sb.state !== 'running') {
      box.replaceChildren(h('p', {}, `The sandbox is ${sb.state}: ports answer while it runs.`));
      return;
    }
    const p = await api('GET', `${base}/ports`);
    const pub = h('input', { type: 'checkbox', id: 'ports-public', checked: p.public });
    pub.addEventListener('change', () => act(pub, async () => { await api('PATCH', `${base}/ports`, { public: pub.checked }); await load(); }));
    box.replaceChildren(
      h('div', { class: 'actions panel' }, pub, h('label', { for: 'ports-public' }, 'Public (no port token needed)'),
        h('button', { onclick: (e) => act(e.target, async () => { await api('PATCH', `${base}/ports`, { rotate_token: true }); notify('New port token: old URLs stop working'); await load(); }) }, 'Rotate token')),
      p.ports.length ? table(['Port', 'Address', 'Reachable', 'URL'], p.ports.map((x) => h('tr', {},
        h('td', { class: 'num' }, x.port), h('td', { class: 'mono' }, x.address), h('td', {}, x.reachable ? 'yes' : 'no (loopback only inside)'),
        h('td', {}, x.url ? h('a', { href: p.public ? x.url : `${x.url}?aibox_token=${enc(p.token)}`, target: '_blank', rel: 'noopener noreferrer' }, x.url) : '—'))), 'Published ports')
        : h('p', { class: 'muted' }, 'Nothing listens on a TCP port inside yet. Start a server (Processes tab) and it shows up here.'),
      h('p', { class: 'muted' }, 'Links open on the app\'s own host name (', h('code', {}, p.url_template || ''), '), so its pages never share the dashboard\'s origin.'));
  };
  panel.append(box);
  every(4000, load);
}

async function sbSnapshots(panel, sb) {
  const name = h('input', { id: 'snap-name', name: 'name', placeholder: 'optional', size: 18 });
  const list = h('div');
  const load = async () => {
    const { snapshots } = await api('GET', `/v1/snapshots?sandbox=${sb.id}`);
    list.replaceChildren(snapshots.length ? snapshotTable(snapshots, load) : h('p', { class: 'muted' }, 'No snapshots of this sandbox yet.'));
  };
  const form = h('form', { class: 'actions panel' }, h('label', { for: 'snap-name' }, 'Snapshot name'), name,
    h('button', { class: 'primary', type: 'submit', disabled: sb.state !== 'running' && sb.state !== 'paused' }, 'Take snapshot'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const s = await api('POST', `/v1/sandboxes/${sb.id}/snapshots`, name.value.trim() ? { name: name.value.trim() } : {});
      notify(`Snapshot ${s.id} taken (${bytes(s.size_bytes)})`);
      name.value = '';
      await load();
    });
  });
  panel.append(form, list);
  await load();
}

function snapshotTable(snapshots, reload) {
  return table(['ID', 'Name', 'Taken', 'Size', 'Files', 'Actions'], snapshots.map((s) => {
    const count = h('input', { type: 'number', min: 1, max: 100, value: 2, size: 3, 'aria-label': `Number of forks of ${s.id}` });
    return h('tr', {},
      h('td', { class: 'mono' }, s.id), h('td', {}, s.name || '—'), h('td', {}, ago(s.created_at_ms)), h('td', { class: 'num' }, bytes(s.size_bytes)), h('td', { class: 'num' }, s.entries ?? '—'),
      h('td', { class: 'actions' },
        h('button', { 'aria-label': `Restore ${s.id} into a new sandbox`, onclick: (e) => act(e.target, async () => {
          const sb = await api('POST', `/v1/snapshots/${s.id}/restore`, {});
          notify(`Restored into ${sb.id}`);
          location.hash = `#/sandboxes/${sb.id}`;
        }) }, 'Restore'),
        count,
        h('button', { 'aria-label': `Fork ${s.id}`, onclick: (e) => act(e.target, async () => {
          const r = await api('POST', `/v1/snapshots/${s.id}/fork`, { count: Number(count.value) });
          notify(`Forked into ${r.sandboxes.map((x) => x.id).join(', ')}`);
        }) }, 'Fork'),
        h('button', { class: 'danger', 'aria-label': `Delete snapshot ${s.id}`, onclick: (e) => act(e.target, async () => {
          if (!confirm(`Delete snapshot ${s.id}?`)) return;
          await api('DELETE', `/v1/snapshots/${s.id}`);
          await reload();
        }) }, 'Delete')));
  }), 'Snapshots');
}

// ---- workspaces

async function workspacesPage(root) {
  const list = h('div');
  const load = async () => {
    const { workspaces } = await api('GET', '/v1/workspaces');
    list.replaceChildren(...(workspaces.length ? workspaces.map((w) => {
      const snapName = h('input', { size: 10, placeholder: 'name', 'aria-label': `Snapshot name for workspace ${w.name}` });
      return h('section', { class: 'panel', 'aria-label': `Workspace ${w.name}` },
        h('h2', {}, w.name),
        h('p', { class: 'muted' }, `Files: ${bytes(w.files.used_bytes)} of ${bytes(w.files.quota.bytes)}${w.files.quota.enforced ? '' : ' (quota not enforced)'}; `,
          `environment: ${Object.keys(w.env).length ? Object.entries(w.env).map(([k, v]) => `${k}=${v}`).join(' ') : 'none'}; made ${ago(w.created_at_ms)}.`),
        h('p', {}, 'Sandboxes now: ', w.sandboxes.length ? w.sandboxes.map((id) => h('a', { href: `#/sandboxes/${id}`, class: 'mono' }, id, ' ')) : '—'),
        h('div', { class: 'actions' },
          h('a', { class: 'button primary', href: `#/sandboxes/new?workspace=${enc(w.name)}` }, 'New sandbox in it'),
          snapName, h('button', { 'aria-label': `Snapshot files of ${w.name}`, onclick: (e) => act(e.target, async () => {
            await api('POST', `/v1/workspaces/${w.id}/snapshots`, { name: snapName.value.trim() });
            notify(`Snapshot ${snapName.value.trim()} of ${w.name} taken`);
            await load();
          }) }, 'Snapshot files'),
          h('button', { class: 'danger', 'aria-label': `Delete workspace ${w.name}`, disabled: w.sandboxes.length > 0, onclick: (e) => act(e.target, async () => {
            if (!confirm(`Delete workspace ${w.name}, its files and its history?`)) return;
            await api('DELETE', `/v1/workspaces/${w.id}`);
            await load();
          }) }, 'Delete')),
        table(['When', 'What', 'Sandbox', 'Snapshot', 'From snapshot'], w.history.slice().reverse().map((e) => h('tr', {},
          h('td', {}, ago(e.at_ms)), h('td', {}, e.event.replace('_', ' ')),
          h('td', { class: 'mono' }, e.sandbox || '—'), h('td', { class: 'mono' }, e.snapshot || '—'), h('td', { class: 'mono' }, e.from_snapshot || '—'))),
          `History of ${w.name}`));
    }) : [h('p', { class: 'muted' }, 'No workspaces yet.')]));
  };
  const name = h('input', { id: 'ws-name', name: 'name', required: true, placeholder: 'my-project', size: 16 });
  const size = h('input', { id: 'ws-size', name: 'size', placeholder: '1g', size: 8 });
  const form = h('form', { class: 'actions panel', 'aria-label': 'New workspace' },
    h('label', { for: 'ws-name' }, 'Workspace name'), name, h('label', { for: 'ws-size' }, 'Files quota'), size,
    h('button', { class: 'primary', type: 'submit' }, 'Create workspace'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const body = { name: name.value.trim() };
      if (size.value.trim()) body.size = size.value.trim();
      const w = await api('POST', '/v1/workspaces', body);
      notify(`Created workspace ${w.name}`);
      name.value = '';
      await load();
    });
  });
  root.append(heading('Workspaces'), h('p', { class: 'muted' }, 'A workspace keeps its files, environment and history across the sandboxes made in it.'), form, list);
  await load();
}

// ---- volumes

async function volumesPage(root) {
  const list = h('div');
  const load = async () => {
    const { volumes } = await api('GET', '/v1/volumes');
    list.replaceChildren(volumes.length ? table(['Name', 'Used', 'Quota', 'Enforced', 'Mounted by', 'Snapshots', 'Created', 'Actions'], volumes.map((v) => {
      const snapName = h('input', { size: 10, placeholder: 'name', 'aria-label': `Snapshot name for ${v.name}` });
      const cloneName = h('input', { size: 10, placeholder: 'new name', 'aria-label': `Name of a clone of ${v.name}` });
      return h('tr', {},
        h('td', { class: 'mono' }, v.name), h('td', { class: 'num' }, bytes(v.used_bytes)), h('td', { class: 'num' }, bytes(v.quota.bytes)),
        h('td', { title: v.quota.how }, v.quota.enforced ? 'yes' : 'no'),
        h('td', {}, v.in_use_by.length ? v.in_use_by.map((id) => h('a', { href: `#/sandboxes/${id}`, class: 'mono' }, id, ' ')) : '—'),
        h('td', {}, v.snapshots.length ? v.snapshots.map((s) => h('span', { class: 'mono' }, s.name,
          h('button', { class: 'danger', 'aria-label': `Delete snapshot ${s.name} of ${v.name}`, onclick: (e) => act(e.target, async () => {
            if (!confirm(`Delete snapshot ${s.name} of ${v.name}?`)) return;
            await api('DELETE', `/v1/volumes/${v.id}/snapshots/${enc(s.name)}`);
            await load();
          }) }, '×'), ' ')) : '—'),
        h('td', {}, ago(v.created_at_ms)),
        h('td', { class: 'actions' },
          snapName, h('button', { 'aria-label': `Snapshot ${v.name}`, onclick: (e) => act(e.target, async () => {
            await api('POST', `/v1/volumes/${v.id}/snapshots`, { name: snapName.value.trim() });
            notify(`Snapshot ${snapName.value.trim()} of ${v.name} taken`);
            await load();
          }) }, 'Snapshot'),
          cloneName, h('button', { 'aria-label': `Clone ${v.name}`, onclick: (e) => act(e.target, async () => {
            await api('POST', `/v1/volumes/${v.id}/clone`, { name: cloneName.value.trim() });
            notify(`Cloned ${v.name} into ${cloneName.value.trim()}`);
            await load();
          }) }, 'Clone'),
          h('button', { class: 'danger', 'aria-label': `Delete volume ${v.name}`, disabled: v.in_use_by.length > 0, onclick: (e) => act(e.target, async () => {
            if (!confirm(`Delete volume ${v.name} and its files?`)) return;
            await api('DELETE', `/v1/volumes/${v.id}`);
            await load();
          }) }, 'Delete')));
    }), 'Volumes') : h('p', { class: 'muted' }, 'No volumes yet.'));
  };
  const name = h('input', { id: 'vol-name', name: 'name', required: true, placeholder: 'pip-cache', size: 16 });
  const size = h('input', { id: 'vol-size', name: 'size', placeholder: '1g', size: 8 });
  const form = h('form', { class: 'actions panel', 'aria-label': 'New volume' },
    h('label', { for: 'vol-name' }, 'Name'), name, h('label', { for: 'vol-size' }, 'Size'), size,
    h('button', { class: 'primary', type: 'submit' }, 'Create volume'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const body = { name: name.value.trim() };
      if (size.value.trim()) body.size = size.value.trim();
      const v = await api('POST', '/v1/volumes', body);
      notify(`Created volume ${v.name}${v.quota.enforced ? '' : ` (quota ${v.quota.how})`}`);
      name.value = '';
      await load();
    });
  });
  root.append(heading('Volumes'), h('p', { class: 'muted' }, 'Named filesystems that outlive sandboxes: mount one at create (More settings → Volumes).'), form, list);
  await load();
}

// ---- templates

async function templatesPage(root) {
  const list = h('div');
  const load = async () => {
    const { templates, store } = await api('GET', '/v1/templates');
    list.replaceChildren(
      h('p', { class: 'muted' }, `Layer store: ${store.layers} layers, ${bytes(store.bytes)}.`),
      table(['Name', 'Digest', 'Layers', 'Size', 'Created', 'Source', 'Actions'], templates.map((t) => h('tr', {},
        h('td', { class: 'mono' }, t.name), h('td', { class: 'mono' }, t.builtin ? 'the host\'s userland, read-only' : (t.digest || '').slice(0, 19)),
        h('td', { class: 'num' }, t.builtin ? '—' : (t.layers || []).length), h('td', { class: 'num' }, t.builtin ? '—' : bytes(t.size)),
        h('td', {}, ago(t.created_ms)), h('td', { class: 'mono' }, t.source ? (typeof t.source === 'string' ? t.source : JSON.stringify(t.source)) : ''),
        h('td', {}, !t.builtin && admin() ? h('button', { class: 'danger', 'aria-label': `Delete template ${t.name}`, onclick: (e) => act(e.target, async () => {
          if (!confirm(`Delete template ${t.name}?`)) return;
          await api('DELETE', `/v1/templates/${t.name.split('/').map(enc).join('/')}`);
          await load();
        }) }, 'Delete') : ''))), 'Templates'));
  };
  root.append(heading('Templates'), list);
  if (admin()) root.append(pullForm(load), buildForm(load));
  await load();
}

function pullForm(reload) {
  const ref = h('input', { name: 'reference', required: true, placeholder: 'registry.example:5000/team/python:3.12', size: 40 });
  const name = h('input', { name: 'name', placeholder: 'default: the reference' });
  const insecure = h('input', { type: 'checkbox', name: 'insecure' });
  const progress = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel grid', 'aria-label': 'Pull a template' },
    h('h2', { class: 'full' }, 'Pull from a registry'),
    field('Image reference', ref), field('Template name', name), field('Plain HTTP', insecure, 'for a registry that is not on loopback and has no TLS'),
    h('div', { class: 'full' }, h('button', { class: 'primary', type: 'submit' }, 'Pull')), h('div', { class: 'full' }, progress));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      progress.replaceChildren(h('p', {}, `Pulling ${ref.value}…`));
      const bars = new Map();
      const body = { reference: ref.value.trim(), insecure: insecure.checked };
      if (name.value.trim()) body.name = name.value.trim();
      const r = await api('POST', '/v1/templates/pull', body, { raw: true, headers: { Accept: 'application/x-ndjson' } });
      for await (const ev of jsonLines(r)) {
        if (ev.type === 'progress') {
          let bar = bars.get(ev.layer);
          if (!bar) {
            bar = { meter: h('progress', { max: ev.total || 1, value: 0, 'aria-label': `layer ${ev.layer}` }), text: h('span', { class: 'mono' }) };
            bars.set(ev.layer, bar);
            progress.append(h('div', { class: 'layer' }, h('span', { class: 'mono' }, ev.layer), bar.meter, bar.text));
          }
          bar.meter.max = ev.total || 1;
          bar.meter.value = ev.done;
          bar.text.textContent = `${bytes(ev.done)} / ${bytes(ev.total)}`;
        } else if (ev.type === 'done') {
          progress.append(h('p', {}, `Pulled ${ev.template.name} (${bytes(ev.template.size)}).`));
          notify(`Pulled ${ev.template.name}`);
          await reload();
        } else if (ev.type === 'error') {
          progress.append(h('p', { class: 'error', role: 'alert' }, `${ev.code}: ${ev.message}`));
        }
      }
    });
  });
  return form;
}

/** A ustar archive of (name, bytes) pairs: the build context. */
export function tarOf(files) {
  const te = new TextEncoder();
  const parts = [];
  for (const [name, data] of files) {
    const nameBytes = te.encode(name);
    if (nameBytes.length > 100) throw new Error(`${name}: names in a build context here are at most 100 bytes`);
    const head = new Uint8Array(512);
    const put = (off, s) => head.set(te.encode(s), off);
    head.set(nameBytes, 0);
    put(100, '0000644\0');
    put(108, '0000000\0');
    put(116, '0000000\0');
    put(124, `${data.length.toString(8).padStart(11, '0')}\0`);
    put(136, `${Math.floor(Date.now() / 1000).toString(8).padStart(11, '0')}\0`);
    put(148, '        ');
    put(156, '0');
    put(257, 'ustar\0');
    put(263, '00');
    const sum = head.reduce((a, b) => a + b, 0);
    put(148, `${sum.toString(8).padStart(6, '0')}\0 `);
    parts.push(head, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  return new Blob(parts);
}

function buildForm(reload) {
  const name = h('input', { name: 'name', required: true, placeholder: 'e.g. team/python:1' });
  const kind = h('select', { name: 'kind' }, h('option', { value: 'Dockerfile' }, 'Dockerfile'), h('option', { value: 'aibox.toml' }, 'aibox.toml'));
  const recipe = h('textarea', { name: 'recipe', rows: 8, value: 'FROM host\nRUN mkdir -p /opt/app && echo ready > /opt/app/status\nWORKDIR /opt/app' });
  const files = h('input', { type: 'file', multiple: true, name: 'context' });
  const allow = h('input', { name: 'allow', placeholder: 'pypi.org, files.pythonhosted.org' });
  const nocache = h('input', { type: 'checkbox', name: 'no_cache' });
  const log = h('pre', { 'aria-label': 'build log', hidden: true });
  const result = h('div', { role: 'status' });
  const form = h('form', { class: 'panel grid', 'aria-label': 'Build a template' },
    h('h2', { class: 'full' }, 'Build'), field('Template name', name), field('Recipe kind', kind),
    h('label', { for: 'recipe', class: 'full' }, 'Recipe'), h('div', { class: 'full' }, Object.assign(recipe, { id: 'recipe' })),
    field('Context files', files, 'put next to the recipe, for COPY'), field('Network allowlist', allow, 'comma-separated rules for RUN steps (none by default)'),
    field('No cache', nocache), h('div', { class: 'full' }, h('button', { class: 'primary', type: 'submit' }, 'Build')),
    h('div', { class: 'full' }, result, log));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const te = new TextEncoder();
      const entries = [[kind.value, te.encode(recipe.value)]];
      for (const f of files.files) entries.push([f.name, new Uint8Array(await f.arrayBuffer())]);
      const params = new URLSearchParams({ name: name.value.trim(), file: kind.value });
      if (allow.value.trim()) params.set('allow', allow.value.trim());
      if (nocache.checked) params.set('no_cache', 'true');
      log.hidden = false;
      log.textContent = '';
      result.textContent = 'Building…';
      const r = await api('POST', `/v1/templates/build?${params}`, tarOf(entries), { raw: true, headers: { 'Content-Type': 'application/x-tar' } });
      const say = (t) => { log.textContent += t; log.scrollTop = log.scrollHeight; };
      for await (const ev of jsonLines(r)) {
        if (ev.type === 'step') say(`[${ev.step}/${ev.of}] ${ev.instruction}${ev.cached ? ' (cached)' : ''}\n`);
        else if (ev.type === 'output') say(ev.data);
        else if (ev.type === 'layer') say(`-> layer ${ev.digest.slice(0, 19)} ${bytes(ev.bytes)}, ${ev.entries} entries, ${ev.seconds.toFixed(2)}s\n`);
        else if (ev.type === 'note') say(`${ev.message}\n`);
        else if (ev.type === 'done') { result.textContent = `Built ${ev.template.name}.`; notify(`Built ${ev.template.name}`); await reload(); }
        else if (ev.type === 'error') { result.replaceChildren(h('span', { class: 'error' }, `${ev.code}: ${ev.message}`)); }
      }
    });
  });
  return form;
}

// ---- audit, keys, settings

function auditTable(entries) {
  return table(['Seq', 'Time', 'Actor', 'Action', 'Sandbox', 'Detail'], entries.map((e) => h('tr', {},
    h('td', { class: 'num' }, e.seq), h('td', {}, when(e.at_ms)), h('td', { class: 'mono' }, e.actor), h('td', { class: 'mono' }, e.action),
    h('td', { class: 'mono' }, e.sandbox ? h('a', { href: `#/sandboxes/${e.sandbox}` }, e.sandbox) : ''),
    h('td', { class: 'mono' }, JSON.stringify(e.detail)))), 'Audit log');
}

async function auditPage(root, _m, query) {
  const f = {};
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log' },
    ['actor', 'action', 'sandbox'].map((k) => h('label', {}, k === 'action' ? 'Action (prefix)' : k[0].toUpperCase() + k.slice(1), f[k] = h('input', { name: k, value: query.get(k) || '', size: 14 }))),
    h('label', {}, 'Since', f.since = h('input', { type: 'datetime-local', name: 'since' })),
    h('label', {}, 'Until', f.until = h('input', { type: 'datetime-local', name: 'until' })),
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
  const out = h('div');
  const verify = h('span', { role: 'status' });
  let entries = [];
  const search = async (older = false) => {
    const p = new URLSearchParams({ order: 'desc', limit: '100' });
    for (const k of ['actor', 'action', 'sandbox']) if (f[k].value.trim()) p.set(k, f[k].value.trim());
    if (f.since.value) p.set('since_ms', String(new Date(f.since.value).getTime()));
    if (f.until.value) p.set('until_ms', String(new Date(f.until.value).getTime()));
    if (older && entries.length) p.set('before', String(entries[entries.length - 1].seq));
    const page = (await api('GET', `/v1/audit?${p}`)).entries;
    entries = older ? entries.concat(page) : page;
    out.replaceChildren(h('p', { class: 'muted' }, `${entries.length} entries, newest first`), auditTable(entries),
      page.length === 100 ? h('p', {}, h('button', { onclick: (e) => act(e.target, () => search(true)) }, 'Older entries')) : null);
  };
  filters.addEventListener('submit', (e) => { e.preventDefault(); act(filters.querySelector('button'), () => search()); });
  root.append(heading('Audit log', h('button', { onclick: (e) => act(e.target, async () => {
    const v = await api('GET', '/v1/audit/verify');
    verify.textContent = v.ok ? `Chain intact (${v.entries} entries).` : `Chain broken at entry ${v.broken_at}!`;
    verify.className = v.ok ? '' : 'error';
  }) }, 'Verify chain'), verify), filters, out);
  await search();
}

async function keysPage(root) {
  const list = h('div');
  const secret = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const { keys } = await api('GET', '/v1/keys');
    list.replaceChildren(table(['ID', 'Name', 'Scope', 'Created', 'Status', 'Quotas', 'Actions'], keys.map((k) => h('tr', {},
      h('td', { class: 'mono' }, k.id), h('td', {}, k.name), h('td', {}, k.scope), h('td', {}, when(k.created_ms)),
      h('td', {}, k.revoked_ms ? `revoked ${ago(k.revoked_ms)}` : 'live'),
      h('td', {}, [k.max_sandboxes != null ? `${k.max_sandboxes} sandboxes` : '', k.max_memory != null ? bytes(k.max_memory) : ''].filter(Boolean).join(', ') || '—'),
      h('td', {}, k.revoked_ms ? '' : h('button', { class: 'danger', 'aria-label': `Revoke key ${k.name}`, onclick: (e) => act(e.target, async () => {
        if (!confirm(`Revoke key ${k.name} (${k.id})? Clients using it get 401 from now on.`)) return;
        await api('DELETE', `/v1/keys/${enc(k.id)}`);
        notify(`Revoked ${k.name}`);
        await load();
      }) }, 'Revoke')))), 'API keys'));
  };
  const name = h('input', { name: 'name', required: true });
  const scope = h('select', { name: 'scope' }, h('option', { value: 'user' }, 'user: its own sandboxes'), h('option', { value: 'admin' }, 'admin: everything'));
  const maxSb = h('input', { name: 'max_sandboxes', type: 'number', min: 0 });
  const maxMem = h('input', { name: 'max_memory', placeholder: 'e.g. 8g' });
  const form = h('form', { class: 'panel grid', 'aria-label': 'New API key' }, h('h2', { class: 'full' }, 'New key'),
    field('Name', name), field('Scope', scope), field('Most sandboxes', maxSb), field('Most memory', maxMem),
    h('div', { class: 'full' }, h('button', { class: 'primary', type: 'submit' }, 'Create key')), h('div', { class: 'full' }, secret));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(form.querySelector('button'), async () => {
      const body = { name: name.value.trim(), scope: scope.value };
      if (maxSb.value) body.max_sandboxes = Number(maxSb.value);
      if (maxMem.value.trim()) body.max_memory = maxMem.value.trim();
      const k = await api('POST', '/v1/keys', body);
      const code = h('code', { id: 'new-secret' }, k.key);
      secret.replaceChildren(h('div', { class: 'secret' }, h('p', {}, h('strong', {}, `The secret of ${k.name}: shown once, copy it now.`)), code, ' ',
        h('button', { type: 'button', onclick: () => navigator.clipboard.writeText(k.key).then(() => notify('Copied'), () => notify('Copy it by hand', true)) }, 'Copy')));
      name.value = '';
      await load();
    });
  });
  root.append(heading('API keys'), list, form);
  await load();
}

async function settingsPage(root) {
  const s = session.settings;
  const show = (v) => (v === null || v === undefined ? '—' : Array.isArray(v) ? (v.join(', ') || '—') : String(v));
  const rows = [
    ['Version', s.version], ['Listening on', s.listen], ['Most sandboxes', s.max_sandboxes], ['Memory budget', bytes(s.memory_budget)],
    ['Default TTL', duration(s.default_ttl_seconds * 1000)], ['Longest TTL', duration(s.max_ttl_seconds * 1000)],
    ['Rate limit per key', `${s.rate_limit}/s`], ['Largest upload', bytes(s.max_body)], ['Most snapshots', s.max_snapshots],
    ['Published ports at', `PORT-ID.${s.port_domain}`],
  ];
  if (admin()) rows.push(['Data directory', s.data_dir], ['Unix socket', s.socket], ['Mountable host paths', s.allowed_mounts], ['Egress hosts', s.egress_hosts]);
  root.append(heading('Settings'),
    h('div', { class: 'panel' }, h('h2', {}, 'This session'), h('dl', { class: 'kv' },
      [['Key', `${session.key.name} (${session.key.id})`], ['Scope', session.key.scope],
        ['Quota', [session.key.max_sandboxes != null ? `${session.key.max_sandboxes} sandboxes` : '', session.key.max_memory != null ? bytes(session.key.max_memory) : ''].filter(Boolean).join(', ') || 'the server\'s limits']]
        .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('p', {}, h('button', { onclick: (e) => act(e.target, async () => {
      await api('POST', '/ui/logout');
      session = null;
      location.hash = '#/login';
    }) }, 'Log out'))),
    h('div', { class: 'panel' }, h('h2', {}, 'Server'), h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, show(v))])),
      h('p', { class: 'muted' }, 'Settings come from the config file, AIBOX_* variables and flags of aibox serve (docs/api.md).')));
}

// ---- the router

const routes = [
  [/^\/login$/, loginPage],
  [/^\/$/, overviewPage],
  [/^\/sandboxes$/, sandboxesPage],
  [/^\/sandboxes\/new$/, createPage],
  [/^\/sandboxes\/([A-Za-z0-9_.-]+)(?:\/([a-z]+))?$/, sandboxPage],
  [/^\/volumes$/, volumesPage],
  [/^\/workspaces$/, workspacesPage],
  [/^\/templates$/, templatesPage],
  [/^\/audit$/, auditPage],
  [/^\/keys$/, keysPage],
  [/^\/settings$/, settingsPage],
];

let generation = 0;
let lastKeyNav = false; // the route changed by arrow keys on the tabs
document.addEventListener('keydown', (e) => { if (e.target.getAttribute && e.target.getAttribute('role') === 'tab') lastKeyNav = true; });

async function route() {
  for (const stop of leaving.splice(0)) { try { stop(); } catch { /* already stopped */ } }
  const mine = ++generation;
  const raw = location.hash.slice(1) || '/';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  if (!session && path !== '/login') {
    try {
      session = await api('GET', '/ui/session', undefined, { quiet: true });
    } catch {
      location.hash = '#/login';
      return;
    }
  }
  if (mine !== generation) return;
  chrome(path);
  // Each page draws into a view of its own: what a page still loading
  // appends after the route has changed lands in its detached view, never
  // under the next page.
  const view = h('div');
  main.replaceChildren(view);
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    try {
      await page(view, m.slice(1), query);
    } catch (e) {
      if (mine === generation && !(e instanceof ApiError && e.status === 401)) {
        view.append(h('p', { class: 'error', role: 'alert' }, e.message));
      }
    }
    if (mine === generation) {
      const h1 = main.querySelector('h1');
      const tab = main.querySelector('[role=tab][aria-selected=true]');
      if (tab && lastKeyNav) tab.focus({ preventScroll: true });
      else if (h1 && !main.contains(document.activeElement)) h1.focus({ preventScroll: true });
      lastKeyNav = false;
      main.dataset.ready = path;
    }
    return;
  }
  view.append(heading('Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview')));
}

window.addEventListener('hashchange', route);
route();
