// Copies the browser libraries the dashboard uses from node_modules (pinned
// by package-lock.json) into crates/aibox-server/ui/vendor/, where the Rust
// build embeds them: building aibox never needs Node. `--check` compares
// instead of copying and fails when the committed copies differ.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'crates', 'aibox-server', 'ui', 'vendor');
const files = [
  ['@xterm/xterm/lib/xterm.mjs', 'xterm.mjs'],
  ['@xterm/xterm/css/xterm.css', 'xterm.css'],
  ['@xterm/addon-fit/lib/addon-fit.mjs', 'addon-fit.mjs'],
  ['@xterm/xterm/LICENSE', 'LICENSE-xterm.txt'],
];
const check = process.argv.includes('--check');
let stale = 0;
mkdirSync(out, { recursive: true });
for (const [from, to] of files) {
  const body = readFileSync(join(here, 'node_modules', from));
  const dest = join(out, to);
  if (check) {
    let have = null;
    try { have = readFileSync(dest); } catch { /* missing */ }
    if (!have || !have.equals(body)) {
      console.error(`vendor: ${to} differs from node_modules/${from}: run \`npm run vendor\` in ui/`);
      stale++;
    }
  } else {
    writeFileSync(dest, body);
    console.log(`vendor: ${to} (${body.length} bytes)`);
  }
}
process.exit(stale ? 1 : 0);
