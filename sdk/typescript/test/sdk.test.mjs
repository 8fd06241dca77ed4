// The TypeScript SDK against a live server this suite starts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, chmodSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import * as aibox from "../dist/esm/index.js";

const { Sandbox, Templates, Snapshot } = aibox;
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "..");
const bin = process.env.AIBOX_BIN ?? join(root, "target/x86_64-unknown-linux-gnu/debug/aibox");
let server, data;

before(async () => {
  assert.ok(existsSync(bin), `no aibox binary at ${bin}`);
  data = mkdtempSync(join(tmpdir(), "aibox-ts-"));
  chmodSync(data, 0o755);
  // A directory sandboxes may mount (read-only), for the mounts option.
  mkdirSync(join(data, "shared"));
  const env = { ...process.env, AIBOX_LOG: "warn", AIBOX_ALLOWED_MOUNTS: join(data, "shared") };
  delete env.AIBOX_URL;
  delete env.AIBOX_KEY;
  server = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--socket", "none", "--data-dir", data], { env, stdio: ["ignore", "ignore", "pipe"] });
  const addr = await new Promise((resolve, reject) => {
    let buf = "";
    server.stderr.on("data", (c) => {
      buf += c;
      const m = buf.match(/listening on (http:\/\/[0-9.]+:[0-9]+)\r?\n/);
      if (m) resolve(m[1]);
    });
    server.on("exit", () => reject(new Error("the server exited: " + buf)));
  });
  process.env.AIBOX_URL = addr;
  process.env.AIBOX_KEY = readFileSync(join(data, "admin.key"), "utf8").trim();
});

after(async () => {
  for (const s of await Sandbox.list()) await (await Sandbox.connect(s.id)).kill();
  server.kill();
  await new Promise((r) => server.on("exit", r));
  rmSync(data, { recursive: true, force: true });
});

test("contract and disposal", async () => {
  let id;
  {
    // What `const sb = await Sandbox.create()` does at scope exit
    // (test/using.test.ts checks the syntax itself, compiled by tsc).
    const sb = await Sandbox.create(); // killed by after()
    id = sb.id;
    assert.equal((await sb.commands.run("echo hi")).stdout, "hi\n");
    await sb[Symbol.asyncDispose]();
  }
  await assert.rejects(Sandbox.connect(id), aibox.NotFoundError);
});

test("await using (TypeScript)", async () => {
  const { awaitUsingDisposes } = await import("../dist-test/test/using.js");
  await awaitUsingDisposes();
});

test("commands", async () => {
  const sb = await Sandbox.create({ env: { GREETING: "hello" } }); // killed by after()
  const r = await sb.commands.run("echo $GREETING; echo oops >&2; exit 3");
  assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.ok], ["hello\n", "oops\n", 3, false]);
  assert.throws(() => r.check(), aibox.CommandExitError);
  assert.equal((await sb.commands.run(["printf", "%s-%s", "a b", "c"])).stdout, "a b-c");
  assert.equal((await sb.commands.run("pwd", { cwd: "/tmp" })).stdout, "/tmp\n");
  assert.equal((await sb.commands.run("cat", { stdin: "from stdin" })).stdout, "from stdin");
  assert.equal((await sb.commands.run("id -u", { user: "root" })).stdout, "0\n");
  const t = await sb.commands.run("sleep 5", { timeout: 0.5 });
  assert.ok(t.timedOut);
});

test("streaming", async () => {
  const sb = await Sandbox.create(); // killed by after()
  const out = [], err = [];
  const r = await sb.commands.run("for i in 1 2 3; do echo $i; sleep 0.1; done; echo e >&2", {
    onStdout: (s) => out.push(s), onStderr: (s) => err.push(s),
  });
  assert.equal(out.join(""), "1\n2\n3\n");
  assert.ok(out.length >= 2);
  assert.equal(err.join(""), "e\n");
  assert.equal(r.exitCode, 0);
  assert.equal((await sb.commands.run("cat", { stdin: "piped", onStdout: () => {} })).stdout, "piped");
});

