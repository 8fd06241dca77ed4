// The dashboard end to end: a real `aibox serve`, Debian's Chromium driven
// by playwright-core. Screenshots go to ui/artifacts/ (AIBOX_UI_ARTIFACTS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, chmodSync, existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const bin = process.env.AIBOX_BIN ?? join(root, 'target/x86_64-unknown-linux-gnu/debug/aibox');
const chromiumPath = process.env.AIBOX_CHROMIUM ?? '/usr/bin/chromium';
const artifacts = process.env.AIBOX_UI_ARTIFACTS ?? join(root, 'ui', 'artifacts');
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const skip = !existsSync(chromiumPath) ? `no Chromium at ${chromiumPath} (scripts/setup.sh installs Debian's chromium as root)` : false;
if (skip) console.log(`SKIP dashboard end-to-end tests: ${skip}`);

let server, data, base, adminKey, browser, page;

async function json(method, path, body, key = adminKey) {
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function shot(name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** axe-core on the current page: no serious or critical violations. */
async function accessible(what) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: accessibility violations ${JSON.stringify(bad, null, 1)}`);
}

/** A test that leaves a screenshot of the page when it fails. */
function check(name, fn) {
  test(name, { skip }, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      if (page) await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`).catch(() => {});
      throw e;
    }
  });
}

async function go(hash, text) {
  await page.goto(`${base}/${hash}`);
  if (text) await page.getByRole('heading', { level: 1, name: text }).waitFor();
}

before(async () => {
  if (skip) return;
  assert.ok(existsSync(bin), `no aibox binary at ${bin}`);
  // Fresh artifacts: no screenshot of an earlier run's failure stays behind.
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  data = mkdtempSync(join(tmpdir(), 'aibox-ui-'));
  chmodSync(data, 0o755);
  // A directory sandboxes may mount (read-only), for the form's mounts.
  mkdirSync(join(data, 'shared'), { recursive: true });
  const env = { ...process.env, AIBOX_LOG: 'warn', AIBOX_ALLOWED_MOUNTS: join(data, 'shared') };
  server = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--socket', 'none', '--data-dir', data, '--max-sandboxes', '300'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  base = await new Promise((resolve, reject) => {
    let buf = '';
    server.stderr.on('data', (c) => {
      buf += c;
      const m = buf.match(/listening on (http:\/\/[0-9.]+:[0-9]+)\r?\n/);
      if (m) resolve(m[1]);
    });
    server.on('exit', () => reject(new Error(`the server exited: ${buf}`)));
  });
  adminKey = readFileSync(join(data, 'admin.key'), 'utf8').trim();
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: chromiumPath,
    // Playwright starts each launch on a new empty profile (its own --user-data-dir).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    headless: true,
  });
  // bypassCSP lets the test inject axe-core; the app itself runs under its CSP.
  const ctx = await browser.newContext({ acceptDownloads: true, bypassCSP: true, viewport: { width: 1280, height: 900 } });
  page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  if (skip) return;
  if (browser) await browser.close();
  const { body } = await json('GET', '/v1/sandboxes?limit=1000');
  for (const s of body.sandboxes) await json('DELETE', `/v1/sandboxes/${s.id}`);
  server.kill();
  await new Promise((r) => server.on('exit', r));
  rmSync(data, { recursive: true, force: true });
});

