// The web terminal: xterm.js on the exec WebSocket with a PTY. The socket
// authenticates with the session cookie; the server checks its Origin.
import { Terminal } from './vendor/xterm.mjs';
import { FitAddon } from './vendor/addon-fit.mjs';

const SHELL = 'if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi';

/** Open a shell in sandbox `id` inside `panel`; returns a function that closes it. */
export function openTerminal(panel, id, { h }) {
  const status = h('span', { class: 'muted', role: 'status' }, 'connecting…');
  const again = h('button', { hidden: true }, 'New session');
  const host = h('div', { class: 'term', role: 'application', 'aria-label': 'Terminal' });
  panel.append(h('div', { class: 'actions' }, status, again), host);
  const term = new Terminal({
    cursorBlink: true, fontSize: 14, scrollback: 5000, convertEol: false,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    screenReaderMode: false,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);
  fit.fit();
  const enc = new TextEncoder();
  let ws = null;
  const connect = () => {
    again.hidden = true;
    term.reset();
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/sandboxes/${encodeURIComponent(id)}/exec/ws`;
    ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      ws.send(JSON.stringify({ cmd: ['/bin/sh', '-c', SHELL], env: { TERM: 'xterm-256color' }, pty: { rows: term.rows, cols: term.cols } }));
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') {
        const b = new Uint8Array(m.data);
        if (b.length > 1) term.write(b.subarray(1));
        return;
      }
      const ev = JSON.parse(m.data);
      if (ev.type === 'started') {
        status.textContent = `connected: process ${ev.id}, pid ${ev.pid}`;
        // Into the shell, unless the user is moving along the tabs.
        if (document.activeElement?.getAttribute('role') !== 'tab') term.focus();
      } else if (ev.type === 'exit') {
        status.textContent = ev.signal ? `the shell was killed by signal ${ev.signal}` : `the shell exited with code ${ev.exit_code}`;
        again.hidden = false;
      } else if (ev.type === 'error') {
        status.textContent = `${ev.code}: ${ev.message}`;
        again.hidden = false;
      }
    };
    ws.onclose = () => {
      if (again.hidden) status.textContent = 'disconnected';
      again.hidden = false;
    };
  };
  term.onData((d) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
  term.onResize(({ rows, cols }) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', rows, cols }));
  });
  const onWindow = () => fit.fit();
  window.addEventListener('resize', onWindow);
  again.addEventListener('click', connect);
  connect();
  return () => {
    window.removeEventListener('resize', onWindow);
    if (ws) ws.close();
    term.dispose();
  };
}