test("background processes", async () => {
  const sb = await Sandbox.create(); // killed by after()
  let h = await sb.commands.run("sleep 0.3; echo done", { background: true });
  assert.ok(h instanceof aibox.CommandHandle);
  assert.equal((await h.wait()).stdout, "done\n");
  h = await sb.commands.run("sleep 60", { background: true });
  await h.kill(9);
  assert.equal((await h.wait()).signal, 9);
  h = await sb.commands.run("cat", { background: true, stdin: "via stdin" });
  assert.equal((await h.wait()).stdout, "via stdin");
  h = await sb.commands.run("sleep 0.2; exit 4", { background: true });
  assert.equal((await h.waitExit(10)).exitCode, 4);
  assert.equal((await h.info()).id, h.pid);
  assert.ok(Array.isArray(await sb.commands.list()));
});

test("files", async () => {
  const sb = await Sandbox.create(); // killed by after()
  await sb.files.write("/workspace/a/b.txt", "text ✓");
  assert.equal(await sb.files.read("/workspace/a/b.txt"), "text ✓");
  const bin = new Uint8Array(256).map((_, i) => i);
  await sb.files.write("/workspace/bin.dat", bin, { mode: 0o600 });
  assert.deepEqual(await sb.files.read("/workspace/bin.dat", { format: "bytes" }), bin);
  const st = await sb.files.stat("/workspace/bin.dat");
  assert.equal(st.size, 256);
  assert.equal(st.mode & 0o777, 0o600);
  const names = (await sb.files.list("/workspace")).map((e) => e.name);
  assert.ok(names.includes("a") && names.includes("bin.dat"));
  await sb.files.rename("/workspace/bin.dat", "/workspace/moved.dat");
  assert.ok(await sb.files.exists("/workspace/moved.dat"));
  await sb.files.remove("/workspace/a", { recursive: true });
  assert.ok(!(await sb.files.exists("/workspace/a")));
  await assert.rejects(sb.files.read("/no/such"), aibox.NotFoundError);
  const up = mkdtempSync(join(tmpdir(), "aibox-ts-up-"));
  mkdirSync(join(up, "sub", "deep"), { recursive: true });
  writeFileSync(join(up, "sub", "deep", "f.txt"), "uploaded ✓");
  writeFileSync(join(up, "x".repeat(120)), "long name");
  await sb.files.uploadDir(up, "/workspace/up");
  assert.equal((await sb.commands.run("cat /workspace/up/sub/deep/f.txt")).stdout, "uploaded ✓");
  assert.equal(await sb.files.read("/workspace/up/" + "x".repeat(120)), "long name");
  const down = join(up, "..", "aibox-ts-down-" + process.pid);
  await sb.files.downloadDir("/workspace/up", down);
  assert.equal(readFileSync(join(down, "sub", "deep", "f.txt"), "utf8"), "uploaded ✓");
  assert.equal(readFileSync(join(down, "x".repeat(120)), "utf8"), "long name");
  rmSync(up, { recursive: true, force: true });
  rmSync(down, { recursive: true, force: true });
  const tar = await sb.files.downloadTar("/workspace");
  assert.ok(tar.length >= 1024);
  await sb.files.uploadTar("/workspace/copy", tar);
  assert.ok(await sb.files.exists("/workspace/copy/moved.dat"));
});

test("lifecycle", async () => {
  const sb = await Sandbox.create({ timeout: 120, labels: { suite: "ts" } }); // killed by after()
  assert.ok((await Sandbox.list({ labels: { suite: "ts" } })).some((s) => s.id === sb.id));
  await sb.setTimeout(600);
  if (process.getuid() === 0) {
    await sb.pause();
    assert.equal((await sb.refresh()).state, "paused");
    await sb.resume();
  }
  await sb.files.write("/workspace/state.txt", "v1");
  const snap = await sb.snapshot("ts");
  const restored = await snap.restore();
  assert.equal((await restored.commands.run("cat /workspace/state.txt")).stdout, "v1");
  const forks = await sb.fork(2);
  assert.equal(forks.length, 2);
  for (const s of [restored, ...forks]) await s.kill();
  assert.ok((await Snapshot.list({ sandboxId: sb.id })).some((s) => s.id === snap.id));
  assert.equal((await Snapshot.get(snap.id)).info.name, "ts");
  await snap.delete();
  await assert.rejects(sb.setNetwork("allowlist", ["example.com"]), aibox.ConflictError);
  const p = await sb.ports();
  assert.deepEqual(p.ports, []);
  assert.notEqual((await sb.setPorts({ rotateToken: true })).token, p.token);
  const url = await sb.getUrl(8123);
  assert.ok(url.includes(`8123-${sb.id}.`) && url.includes("aibox_token="));
});

