// The dashboard with many sandboxes, in headless Chromium: how long the
// Sandboxes page takes from the route change to every row in the table,
// and the Overview to its cards, against the bare API call the page makes
// (fetch from Node, keep-alive). Prints JSON: {list_api, list_page,
// overview_page, rows, bytes} (milliseconds per run).
// Usage: node bench/dashboard.mjs URL KEY RUNS
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, key, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 10);
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', 'ui', 'package.json'));
const { chromium } = require('playwright-core');

const out = { list_api: [], list_page: [], overview_page: [], rows: 0, bytes: 0 };
for (let i = 0; i < runs + 1; i++) {
  const t = performance.now();
  const r = await fetch(`${url}/v1/sandboxes?limit=1000&view=summary`, { headers: { Authorization: `Bearer ${key}` } });
  const body = await r.text();
  if (i > 0) out.list_api.push(performance.now() - t);
  out.bytes = body.length;
  out.rows = JSON.parse(body).sandboxes.length;
}

const browser = await chromium.launch({
  executablePath: process.env.AIBOX_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
await page.goto(`${url}/#/login`);
await page.getByLabel('API key').fill(key);
await page.keyboard.press('Enter');
await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();

/** Route to `hash` and wait (in the page) until `done()` holds; ms. */
async function timeRoute(hash, done, arg) {
  await page.evaluate(() => { location.hash = '#/settings'; });
  await page.getByRole('heading', { level: 1, name: 'Settings' }).waitFor();
  return page.evaluate(async ([h, src, a]) => {
    const ready = new Function('a', `return (${src})(a)`);
    const t = performance.now();
    location.hash = h;
    while (!ready(a)) await new Promise((r) => requestAnimationFrame(r));
    return performance.now() - t;
  }, [hash, done.toString(), arg]);
}

for (let i = 0; i < runs + 1; i++) {
  const list = await timeRoute('#/sandboxes', (n) => document.querySelectorAll('#main tbody tr').length === n, out.rows);
  const overview = await timeRoute('#/', () => document.querySelectorAll('#main .card').length >= 4, null);
  if (i > 0) {
    out.list_page.push(list);
    out.overview_page.push(overview);
  }
}
await browser.close();
console.log(JSON.stringify(out));