check('the dashboard is in the binary and sends its security headers', async () => {
  const r = await fetch(`${base}/`);
  assert.equal(r.status, 200, `GET ${base}/: ${r.status} ${JSON.stringify([...r.headers])} ${await r.clone().text()}`);
  assert.match(r.headers.get('content-security-policy'), /script-src 'self'/);
  assert.match(r.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.match(await r.text(), /<main id="main"/);
  for (const f of ['app.js', 'term.js', 'app.css', 'vendor/xterm.mjs', 'vendor/xterm.css', 'vendor/addon-fit.mjs']) {
    const a = await fetch(`${base}/ui/assets/${f}`);
    assert.equal(a.status, 200, f);
    const again = await fetch(`${base}/ui/assets/${f}`, { headers: { 'If-None-Match': a.headers.get('etag') } });
    assert.equal(again.status, 304, f);
  }
  assert.equal((await fetch(`${base}/ui/assets/../../Cargo.toml`)).status, 404);
  assert.equal((await fetch(`${base}/ui/assets/nope.js`)).status, 404);
});

check('sessions: httpOnly cookie, CSRF token, origin check, logout, revocation', async () => {
  const bad = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key: 'aibox_nope' }) });
  assert.equal(bad.status, 401);
  assert.equal((await bad.json()).error.code, 'unauthenticated');
  const form = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `key=${adminKey}` });
  assert.equal(form.status, 400, 'a cross-site HTML form cannot log in');
  const foreign = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://evil.example' }, body: JSON.stringify({ key: adminKey }) });
  assert.equal(foreign.status, 403);

  // A user key, so revoking it is allowed.
  const user = (await json('POST', '/v1/keys', { name: 'ui-user', scope: 'user' })).body;
  const login = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key: user.key }) });
  assert.equal(login.status, 200);
  const setCookie = login.headers.get('set-cookie');
  assert.match(setCookie, /^aibox_session=aibox_[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict/);
  const cookie = setCookie.split(';')[0];
  const { csrf, key } = await login.json();
  assert.equal(key.scope, 'user');
  assert.ok(!JSON.stringify(await (await fetch(`${base}/ui/session`, { headers: { Cookie: cookie } })).json()).includes(user.key), 'the session never shows the key');

  const get = await fetch(`${base}/v1/sandboxes`, { headers: { Cookie: cookie } });
  assert.equal(get.status, 200);
  const noCsrf = await fetch(`${base}/v1/sandboxes`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(noCsrf.status, 403);
  assert.match((await noCsrf.json()).error.message, /CSRF/);
  const wrongCsrf = await fetch(`${base}/v1/sandboxes`, { method: 'POST', headers: { Cookie: cookie, 'X-CSRF-Token': csrf.slice(0, -1) + (csrf.endsWith('0') ? '1' : '0'), 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(wrongCsrf.status, 403);
  const otherOrigin = await fetch(`${base}/v1/sandboxes`, { headers: { Cookie: cookie, Origin: 'http://8000-abc.localhost:1' } });
  assert.equal(otherOrigin.status, 403);
  const made = await fetch(`${base}/v1/sandboxes`, { method: 'POST', headers: { Cookie: cookie, 'X-CSRF-Token': csrf, 'Content-Type': 'application/json', Origin: base }, body: '{"ttl_seconds": 60}' });
  assert.equal(made.status, 201);
  const sb = await made.json();
  assert.equal((await json('DELETE', `/v1/sandboxes/${sb.id}`)).status, 204);
  assert.equal((await fetch(`${base}/v1/keys`, { headers: { Cookie: cookie } })).status, 403, 'a user session is not admin');
  assert.equal((await fetch(`${base}/v1/sandboxes`, { headers: { Cookie: 'aibox_session=aibox_forged' } })).status, 401);

  // Revoking the key ends its sessions at once.
  assert.equal((await json('DELETE', `/v1/keys/${user.id}`)).status, 204);
  assert.equal((await fetch(`${base}/v1/sandboxes`, { headers: { Cookie: cookie } })).status, 401);

  // Logout ends an admin session.
  const l2 = await fetch(`${base}/ui/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key: adminKey }) });
  const c2 = l2.headers.get('set-cookie').split(';')[0];
  const csrf2 = (await l2.json()).csrf;
  assert.equal((await fetch(`${base}/ui/logout`, { method: 'POST', headers: { Cookie: c2 } })).status, 403, 'logout needs the CSRF token');
  const out = await fetch(`${base}/ui/logout`, { method: 'POST', headers: { Cookie: c2, 'X-CSRF-Token': csrf2 } });
  assert.equal(out.status, 204);
  assert.match(out.headers.get('set-cookie'), /Max-Age=0/);
  assert.equal((await fetch(`${base}/ui/session`, { headers: { Cookie: c2 } })).status, 401);
  const audit = (await json('GET', '/v1/audit?action=ui.&order=desc')).body.entries.map((e) => e.action);
  assert.ok(audit.includes('ui.login') && audit.includes('ui.logout'), JSON.stringify(audit));
});

check('log in with the keyboard, then every page renders and passes axe', async () => {
  await page.goto(`${base}/`);
  await page.getByRole('heading', { name: 'Log in to aibox' }).waitFor();
  await accessible('login');
  await shot('01-login');
  await page.keyboard.type('aibox_wrong');
  await page.keyboard.press('Enter');
  await page.getByRole('alert').filter({ hasText: 'unknown or revoked' }).waitFor();
  await page.getByLabel('API key').fill(adminKey);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await page.getByText('Active sandboxes').waitFor();
  await page.getByText('Recent events').waitFor();
  await page.locator('table').getByText('ui.login').first().waitFor();
  await accessible('overview');
  await shot('02-overview');
  // Keyboard: tab to the Sandboxes link and follow it.
  await page.locator('#nav a', { hasText: 'Sandboxes' }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Sandboxes' }).waitFor();
  await accessible('sandboxes');
  for (const [hash, title] of [['#/workspaces', 'Workspaces'], ['#/volumes', 'Volumes'], ['#/templates', 'Templates'], ['#/audit', 'Audit log'], ['#/keys', 'API keys'], ['#/settings', 'Settings'], ['#/sandboxes/new', 'New sandbox']]) {
    await go(hash, title);
    await page.waitForLoadState('networkidle');
    await accessible(title);
  }
});

let sandboxId;

check('create a sandbox from the form and see its isolation and usage', async () => {
  await go('#/sandboxes/new', 'New sandbox');
  await page.getByLabel('Memory').fill('256m');
  await page.getByLabel('Lifetime (TTL)').fill('30m');
  await page.getByLabel('Labels').fill('team=ui\nsuite=e2e');
  await page.getByLabel('Network').selectOption('allowlist');
  await page.getByLabel('Allowed destinations').fill('example.com:443');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.waitForURL(/#\/sandboxes\/(?!new$)[a-z0-9]+$/);
  sandboxId = page.url().split('/').pop();
  await page.getByRole('heading', { level: 1, name: `Sandbox ${sandboxId}` }).waitFor();
  await page.getByText('Isolation').waitFor();
  await page.getByText('seccomp', { exact: true }).waitFor();
  await page.getByText(/CPU \d+\.\d%/).waitFor({ timeout: 15000 });
  const sb = (await json('GET', `/v1/sandboxes/${sandboxId}`)).body;
  assert.equal(sb.spec.memory, 256 * 1024 * 1024);
  assert.deepEqual(sb.labels, { team: 'ui', suite: 'e2e' });
  assert.equal(sb.spec.network, 'allowlist');
  // The egress policy can change while it runs: new connections follow it.
  const net = page.getByRole('form', { name: 'Network policy' });
  await net.getByLabel('Rules').fill('example.com:443\npypi.org\ndeny 10.0.0.0/8');
  await net.getByRole('button', { name: 'Apply network policy' }).click();
  await net.getByText('Applied: new connections follow it.').waitFor();
  assert.deepEqual((await json('GET', `/v1/sandboxes/${sandboxId}`)).body.spec.network_rules, ['allow example.com:443', 'allow pypi.org', 'deny 10.0.0.0/8']);
  await net.getByLabel('Rules').fill('not a rule !!');
  await net.getByRole('button', { name: 'Apply network policy' }).click();
  await net.locator('.error').filter({ hasText: /rule/ }).waitFor();
  assert.equal((await json('GET', `/v1/sandboxes/${sandboxId}`)).body.spec.network_rules.length, 3, 'a bad rule changes nothing');
  await accessible('sandbox overview');
  await shot('03-sandbox-overview');
  // Bad input gets the server's clear error, and creates nothing.
  await go('#/sandboxes/new', 'New sandbox');
  await page.getByLabel('Memory').fill('lots');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.getByRole('alert').filter({ hasText: /memory/i }).waitFor();
  await page.getByLabel('Memory').fill('');
  await page.getByLabel('Lifetime (TTL)').fill('forever');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.getByRole('alert').filter({ hasText: 'forever is not a duration' }).waitFor();
  assert.equal((await json('GET', '/v1/sandboxes')).body.sandboxes.length, 1);
});

check('the create form has a control for every field of the create request, and each reaches the server', async () => {
  const { components: { schemas } } = (await json('GET', '/v1/openapi.json')).body;
  await go('#/sandboxes/new', 'New sandbox');
  await page.getByText('More settings').click();
  const missing = [];
  for (const f of Object.keys(schemas.CreateSandbox.properties)) {
    if (await page.locator(`[data-field="${f}"]`).count() === 0) missing.push(f);
  }
  assert.deepEqual(missing, [], 'create fields without a control in the form');
  // Every field but the snapshot at once (a restore keeps its source's settings).
  await page.getByLabel('Memory').fill('200m');
  await page.getByLabel('CPUs').fill('0.5');
  await page.getByLabel('Disk').fill('300m');
  await page.getByLabel('Lifetime (TTL)').fill('1h');
  await page.getByLabel('Idle timeout').fill('20m');
  await page.getByLabel('Network').selectOption('allowlist');
  await page.getByLabel('Allowed destinations').fill('parity.example');
  await page.getByLabel('Enforcement').selectOption('proxy');
  await page.getByLabel('Public ports').check();
  await page.getByLabel('Labels').fill('parity=form');
  await page.getByLabel('Environment').fill('PARITY=yes');
  await page.getByLabel('Processes').fill('321');
  await page.getByLabel('Working directory').fill('/tmp');
  await page.getByLabel('User', { exact: true }).fill('root');
  await page.getByLabel('Hostname').fill('parity');
  await page.getByLabel('Minimum isolation').selectOption('basic');
  await page.getByLabel('Backend').selectOption('namespaces');
  await page.getByLabel('Host mounts').fill(`${join(data, 'shared')}:/parity:ro`);
  assert.equal((await json('POST', '/v1/volumes', { name: 'form-vol', size: '16m' })).status, 201);
  await page.getByLabel('Volumes').fill('form-vol:/pvol:ro');
  assert.equal((await json('POST', '/v1/workspaces', { name: 'form-ws', size: '16m' })).status, 201);
  await page.getByLabel('Workspace', { exact: true }).fill('form-ws');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.waitForURL(/#\/sandboxes\/(?!new$)[a-z0-9]+$/);
  const id = page.url().split('/').pop();
  const sb = (await json('GET', `/v1/sandboxes/${id}`)).body;
  assert.equal(sb.spec.template, 'host');
  assert.equal(sb.spec.memory, 200 * 1024 * 1024);
  assert.equal(sb.spec.cpus, 0.5);
  assert.equal(sb.spec.disk, 300 * 1024 * 1024);
  assert.ok(sb.remaining_ms > 3_500_000 && sb.remaining_ms <= 3_600_000, `remaining ${sb.remaining_ms}`);
  assert.equal(sb.idle_timeout_seconds, 1200);
  assert.equal(sb.spec.network, 'allowlist');
  assert.deepEqual(sb.spec.network_rules, ['allow parity.example']);
  assert.equal(sb.spec.network_enforcement, 'proxy');
  assert.equal(sb.public_ports, true);
  assert.equal(sb.labels.parity, 'form');
  assert.ok(sb.spec.env.some(([k, v]) => k === 'PARITY' && v === 'yes'));
  assert.equal(sb.spec.pids, 321);
  assert.equal(sb.spec.workdir, '/tmp');
  assert.equal(sb.spec.user, 'root');
  assert.equal(sb.spec.hostname, 'parity');
  assert.equal(sb.spec.require_isolation, 'basic');
  assert.equal(sb.spec.backend, 'namespaces');
  assert.equal(sb.spec.mounts[0].guest, '/parity');
  assert.deepEqual(sb.spec.volumes.map((v) => [v.name, v.path, v.read_only]), [['form-vol', '/pvol', true], ['workspace.form-ws', '/workspace', false]]);
  assert.ok(sb.spec.workspace);
  assert.equal((await json('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  assert.equal((await json('DELETE', '/v1/volumes/form-vol')).status, 204);
  assert.equal((await json('DELETE', '/v1/workspaces/form-ws')).status, 204);
  // The snapshot field reaches the server too: an unknown one is refused by it.
  await go('#/sandboxes/new', 'New sandbox');
  await page.getByText('More settings').click();
  await page.getByLabel('From snapshot').fill('0123456789ab');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.getByRole('alert').filter({ hasText: 'no snapshot with id' }).waitFor();
});

check('volumes: create, snapshot, clone and delete from the Volumes page', async () => {
  await go('#/volumes', 'Volumes');
  await page.getByLabel('Name', { exact: true }).fill('ui-vol');
  await page.getByLabel('Size', { exact: true }).fill('32m');
  await page.getByRole('button', { name: 'Create volume' }).click();
  await page.locator('table').getByText('ui-vol', { exact: true }).waitFor();
  await accessible('volumes with one');
  await page.getByLabel('Snapshot name for ui-vol').fill('first');
  await page.getByRole('button', { name: 'Snapshot ui-vol' }).click();
  await page.getByRole('button', { name: 'Delete snapshot first of ui-vol' }).waitFor();
  await page.getByLabel('Name of a clone of ui-vol').fill('ui-copy');
  await page.getByRole('button', { name: 'Clone ui-vol' }).click();
  await page.locator('table').getByText('ui-copy', { exact: true }).waitFor();
  await shot('volumes');
  const v = (await json('GET', '/v1/volumes/ui-copy')).body;
  assert.equal(v.cloned_from, 'ui-vol');
  assert.equal(v.quota.bytes, 32 * 1024 * 1024);
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete volume ui-copy' }).click();
  await page.locator('table').getByText('ui-copy', { exact: true }).waitFor({ state: 'detached' });
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete volume ui-vol' }).click();
  await page.getByText('No volumes yet.').waitFor();
});

check('workspaces: create one, make a sandbox in it from its page, see its history', async () => {
  await go('#/workspaces', 'Workspaces');
  await page.getByLabel('Workspace name').fill('ui-ws');
  await page.getByLabel('Files quota').fill('16m');
  await page.getByRole('button', { name: 'Create workspace' }).click();
  await page.getByRole('heading', { name: 'ui-ws' }).waitFor();
  await page.getByRole('link', { name: 'New sandbox in it' }).click();
  await page.getByRole('heading', { level: 1, name: 'New sandbox' }).waitFor();
  assert.equal(await page.getByLabel('Workspace', { exact: true }).inputValue(), 'ui-ws');
  await page.getByRole('button', { name: 'Create sandbox' }).click();
  await page.waitForURL(/#\/sandboxes\/(?!new$)[a-z0-9]+$/);
  const id = page.url().split('/').pop();
  await go('#/workspaces', 'Workspaces');
  await page.locator('table').getByText(id).first().waitFor();
  await accessible('workspaces with one');
  await shot('workspaces');
  assert.equal((await json('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  const w = (await json('GET', '/v1/workspaces/ui-ws')).body;
  assert.deepEqual(w.history.map((e) => e.event), ['created', 'sandbox_created', 'sandbox_ended']);
  await go('#/volumes', 'Volumes');
  await go('#/workspaces', 'Workspaces');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete workspace ui-ws' }).click();
  await page.getByText('No workspaces yet.').waitFor();
});

check('run a command in the web terminal', async () => {
  await go(`#/sandboxes/${sandboxId}/terminal`, `Sandbox ${sandboxId}`);
  await page.getByText(/connected: process/).waitFor();
  await page.locator('.xterm').click();
  await page.keyboard.type('echo hello-$((6*7)) && tty\n');
  await page.locator('.xterm-rows').getByText('hello-42').waitFor();
  await page.locator('.xterm-rows').getByText('/dev/pts/').first().waitFor();
  await shot('04-terminal');
  await page.keyboard.type('exit\n');
  await page.getByText('the shell exited with code 0').waitFor();
  await page.getByRole('button', { name: 'New session' }).click();
  await page.getByText(/connected: process/).waitFor();
});

check('upload, edit and download files', async () => {
  await go(`#/sandboxes/${sandboxId}/files?path=/tmp`, `Sandbox ${sandboxId}`);
  await page.getByText('Upload files').waitFor();
  await page.setInputFiles('#upload-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('first line\n') });
  await page.getByRole('link', { name: 'notes.txt', exact: true }).waitFor();
  const r = await fetch(`${base}/v1/sandboxes/${sandboxId}/files?path=/tmp/notes.txt`, { headers: { Authorization: `Bearer ${adminKey}` } });
  assert.equal(await r.text(), 'first line\n');
  await page.getByRole('link', { name: 'notes.txt', exact: true }).click();
  const editor = page.getByLabel('Edit /tmp/notes.txt');
  await editor.waitFor();
  assert.equal(await editor.inputValue(), 'first line\n');
  await editor.fill('first line\nedited in the browser\n');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: /saved/ }).waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download notes.txt' }).click()]);
  const file = join(artifacts, 'downloaded-notes.txt');
  await download.saveAs(file);
  assert.equal(readFileSync(file, 'utf8'), 'first line\nedited in the browser\n');
  // A folder, and a binary file that is offered for download only.
  await page.getByLabel('New folder').fill('made-here');
  await page.getByRole('button', { name: 'Create folder' }).click();
  await page.getByRole('link', { name: 'made-here/' }).waitFor();
  await page.setInputFiles('#upload-input', { name: 'blob.bin', mimeType: 'application/octet-stream', buffer: Buffer.from([0, 1, 2, 255]) });
  await page.getByRole('link', { name: 'blob.bin', exact: true }).click();
  await page.getByText('A binary file').waitFor();
  await accessible('files');
  await shot('05-files');
});

check('take a snapshot, restore it, and delete sandboxes', async () => {
  await go(`#/sandboxes/${sandboxId}/snapshots`, `Sandbox ${sandboxId}`);
  await page.getByLabel('Snapshot name').fill('with-notes');
  await page.getByRole('button', { name: 'Take snapshot' }).click();
  await page.getByRole('cell', { name: 'with-notes', exact: true }).waitFor();
  await shot('06-snapshots');
  await page.getByRole('button', { name: /^Restore / }).click();
  await page.waitForURL((u) => !u.hash.includes(sandboxId) && /#\/sandboxes\/[a-z0-9]+$/.test(u.hash));
  const restored = page.url().split('/').pop();
  assert.notEqual(restored, sandboxId);
  await page.getByRole('heading', { level: 1, name: `Sandbox ${restored}` }).waitFor();
  await go(`#/sandboxes/${restored}/files?path=/tmp&file=/tmp/notes.txt`, `Sandbox ${restored}`);
  assert.equal(await page.getByLabel('Edit /tmp/notes.txt').inputValue(), 'first line\nedited in the browser\n');
  await shot('07-restored');
  // Delete the restored one from its page (after a confirm).
  page.once('dialog', (d) => d.accept());
  await go(`#/sandboxes/${restored}`, `Sandbox ${restored}`);
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { level: 1, name: 'Sandboxes' }).waitFor();
  assert.equal((await json('GET', `/v1/sandboxes/${restored}`)).status, 404);
  // A dismissed confirm deletes nothing.
  page.once('dialog', (d) => d.dismiss());
  await go(`#/sandboxes/${sandboxId}`, `Sandbox ${sandboxId}`);
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.waitForTimeout(300);
  assert.equal((await json('GET', `/v1/sandboxes/${sandboxId}`)).status, 200);
});

check('pause, resume, lifetime, processes and ports', async () => {
  await go(`#/sandboxes/${sandboxId}/processes`, `Sandbox ${sandboxId}`);
  await page.getByLabel('Start in the background').fill('python3 -m http.server 8123 --bind 0.0.0.0');
  await page.getByRole('button', { name: 'Start' }).click();
  await page.getByRole('cell', { name: /http\.server 8123/ }).waitFor();
  await go(`#/sandboxes/${sandboxId}/ports`, `Sandbox ${sandboxId}`);
  await page.getByRole('cell', { name: '8123', exact: true }).waitFor({ timeout: 15000 });
  const link = await page.getByRole('link', { name: /8123-/ }).getAttribute('href');
  assert.match(link, new RegExp(`^http://8123-${sandboxId}\\.localhost:\\d+/\\?aibox_token=[0-9a-f]+$`));
  assert.ok(!(await page.getByRole('link', { name: /8123-/ }).textContent()).includes(link.split('=')[1]), 'the token is not shown');
  await shot('08-ports');
  await go(`#/sandboxes/${sandboxId}/processes`, `Sandbox ${sandboxId}`);
  // Leaving the terminal ended its shell (the socket closed), so only the
  // server runs; Stop sends it SIGTERM.
  await page.getByRole('row', { name: /terminal|bash/ }).first().waitFor();
  assert.equal(await page.getByRole('button', { name: /^Stop process/ }).count(), 1);
  await page.getByRole('row', { name: /http\.server 8123/ }).getByRole('button', { name: /^Stop process/ }).click();
  await page.getByText(/killed by signal 15/).waitFor();
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByText('(clock stopped)').waitFor();
  assert.equal((await json('GET', `/v1/sandboxes/${sandboxId}`)).body.state, 'paused');
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.getByRole('button', { name: 'Pause' }).waitFor();
  await page.getByLabel('Lifetime from now').fill('2h');
  await page.getByRole('button', { name: 'Set lifetime' }).click();
  await page.getByText(/expires in 1h 59m|expires in 2h 0m/).waitFor();
});

check('templates: build with streamed logs, a failing pull shown', async () => {
  await go('#/templates', 'Templates');
  const build = page.getByRole('form', { name: 'Build a template' });
  await build.getByLabel('Template name').fill('ui/built:1');
  await build.getByLabel('Recipe', { exact: true }).fill('FROM host\nRUN echo building-from-the-browser && mkdir -p /opt/ui && echo ok > /opt/ui/flag\n');
  await page.getByRole('button', { name: 'Build' }).click();
  await page.getByText('Built ui/built:1.').waitFor({ timeout: 60000 });
  const log = await page.getByLabel('build log').textContent();
  assert.match(log, /\[1\/2\] FROM host/);
  assert.match(log, /building-from-the-browser/);
  assert.match(log, /-> layer sha256:/);
  await page.getByRole('cell', { name: 'ui/built:1', exact: true }).waitFor();
  await shot('09-templates-build');
  // A pull from nowhere ends in the stream's error, in the page.
  await page.getByLabel('Image reference').fill('127.0.0.1:1/nothing/here:1');
  await page.getByRole('button', { name: 'Pull' }).click();
  await page.getByRole('alert').filter({ hasText: /unavailable|unreachable|connect/i }).waitFor({ timeout: 30000 });
  await shot('10-templates-pull-error');
});

/** A free loopback port. */
function freePort() {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

check('templates: pull from a registry with per-layer progress', async (t) => {
  const missing = ['/usr/bin/docker-registry', '/usr/bin/skopeo', '/bin/busybox', '/usr/bin/python3'].find((p) => !existsSync(p));
  if (missing) {
    console.log(`SKIP registry pull in the dashboard: ${missing} is missing (scripts/setup.sh installs it as root)`);
    t.skip(`${missing} is missing`);
    return;
  }
  const dir = join(data, 'registry');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  writeFileSync(join(dir, 'config.yml'), `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/storage\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const registry = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  try {
    execFileSync('python3', [join(root, 'crates/aibox-cli/tests/make_image.py'), join(dir, 'layout')]);
    const reference = `127.0.0.1:${port}/ui/busybox:1`;
    for (let i = 0; ; i++) {
      try {
        execFileSync('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(dir, 'layout')}:1`, `docker://${reference}`],
          { env: { ...process.env, REGISTRY_AUTH_FILE: join(dir, 'auth.json') }, stdio: 'pipe' });
        break;
      } catch (e) {
        if (i > 50) throw e; // the registry is still starting
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await go('#/templates', 'Templates');
    const pull = page.getByRole('form', { name: 'Pull a template' });
    await pull.getByLabel('Image reference').fill(reference);
    await pull.getByLabel('Template name').fill('ui/pulled:1');
    await pull.getByRole('button', { name: 'Pull' }).click();
    await page.getByText(/^Pulled ui\/pulled:1 \(/).waitFor({ timeout: 60000 });
    const bars = page.locator('progress[aria-label^="layer "]');
    assert.equal(await bars.count(), 2, 'one progress bar per layer');
    for (const bar of await bars.all()) {
      assert.equal(await bar.evaluate((b) => b.value === b.max && b.max > 0), true);
    }
    await page.getByRole('cell', { name: 'ui/pulled:1', exact: true }).waitFor();
    await shot('10b-templates-pull');
  } finally {
    registry.kill();
  }
});

check('audit log filters and chain check; keys; settings; logout', async () => {
  await go('#/audit', 'Audit log');
  await page.getByLabel('Action (prefix)').fill('sandbox.create');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(/^\d+ entries, newest first$/).waitFor();
  // The count line was already there for the unfiltered list: wait for
  // the filtered rows themselves.
  const filtered = (a) => a.length >= 1 && a.every((x) => x.startsWith('sandbox.create'));
  let actions = [];
  for (let i = 0; i < 100 && !filtered(actions); i++) {
    if (i) await page.waitForTimeout(100);
    actions = await page.locator('tbody tr td:nth-child(4)').allTextContents();
  }
  assert.ok(filtered(actions), JSON.stringify(actions));
  await page.getByRole('button', { name: 'Verify chain' }).click();
  await page.getByText(/Chain intact \(\d+ entries\)/).waitFor();
  await shot('11-audit');
  await go('#/keys', 'API keys');
  await page.getByLabel('Name', { exact: true }).fill('from-the-ui');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await page.locator('#new-secret').textContent();
  assert.match(secret, /^aibox_[0-9a-f]{64}$/);
  assert.equal((await json('GET', '/v1/sandboxes', undefined, secret)).status, 200);
  await shot('12-keys');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Revoke key from-the-ui' }).click();
  await page.getByRole('row', { name: /from-the-ui/ }).getByText(/revoked .* ago/).waitFor();
  assert.equal((await json('GET', '/v1/sandboxes', undefined, secret)).status, 401);
  await go('#/settings', 'Settings');
  await page.getByText('Memory budget').waitFor();
  await shot('13-settings');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('heading', { name: 'Log in to aibox' }).waitFor();
  await go('#/sandboxes');
  await page.getByRole('heading', { name: 'Log in to aibox' }).waitFor();
});

check('the sandbox list stays complete with many sandboxes', async () => {
  const n = 120;
  const made = await Promise.all(Array.from({ length: n }, (_, i) => json('POST', '/v1/sandboxes', { ttl_seconds: 600, memory: '32m', labels: { batch: i % 2 ? 'odd' : 'even' } })));
  assert.ok(made.every((r) => r.status === 201), JSON.stringify(made.find((r) => r.status !== 201)));
  // A new browser profile: log in again.
  page = await (await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${base}/#/sandboxes`);
  await page.getByLabel('API key').fill(adminKey);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await go('#/sandboxes', 'Sandboxes');
  await page.getByText(`${n + 1} sandboxes`, { exact: true }).waitFor();
  assert.equal(await page.locator('tbody tr').count(), n + 1);
  await page.getByLabel('Label').fill('batch=odd');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText(`${n / 2} sandboxes`, { exact: true }).waitFor();
  await page.getByLabel('Search').fill(made[1].body.id);
  await page.getByText(`1 sandbox of ${n / 2}`, { exact: true }).waitFor();
  await page.getByLabel('Search').fill('');
  await page.getByText(`${n / 2} sandboxes`, { exact: true }).waitFor();
  // Newest first by default; a header sorts by its column, again reverses.
  const ids = () => page.locator('tbody tr td:nth-child(2)').allTextContents();
  const odd = made.filter((_, i) => i % 2).map((r) => r.body.id);
  await page.getByRole('button', { name: 'ID', exact: true }).click();
  assert.deepEqual(await ids(), odd.slice().sort());
  assert.equal(await page.getByRole('columnheader', { name: /^ID/ }).getAttribute('aria-sort'), 'ascending');
  await page.getByRole('button', { name: /^ID/ }).click();
  assert.deepEqual(await ids(), odd.slice().sort().reverse());
  await shot('14-many-sandboxes');
  // Select every shown sandbox and delete them at once (after a confirm).
  await page.getByLabel('Select every sandbox shown').check();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: `Delete selected (${n / 2})` }).click();
  await page.getByText('0 sandboxes', { exact: true }).waitFor({ timeout: 60000 });
  const left = (await json('GET', '/v1/sandboxes?limit=1000')).body.sandboxes;
  assert.equal(left.length, n / 2 + 1);
  assert.ok(left.every((s) => !odd.includes(s.id)));
  // One by one: select a single row.
  await page.getByLabel('Label').fill('batch=even');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText(`${n / 2} sandboxes`, { exact: true }).waitFor();
  const even = made.find((_, i) => i % 2 === 0).body.id;
  await page.getByLabel(`Select ${even}`).check();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete selected (1)' }).click();
  await page.getByText(`${n / 2 - 1} sandboxes`, { exact: true }).waitFor();
  assert.equal((await json('GET', `/v1/sandboxes/${even}`)).status, 404);
});

check('sandbox tabs follow the arrow keys', async () => {
  const id = (await json('POST', '/v1/sandboxes', { ttl_seconds: 600, memory: '32m' })).body.id;
  await go(`#/sandboxes/${id}`, `Sandbox ${id}`);
  await page.getByRole('tab', { name: 'Overview' }).focus();
  await page.keyboard.press('ArrowRight');
  await page.waitForURL(new RegExp(`#/sandboxes/${id}/terminal$`));
  await page.getByText(/connected: process/).waitFor();
  await page.keyboard.press('End');
  await page.waitForURL(new RegExp(`#/sandboxes/${id}/snapshots$`));
  await page.getByRole('button', { name: 'Take snapshot' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute('role')), 'tab');
  await accessible('snapshots tab');
});

check('the pages and the terminal work under their own CSP (no violations)', async () => {
  // A context that keeps the CSP (the others bypass it to inject axe-core).
  const strict = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await strict.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const id = (await json('POST', '/v1/sandboxes', { ttl_seconds: 600, memory: '32m' })).body.id;
  await strict.goto(`${base}/#/login`);
  await strict.getByLabel('API key').fill(adminKey);
  await strict.keyboard.press('Enter');
  await strict.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
  await strict.goto(`${base}/#/sandboxes/${id}/terminal`);
  await strict.getByText(/connected: process/).waitFor();
  await strict.locator('.xterm').click();
  await strict.keyboard.type('echo csp-$((40+2))\n');
  await strict.locator('.xterm-rows').getByText('csp-42').waitFor();
  await strict.screenshot({ path: join(artifacts, '15-terminal-under-csp.png') });
  for (const hash of ['#/sandboxes', `#/sandboxes/${id}`, `#/sandboxes/${id}/files`, '#/templates', '#/audit', '#/keys', '#/settings']) {
    await strict.goto(`${base}/${hash}`);
    await strict.waitForLoadState('networkidle');
  }
  // An inline script is refused, as it would be for injected markup.
  await assert.rejects(strict.addScriptTag({ content: 'window.__inline = 1' }));
  const violations = await strict.evaluate(() => window.__violations.filter((v) => !v.startsWith('script-src-elem inline')));
  assert.deepEqual(violations, []);
  await strict.context().close();
});