test("volumes", async () => {
  const vol = await aibox.Volume.create("ts-data", { size: "32m", labels: { suite: "ts" } });
  try {
    assert.equal(vol.info.quota.bytes, 32 * 2 ** 20);
    assert.equal(vol.info.quota.enforced, process.getuid() === 0);
    assert.deepEqual((await aibox.Volume.list({ label: "suite=ts" })).map((v) => v.name), ["ts-data"]);
    const a = await Sandbox.create({ volumes: ["ts-data:/data"] });
    try {
      await a.files.write("/data/note.txt", "kept");
      const b = await Sandbox.create({ volumes: ["ts-data:/data:ro"] });
      assert.equal((await b.commands.run("cat /data/note.txt")).stdout, "kept");
      assert.deepEqual((await vol.refresh()).in_use_by.sort(), [a.id, b.id].sort());
      await b.kill();
      await assert.rejects(vol.delete(), aibox.ConflictError);
    } finally {
      await a.kill();
    }
    await vol.snapshot("v1");
    const copy = await vol.clone("ts-copy", { snapshot: "v1" });
    const c = await Sandbox.create({ volumes: ["ts-copy:/data"] });
    assert.equal(await c.files.read("/data/note.txt"), "kept");
    await c.kill();
    await copy.delete();
    await vol.deleteSnapshot("v1");
    await assert.rejects(aibox.Volume.get("no-such-volume"), aibox.NotFoundError);
  } finally {
    await vol.delete();
  }
  await assert.rejects(Sandbox.create({ volumes: ["ts-data:/data"] }), aibox.NotFoundError);
});

test("workspaces", async () => {
  const ws = await aibox.Workspace.create("ts-ws2", { size: "16m", env: { WS: "yes" } });
  try {
    const a = await Sandbox.create({ workspace: "ts-ws2" });
    await a.files.write("/workspace/kept.txt", "kept");
    assert.equal((await a.commands.run("echo $WS")).stdout, "yes\n");
    await a.kill();
    const b = await Sandbox.create({ workspace: "ts-ws2" });
    assert.equal(await b.files.read("/workspace/kept.txt"), "kept");
    await b.kill();
    await ws.snapshot("v1");
    assert.deepEqual((await ws.refresh()).history.map((e) => e.event),
      ["created", "sandbox_created", "sandbox_ended", "sandbox_created", "sandbox_ended", "snapshot"]);
    assert.deepEqual((await aibox.Workspace.list()).map((w) => w.name), ["ts-ws2"]);
  } finally {
    await ws.delete();
  }
  await assert.rejects(aibox.Workspace.get("ts-ws2"), aibox.NotFoundError);
});

test("errors", async () => {
  await assert.rejects(Sandbox.connect("ffffffffffff"), aibox.NotFoundError);
  await assert.rejects(Sandbox.create({ key: "wrong" }), aibox.AuthenticationError);
  await assert.rejects(Sandbox.create({ memory: "1k" }), (e) => e instanceof aibox.InvalidArgumentError && e.code === "invalid_argument" && /memory/.test(e.message));
  await assert.rejects(Sandbox.create({ template: "no/such:template" }), aibox.TemplateNotFoundError);
  await assert.rejects(Sandbox.create({ url: "http://127.0.0.1:1" }), aibox.ConnectionError);
  await assert.rejects(Sandbox.create({ url: "ftp://x" }), aibox.InvalidArgumentError);
  // The backend reaches the server (a microVM needs more memory).
  await assert.rejects(Sandbox.create({ backend: "microvm", memory: "64m" }), (e) => e instanceof aibox.InvalidArgumentError && /microVM/.test(e.message));
  await assert.rejects(Sandbox.create({ backend: "warp" }), aibox.InvalidArgumentError);
  const sb = await Sandbox.create();
  await sb.kill();
  await sb.kill();
  await assert.rejects(sb.commands.run("true"), aibox.NotFoundError);
});

test("templates", async () => {
  const t = new Templates();
  assert.ok((await t.list()).some((x) => x.name === "host"));
  await assert.rejects(t.get("no/such:1"), aibox.NotFoundError);
  assert.ok("layers" in (await t.prune()));
});

test("CommonJS build", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("../dist/cjs/index.cjs");
  assert.equal(typeof cjs.Sandbox.create, "function");
  assert.ok(existsSync(join(here, "../dist/esm/index.d.ts")) && existsSync(join(here, "../dist/cjs/index.d.cts")));
});

test("npm pack", () => {
  const dest = mkdtempSync(join(tmpdir(), "aibox-ts-pack-"));
  const out = execFileSync("npm", ["pack", "--json", "--pack-destination", dest], { cwd: join(here, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const info = JSON.parse(out)[0];
  assert.ok(existsSync(join(dest, info.filename)), info.filename);
  rmSync(dest, { recursive: true, force: true });
  const files = info.files.map((f) => f.path);
  for (const f of ["dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.cjs", "package.json"]) assert.ok(files.includes(f), f);
});

// Every operation of the served OpenAPI spec is covered by this SDK, or
// listed as not applicable with the reason.
const NA = "n/a: ";
const COVERAGE = {
  "GET /v1/health": NA + "server liveness, for operators and probes",
  "GET /v1/audit": NA + "the audit log is an operator's (aibox audit)",
  "GET /v1/audit/verify": NA + "the audit log is an operator's (aibox audit verify)",
  "GET /v1/keys": NA + "key management is an operator's (aibox keys)",
  "POST /v1/keys": NA + "key management is an operator's (aibox keys)",
  "DELETE /v1/keys/{id}": NA + "key management is an operator's (aibox keys)",
  "PATCH /v1/keys/{id}": NA + "key ceilings are an operator's (aibox keys ceiling)",
  "GET /v1/sandboxes": "Sandbox.list",
  "POST /v1/sandboxes": "Sandbox.create",
  "DELETE /v1/sandboxes/{id}": "Sandbox#kill",
  "GET /v1/sandboxes/{id}": "Sandbox#refresh",
  "POST /v1/sandboxes/{id}/exec": "Commands#run",
  "DELETE /v1/sandboxes/{id}/files": "Files#remove",
  "GET /v1/sandboxes/{id}/files": "Files#read",
  "PUT /v1/sandboxes/{id}/files": "Files#write",
  "GET /v1/sandboxes/{id}/files/list": "Files#list",
  "POST /v1/sandboxes/{id}/files/mkdir": "Files#makeDir",
  "POST /v1/sandboxes/{id}/files/rename": "Files#rename",
  "GET /v1/sandboxes/{id}/files/stat": "Files#stat",
  "PATCH /v1/sandboxes/{id}/network": "Sandbox#setNetwork",
  "POST /v1/sandboxes/{id}/pause": "Sandbox#pause",
  "POST /v1/sandboxes/{id}/resume": "Sandbox#resume",
  "GET /v1/sandboxes/{id}/ports": "Sandbox#ports",
  "PATCH /v1/sandboxes/{id}/ports": "Sandbox#setPorts",
  "GET /v1/sandboxes/{id}/processes": "Commands#list",
  "POST /v1/sandboxes/{id}/processes": "Commands#run",
  "GET /v1/sandboxes/{id}/processes/{pid}": "CommandHandle#info",
  "POST /v1/sandboxes/{id}/processes/{pid}/kill": "CommandHandle#kill",
  "POST /v1/sandboxes/{id}/processes/{pid}/stdin": "CommandHandle#sendStdin",
  "POST /v1/sandboxes/{id}/processes/{pid}/wait": "CommandHandle#waitExit",
  "POST /v1/sandboxes/{id}/snapshots": "Sandbox#snapshot",
  "GET /v1/sandboxes/{id}/tar": "Files#downloadTar",
  "PUT /v1/sandboxes/{id}/tar": "Files#uploadTar",
  "POST /v1/sandboxes/{id}/timeout": "Sandbox#setTimeout",
  "GET /v1/snapshots": "Snapshot.list",
  "GET /v1/snapshots/{id}": "Snapshot.get",
  "DELETE /v1/snapshots/{id}": "Snapshot#delete",
  "POST /v1/snapshots/{id}/fork": "Snapshot#fork",
  "POST /v1/snapshots/{id}/restore": "Snapshot#restore",
  "POST /v1/snapshots/{id}/template": "Snapshot#toTemplate",
  "GET /v1/templates": "Templates#list",
  "POST /v1/templates/build": "Templates#build",
  "POST /v1/templates/import": "Templates#importArchive",
  "POST /v1/templates/prune": "Templates#prune",
  "POST /v1/templates/pull": "Templates#pull",
  "GET /v1/templates/{name}": "Templates#get",
  "DELETE /v1/templates/{name}": "Templates#delete",
  "GET /v1/volumes": "Volume.list",
  "POST /v1/volumes": "Volume.create",
  "GET /v1/volumes/{volume}": "Volume.get",
  "DELETE /v1/volumes/{volume}": "Volume#delete",
  "POST /v1/volumes/{volume}/snapshots": "Volume#snapshot",
  "DELETE /v1/volumes/{volume}/snapshots/{snapshot}": "Volume#deleteSnapshot",
  "POST /v1/volumes/{volume}/clone": "Volume#clone",
  "GET /v1/workspaces": "Workspace.list",
  "POST /v1/workspaces": "Workspace.create",
  "GET /v1/workspaces/{workspace}": "Workspace.get",
  "DELETE /v1/workspaces/{workspace}": "Workspace#delete",
  "POST /v1/workspaces/{workspace}/snapshots": "Workspace#snapshot",
};

test("parity with the served OpenAPI spec", async () => {
  const spec = await (await fetch(process.env.AIBOX_URL + "/v1/openapi.json")).json();
  const ops = new Set();
  for (const [p, o] of Object.entries(spec.paths)) {
    for (const m of Object.keys(o)) if (["get", "post", "put", "patch", "delete"].includes(m)) ops.add(`${m.toUpperCase()} ${p}`);
  }
  const missing = [...ops].filter((o) => !(o in COVERAGE));
  assert.deepEqual(missing, [], "not covered by the TypeScript SDK");
  const stale = Object.keys(COVERAGE).filter((o) => !ops.has(o));
  assert.deepEqual(stale, [], "listed but not served");
  for (const [op, target] of Object.entries(COVERAGE)) {
    if (target.startsWith(NA)) continue;
    const [cls, method] = target.split(/[.#]/);
    const owner = target.includes("#") ? aibox[cls].prototype : aibox[cls];
    assert.equal(typeof owner?.[method], "function", `${op}: ${target} is missing`);
  }
});

// The security review's M11: a sandbox's tar cannot write outside the
// destination (a symlink, then an entry through it).
test("downloads never write outside their destination", () => {
  const tarOf = (entries) => {
    const blocks = [];
    for (const [name, type, body = "", link = ""] of entries) {
      const h = new Uint8Array(512);
      const put = (s, o) => h.set(new TextEncoder().encode(s), o);
      put(name, 0);
      put("0000644\0", 100);
      put("0000000\0", 108);
      put("0000000\0", 116);
      put(body.length.toString(8).padStart(11, "0") + "\0", 124);
      put("00000000000\0", 136);
      put(type, 156);
      put(link, 157);
      put("ustar\x0000", 257);
      put("        ", 148);
      const sum = h.reduce((a, b) => a + b, 0);
      put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
      blocks.push(h);
      if (body.length) {
        const d = new Uint8Array(Math.ceil(body.length / 512) * 512);
        d.set(new TextEncoder().encode(body));
        blocks.push(d);
      }
    }
    blocks.push(new Uint8Array(1024));
    return Buffer.concat(blocks);
  };
  const base = mkdtempSync(join(tmpdir(), "aibox-m11-"));
  const victim = join(base, "victim");
  mkdirSync(victim);
  for (const [what, entries] of [
    ["an entry through a symlink", [["a", "2", "", victim], ["a/pwned", "0", "x"]]],
    ["a relative link out", [["b", "2", "", "../victim"]]],
    ["dotdot", [["../victim/pwned", "0", "x"]]],
  ]) {
    const out = join(base, "out-" + what.replace(/\W/g, ""));
    assert.throws(() => aibox.__internal.untar(tarOf(entries), out), /invalid_argument|outside|symlink/, what);
    assert.ok(!existsSync(join(victim, "pwned")), what);
  }
  const ok = join(base, "ok");
  aibox.__internal.untar(tarOf([["d", "5"], ["d/f", "0", "hello"], ["d/l", "2", "", "f"]]), ok);
  assert.equal(readFileSync(join(ok, "d/l"), "utf8"), "hello");
  rmSync(base, { recursive: true, force: true });
});

test("every create and exec field of the served schema is an SDK option, and back", async () => {
  const r = await fetch(`${process.env.AIBOX_URL}/v1/openapi.json`);
  const { components: { schemas } } = await r.json();
  const sorted = (xs) => [...xs].sort();
  assert.deepEqual(sorted(Object.values(aibox.CREATE_FIELDS)), sorted(Object.keys(schemas.CreateSandbox.properties)),
    "the server's create fields and the SDK's CREATE_FIELDS differ");
  assert.deepEqual(sorted(["cmd", ...Object.values(aibox.EXEC_FIELDS)]), sorted(Object.keys(schemas.Exec.properties)),
    "the server's exec fields and the SDK's EXEC_FIELDS differ");
  const body = aibox.createBody({ mounts: ["/a:/b:ro"], volumes: ["cache:/c:ro"], network: ["pypi.org"], timeout: 60, public: false, requireIsolation: "basic" });
  assert.deepEqual(body, {
    mounts: [{ host: "/a", guest: "/b", read_only: true }],
    volumes: [{ name: "cache", path: "/c", read_only: true }],
    network: { mode: "allowlist", rules: ["pypi.org"] },
    ttl_seconds: 60,
    require_isolation: "basic",
  });
});

test("every create option reaches the server", async () => {
  const root = process.getuid() === 0;
  const o = {
    template: "host", disk: "300m", env: { PARITY: "yes" }, workdir: "/tmp", user: "root", timeout: 4321,
    idleTimeout: 777, hostname: "parity", labels: { parity: "ts" }, requireIsolation: "basic", backend: "namespaces",
    mounts: [`${join(data, "shared")}:/parity:ro`], volumes: ["ts-parity:/pvol"], workspace: "ts-ws",
    network: { mode: "allowlist", rules: ["parity.example"], enforcement: "proxy" }, public: true,
    // Rootless without a delegated cgroup, an explicit limit fails closed.
    ...(root ? { memory: "200m", cpus: 0.5, pids: 321 } : {}),
  };
  const expected = Object.keys(aibox.CREATE_FIELDS).filter((k) => k !== "snapshot" && (root || !["memory", "cpus", "pids"].includes(k)));
  assert.deepEqual(Object.keys(o).sort(), expected.sort());
  const vol = await aibox.Volume.create("ts-parity", { size: "16m" });
  const ws = await aibox.Workspace.create("ts-ws", { size: "16m" });
  const sb = await Sandbox.create(o);
  try {
    const v = await sb.refresh();
    const spec = v.spec;
    assert.equal(spec.template, "host");
    if (root) assert.deepEqual([spec.memory, spec.cpus, spec.pids], [200 * 2 ** 20, 0.5, 321]);
    assert.equal(spec.disk, 300 * 2 ** 20);
    assert.ok(spec.env.some(([k, x]) => k === "PARITY" && x === "yes"));
    assert.deepEqual([spec.workdir, spec.user, spec.hostname], ["/tmp", "root", "parity"]);
    assert.ok(v.remaining_ms > 4_000_000 && v.remaining_ms <= 4_321_000);
    assert.equal(v.idle_timeout_seconds, 777);
    assert.equal(v.labels.parity, "ts");
    assert.deepEqual([spec.require_isolation, spec.backend], ["basic", "namespaces"]);
    assert.equal(spec.mounts[0].guest, "/parity");
    assert.deepEqual([spec.network, spec.network_rules, spec.network_enforcement], ["allowlist", ["allow parity.example"], "proxy"]);
    assert.equal(v.public_ports, true);
    assert.deepEqual(spec.volumes.map((m) => [m.name, m.path]), [["ts-parity", "/pvol"], ["workspace.ts-ws", "/workspace"]]);
    assert.deepEqual((await vol.refresh()).in_use_by, [sb.id]);
    assert.deepEqual((await ws.refresh()).sandboxes, [sb.id]);
  } finally {
    await sb.kill();
    await vol.delete();
    await ws.delete();
  }
  const base = await Sandbox.create();
  try {
    const snap = await base.snapshot();
    const restored = await Sandbox.create({ snapshot: snap.id });
    try {
      assert.equal((await restored.refresh()).spec.snapshot, snap.id);
    } finally {
      await restored.kill();
    }
    await snap.delete();
  } finally {
    await base.kill();
  }
});
