/**
 * aibox: self-hosted sandboxes for AI agents.
 *
 *     import { Sandbox } from "@aibox/sdk";
 *     await using sb = await Sandbox.create();
 *     console.log((await sb.commands.run("echo hi")).stdout);
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve as resolvePath, sep } from "node:path";
import WebSocket from "ws";

/** An error from aibox; `code` is the API's stable error code. */
export class AiboxError extends Error {
  code: string;
  status?: number;
  retryAfter?: number;
  constructor(message: string, code = "internal", status?: number, retryAfter?: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}
export class InvalidArgumentError extends AiboxError {}
export class AuthenticationError extends AiboxError {}
export class PermissionDeniedError extends AiboxError {}
export class NotFoundError extends AiboxError {}
export class TemplateNotFoundError extends NotFoundError {}
export class SandboxGoneError extends NotFoundError {}
export class ConflictError extends AiboxError {}
export class IsolationUnavailableError extends AiboxError {}
export class RateLimitError extends AiboxError {}
/** The server (or the key's quota) is full; retry after `retryAfter` seconds. */
export class CapacityError extends AiboxError {}
export class PayloadTooLargeError extends AiboxError {}
export class TimeoutError extends AiboxError {}
export class UnavailableError extends AiboxError {}
export class BuildFailedError extends AiboxError {}
export class ServerError extends AiboxError {}
/** No aibox server answers where the client looked. */
export class ConnectionError extends AiboxError {}
/** A command exited non-zero (from `CommandResult.check()`). */
export class CommandExitError extends AiboxError {
  result: CommandResult;
  constructor(result: CommandResult) {
    super(`command exited with ${result.exitCode}: ${result.stderr.slice(-500)}`, "command_failed");
    this.result = result;
  }
}

const ERRORS: Record<string, new (m: string, c?: string, s?: number, r?: number) => AiboxError> = {
  invalid_argument: InvalidArgumentError,
  unauthenticated: AuthenticationError,
  permission_denied: PermissionDeniedError,
  not_found: NotFoundError,
  template_not_found: TemplateNotFoundError,
  sandbox_gone: SandboxGoneError,
  conflict: ConflictError,
  isolation_unavailable: IsolationUnavailableError,
  rate_limited: RateLimitError,
  resource_exhausted: CapacityError,
  payload_too_large: PayloadTooLargeError,
  frame_too_large: PayloadTooLargeError,
  timeout: TimeoutError,
  unavailable: UnavailableError,
  build_failed: BuildFailedError,
  internal: ServerError,
  protocol_error: ServerError,
  version_mismatch: ServerError,
};

function errorFrom(status: number, text: string, retryAfter?: string | null): AiboxError {
  let code = status === 404 ? "not_found" : "internal";
  let message = text || `HTTP ${status}`;
  try {
    const e = JSON.parse(text).error;
    if (e?.code) {
      code = e.code;
      message = e.message;
    }
  } catch {
    /* not an error envelope */
  }
  const Cls = ERRORS[code] ?? AiboxError;
  return new Cls(message, code, status, retryAfter ? Number(retryAfter) : undefined);
}

export interface ConnectionOptions {
  /** http://HOST:PORT (default: AIBOX_URL, else http://127.0.0.1:7878). */
  url?: string;
  /** The API key (default: AIBOX_KEY, else the local admin key for a local server). */
  key?: string;
}

function dataDir(): string {
  const env = process.env;
  if (env.AIBOX_DATA_DIR) return env.AIBOX_DATA_DIR;
  if (process.getuid?.() === 0) return "/var/lib/aibox";
  if (env.XDG_DATA_HOME) return join(env.XDG_DATA_HOME, "aibox");
  if (env.HOME) return join(env.HOME, ".local/share/aibox");
  return `/tmp/aibox-${process.getuid?.()}/data`;
}

class Http {
  readonly base: string;
  readonly key?: string;
  constructor(opts: ConnectionOptions = {}) {
    let url = opts.url ?? process.env.AIBOX_URL ?? "http://127.0.0.1:7878";
    if (!/^https?:\/\//.test(url)) {
      throw new InvalidArgumentError(`invalid aibox URL ${JSON.stringify(url)}: expected http://HOST:PORT`, "invalid_argument");
    }
    url = url.replace(/\/+$/, "");
    let key = opts.key ?? process.env.AIBOX_KEY;
    if (!key && /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\]):/.test(url)) {
      try {
        key = readFileSync(join(dataDir(), "admin.key"), "utf8").trim() || undefined;
      } catch {
        /* no local key */
      }
    }
    this.base = url;
    this.key = key;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.key ? { authorization: `Bearer ${this.key}`, ...extra } : extra;
  }

  async request(method: string, path: string, opts: { json?: unknown; body?: Uint8Array | string; query?: Record<string, string | undefined> } = {}): Promise<Response> {
    const q = Object.entries(opts.query ?? {}).filter(([, v]) => v !== undefined) as [string, string][];
    const url = this.base + path + (q.length ? "?" + new URLSearchParams(q).toString() : "");
    const headers: Record<string, string> = {};
    let body: BodyInit | undefined;
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      headers["content-type"] = "application/octet-stream";
      body = opts.body as BodyInit;
    }
    let r: Response;
    try {
      r = await fetch(url, { method, headers: this.headers(headers), body });
    } catch (e) {
      throw new ConnectionError(`no aibox server is reachable at ${this.base} (${(e as Error).cause ?? e}); start one with \`aibox serve\`, or set AIBOX_URL`, "connection");
    }
    if (r.status >= 300) throw errorFrom(r.status, await r.text(), r.headers.get("retry-after"));
    return r;
  }

  async json<T = any>(method: string, path: string, opts: Parameters<Http["request"]>[2] = {}): Promise<T> {
    const r = await this.request(method, path, opts);
    const text = await r.text();
    return (text ? JSON.parse(text) : null) as T;
  }

  websocket(path: string): WebSocket {
    return new WebSocket(this.base.replace(/^http/, "ws") + path, { headers: this.headers(), maxPayload: 0 });
  }
}

/** A finished command. */
export class CommandResult {
  constructor(
    readonly stdout: string,
    readonly stderr: string,
    readonly exitCode: number | null,
    readonly signal: number | null = null,
    readonly timedOut = false,
    readonly durationMs = 0,
    readonly stdoutTruncated = false,
    readonly stderrTruncated = false,
  ) {}
  get ok(): boolean {
    return this.exitCode === 0;
  }
  /** Throw `CommandExitError` unless the command exited 0. */
  check(): this {
    if (!this.ok) throw new CommandExitError(this);
    return this;
  }
  static from(v: any, stdout = "", stderr = ""): CommandResult {
    return new CommandResult(v.stdout ?? stdout, v.stderr ?? stderr, v.exit_code ?? null, v.signal ?? null,
      !!v.timed_out, v.duration_ms ?? 0, !!v.stdout_truncated, !!v.stderr_truncated);
  }
}

export interface EntryInfo {
  path: string;
  name: string;
  kind: string;
  size: number;
  mode: number;
  mtime?: number;
  target?: string;
}

function entry(v: any): EntryInfo {
  return { ...v, name: v.name ?? String(v.path).split("/").pop() };
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  user?: string;
  /** Seconds before the command is killed. */
  timeout?: number;
  stdin?: string | Uint8Array;
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
  background?: boolean;
  /** Per-stream cap in bytes (the server's `max_exec_output` at most). */
  maxOutput?: number;
}

function execBody(cmd: string | string[], o: RunOptions): Record<string, unknown> {
  const b: Record<string, unknown> = { cmd };
  if (o.env) b.env = o.env;
  if (o.cwd) b.cwd = o.cwd;
  if (o.user) b.user = o.user;
  if (o.timeout !== undefined) b.timeout_ms = Math.max(1, Math.round(o.timeout * 1000));
  if (o.maxOutput !== undefined) b.max_output = o.maxOutput;
  return b;
}

/** Run an exec (or attach) WebSocket to its exit, collecting the output. */
function stream(ws: WebSocket, start: unknown, o: Pick<RunOptions, "onStdout" | "onStderr">, stdin?: Uint8Array): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const err: string[] = [];
    const dec = { out: new TextDecoder(), err: new TextDecoder() };
    let settled = false;
    ws.on("open", () => {
      if (start !== undefined) {
        ws.send(JSON.stringify(start));
        if (stdin?.length) ws.send(stdin);
        ws.send(JSON.stringify({ type: "stdin_close" }));
      }
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        if (!data.length) return;
        const stderr = data[0] === 2;
        const text = (stderr ? dec.err : dec.out).decode(data.subarray(1), { stream: true });
        (stderr ? err : out).push(text);
        if (text) (stderr ? o.onStderr : o.onStdout)?.(text);
        return;
      }
      const ev = JSON.parse(data.toString());
      if (ev.type === "exit") {
        settled = true;
        resolve(CommandResult.from(ev, out.join(""), err.join("")));
        ws.close();
      } else if (ev.type === "error") {
        settled = true;
        reject(errorFrom(500, JSON.stringify({ error: ev })));
        ws.close();
      }
    });
    ws.on("unexpected-response", (_req: unknown, res: any) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c));
      res.on("end", () => {
        settled = true;
        reject(errorFrom(res.statusCode, text));
      });
    });
    ws.on("error", (e: Error) => {
      if (!settled) reject(new ConnectionError(`the command's stream failed: ${e.message}`, "connection"));
      settled = true;
    });
    ws.on("close", () => {
      if (!settled) reject(new ConnectionError("the command's stream ended without its exit status", "connection"));
    });
  });
}

const bytes = (d: string | Uint8Array): Uint8Array => (typeof d === "string" ? new TextEncoder().encode(d) : d);

/** A command running in the background. */
export class CommandHandle {
  constructor(readonly sandbox: Sandbox, readonly pid: number) {}
  private path(): string {
    return `/v1/sandboxes/${this.sandbox.id}/processes/${this.pid}`;
  }
  /** Wait for the exit; the whole output (buffered from the start) comes too. */
  wait(o: Pick<RunOptions, "onStdout" | "onStderr"> = {}): Promise<CommandResult> {
    return stream(this.sandbox.http.websocket(this.path() + "/attach"), undefined, o);
  }
  /** Wait for the exit status only; `timeout` seconds at most. */
  async waitExit(timeout?: number): Promise<CommandResult> {
    return CommandResult.from(await this.sandbox.http.json("POST", this.path() + "/wait", {
      query: { timeout_ms: timeout === undefined ? undefined : String(Math.round(timeout * 1000)) },
    }));
  }
  async kill(signal = 15): Promise<void> {
    await this.sandbox.http.request("POST", this.path() + "/kill", { json: { signal } });
  }
  async sendStdin(data: string | Uint8Array, close = false): Promise<void> {
    await this.sandbox.http.request("POST", this.path() + "/stdin", { body: bytes(data), query: { close: close ? "true" : undefined } });
  }
  info(): Promise<any> {
    return this.sandbox.http.json("GET", this.path());
  }
}

export class Commands {
  constructor(private readonly sb: Sandbox) {}

  /** Run `cmd` (a shell line or an argv array) and wait; with `onStdout`/`onStderr`
   * the output streams as it comes; `background: true` returns a handle at once. */
  run(cmd: string | string[], o: RunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: string | string[], o?: RunOptions): Promise<CommandResult>;
  async run(cmd: string | string[], o: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    const body = execBody(cmd, o);
    const base = `/v1/sandboxes/${this.sb.id}`;
    if (o.background) {
      if (o.stdin !== undefined) body.stdin = true;
      const v = await this.sb.http.json("POST", base + "/processes", { json: body });
      const h = new CommandHandle(this.sb, Number(v.id));
      if (o.stdin !== undefined) await h.sendStdin(o.stdin, true);
      return h;
    }
    if (o.onStdout || o.onStderr) {
      return stream(this.sb.http.websocket(base + "/exec/ws"), body, o, o.stdin === undefined ? undefined : bytes(o.stdin));
    }
    if (o.stdin !== undefined) body.stdin = typeof o.stdin === "string" ? o.stdin : new TextDecoder().decode(o.stdin);
    return CommandResult.from(await this.sb.http.json("POST", base + "/exec", { json: body }));
  }

  async list(): Promise<any[]> {
    const v = await this.sb.http.json("GET", `/v1/sandboxes/${this.sb.id}/processes`);
    return v.processes ?? v;
  }

  connect(pid: number): CommandHandle {
    return new CommandHandle(this.sb, pid);
  }
}

export class Files {
  constructor(private readonly sb: Sandbox) {}
  private base(): string {
    return `/v1/sandboxes/${this.sb.id}/files`;
  }
  read(path: string): Promise<string>;
  read(path: string, opts: { format: "bytes" }): Promise<Uint8Array>;
  read(path: string, opts: { format: "text" }): Promise<string>;
  async read(path: string, opts: { format?: "text" | "bytes" } = {}): Promise<string | Uint8Array> {
    const format = opts.format ?? "text";
    if (format !== "text" && format !== "bytes") throw new InvalidArgumentError(`format ${format}: expected "text" or "bytes"`, "invalid_argument");
    const r = await this.sb.http.request("GET", this.base(), { query: { path } });
    const b = new Uint8Array(await r.arrayBuffer());
    return format === "bytes" ? b : new TextDecoder().decode(b);
  }
  /** Write the whole file atomically (parents are created). */
  async write(path: string, data: string | Uint8Array, opts: { mode?: number } = {}): Promise<void> {
    const parent = path.replace(/\/[^/]*$/, "");
    if (parent && parent !== "/") await this.makeDir(parent);
    await this.sb.http.request("PUT", this.base(), { body: bytes(data), query: { path, mode: opts.mode === undefined ? undefined : opts.mode.toString(8) } });
  }
  async list(path = "/workspace", opts: { recursive?: boolean } = {}): Promise<EntryInfo[]> {
    const v = await this.sb.http.json("GET", this.base() + "/list", { query: { path, recursive: String(!!opts.recursive) } });
    return (v.entries ?? []).map(entry);
  }
  async stat(path: string): Promise<EntryInfo> {
    return entry(await this.sb.http.json("GET", this.base() + "/stat", { query: { path } }));
  }
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.sb.http.request("DELETE", this.base(), { query: { path, recursive: opts.recursive ? "true" : undefined } });
  }
  async rename(from: string, to: string): Promise<void> {
    await this.sb.http.request("POST", this.base() + "/rename", { json: { from, to } });
  }
  async makeDir(path: string): Promise<void> {
    await this.sb.http.request("POST", this.base() + "/mkdir", { json: { path } });
  }
  /** Unpack a tar archive into `path` (created). */
  async uploadTar(path: string, tar: Uint8Array): Promise<void> {
    await this.makeDir(path);
    await this.sb.http.request("PUT", `/v1/sandboxes/${this.sb.id}/tar`, { body: tar, query: { path } });
  }
  /** `path` as a tar archive. */
  async downloadTar(path: string): Promise<Uint8Array> {
    const r = await this.sb.http.request("GET", `/v1/sandboxes/${this.sb.id}/tar`, { query: { path } });
    return new Uint8Array(await r.arrayBuffer());
  }
  /** Copy a local directory's contents into `remote` (created). */
  async uploadDir(local: string, remote: string): Promise<void> {
    await this.uploadTar(remote, tarOf(local));
  }
  /** Copy `remote`'s contents into the local directory `local` (created); entries
   * that would land outside it are refused. */
  async downloadDir(remote: string, local: string): Promise<void> {
    untar(await this.downloadTar(remote), local);
  }
}

/** A ustar archive of `dir`'s files, directories and symlinks. */
function tarOf(dir: string): Uint8Array {
  const blocks: Uint8Array[] = [];
  const header = (name: string, type: string, size: number, mode: number, link = ""): Uint8Array => {
    const h = new Uint8Array(512);
    const put = (off: number, len: number, v: string) => h.set(new TextEncoder().encode(v).subarray(0, len), off);
    const oct = (off: number, len: number, n: number) => put(off, len, n.toString(8).padStart(len - 1, "0") + "\0");
    let prefix = "";
    if (name.length > 100) {
      const cut = name.lastIndexOf("/", 155);
      if (cut > 0 && name.length - cut - 1 <= 100) {
        prefix = name.slice(0, cut);
        name = name.slice(cut + 1);
      }
    }
    put(0, 100, name);
    oct(100, 8, mode & 0o7777);
    oct(108, 8, 0);
    oct(116, 8, 0);
    oct(124, 12, size);
    oct(136, 12, Math.floor(Date.now() / 1000));
    put(148, 8, "        ");
    put(156, 1, type);
    put(157, 100, link);
    put(257, 6, "ustar\0");
    put(263, 2, "00");
    put(345, 155, prefix);
    const sum = h.reduce((a, b) => a + b, 0);
    put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
    return h;
  };
  // Names a ustar header cannot hold go first as a GNU long-name entry.
  const entry = (name: string, type: string, size: number, mode: number, link = "") => {
    const fits = name.length <= 100 || (name.lastIndexOf("/", 155) > 0 && name.length - name.lastIndexOf("/", 155) - 1 <= 100);
    if (!fits) {
      const long = new TextEncoder().encode(name + "\0");
      blocks.push(header("././@LongLink", "L", long.length, 0o644), long, new Uint8Array((512 - (long.length % 512)) % 512));
    }
    blocks.push(header(name, type, size, mode, link));
  };
  const walk = (abs: string) => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      const rel = relative(dir, p).split(sep).join("/");
      const st = lstatSync(p);
      if (st.isSymbolicLink()) entry(rel, "2", 0, 0o777, readlinkSync(p));
      else if (st.isDirectory()) {
        entry(rel + "/", "5", 0, st.mode);
        walk(p);
      } else if (st.isFile()) {
        const data = readFileSync(p);
        entry(rel, "0", data.length, st.mode);
        blocks.push(data, new Uint8Array((512 - (data.length % 512)) % 512));
      }
    }
  };
  walk(dir);
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/**
 * Unpack a tar archive (files, directories, symlinks) into `dir`. The
 * archive comes from a sandbox, so nothing in it may write outside `dir`:
 * entries with `..` or absolute names, symlinks whose target is absolute
 * or leads outside, and entries whose parent is (or whose own path already
 * is) a symlink are refused (the security review's M11: a link `a -> ~/.ssh`
 * followed by `a/authorized_keys` used to be written through the link).
 */
function untar(tar: Uint8Array, dir: string): void {
  const root = resolvePath(dir);
  mkdirSync(root, { recursive: true });
  const str = (off: number, len: number) => new TextDecoder().decode(tar.subarray(off, off + len)).replace(/\0.*$/s, "");
  const inside = (p: string) => p === root || p.startsWith(root + sep);
  const refuse = (name: string, why: string) => {
    throw new InvalidArgumentError(`the archive's entry ${JSON.stringify(name)} ${why}`, "invalid_argument");
  };
  const isLink = (p: string) => {
    try {
      return lstatSync(p).isSymbolicLink();
    } catch {
      return false;
    }
  };
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    if (tar.subarray(off, off + 512).every((b) => b === 0)) break;
    const size = parseInt(str(off + 124, 12).trim() || "0", 8);
    const type = str(off + 156, 1) || "0";
    const prefix = str(off + 345, 155);
    let name = longName ?? (prefix ? prefix + "/" : "") + str(off, 100);
    longName = undefined;
    const mode = parseInt(str(off + 100, 8).trim() || "644", 8);
    const link = str(off + 157, 100);
    const data = tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = new TextDecoder().decode(data).replace(/\0.*$/s, "");
      continue;
    }
    if (type === "x" || type === "g") continue;
    name = name.replace(/^\.\//, "");
    if (!name || name === ".") continue;
    const target = resolvePath(root, name);
    if (!inside(target)) refuse(name, `leads outside ${dir}`);
    // No component between the root and the entry may be a symlink.
    for (let p = dirname(target); p !== root && inside(p); p = dirname(p)) {
      if (isLink(p)) refuse(name, "lies under a symlink");
    }
    if (isLink(target)) refuse(name, "would be written through a symlink");
    if (type === "5") mkdirSync(target, { recursive: true });
    else if (type === "2") {
      if (link.startsWith("/") || !inside(resolvePath(dirname(target), link))) {
        refuse(name, `is a symlink to ${JSON.stringify(link)}, outside ${dir}`);
      }
      mkdirSync(dirname(target), { recursive: true });
      symlinkSync(link, target);
    } else if (type === "0" || type === "7") {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, data, { mode: mode & 0o777 });
    }
  }
}

/** Internals exported for the SDK's own tests; not part of the API. */
export const __internal = { untar };

/** A sandbox's settings at create (every field optional: the server's defaults fill the rest). */
export interface CreateFields {
  template?: string;
  memory?: number | string;
  cpus?: number;
  /** The most processes and threads at once. */
  pids?: number;
  disk?: number | string;
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
  /** Lifetime in seconds (TTL). */
  timeout?: number;
  /** Destroy after this many seconds without activity. */
  idleTimeout?: number;
  hostname?: string;
  labels?: Record<string, string>;
  /** Refuse to create unless the sandbox gets at least this level: basic, standard, strict or vm. */
  requireIsolation?: "basic" | "standard" | "strict" | "vm";
  /** Isolation backend: "namespaces" or "microvm" (default: the server's). */
  backend?: "namespaces" | "microvm";
  /** Host paths to mount: "HOST:GUEST[:ro|rw]" or `{ host, guest, read_only }` (under the server's allowed_mounts). */
  mounts?: (string | { host: string; guest: string; read_only?: boolean })[];
  /** This key's volumes to mount (`Volume.create`): "NAME:/PATH[:ro|rw]" or `{ name, path, read_only }`. */
  volumes?: (string | { name: string; path: string; read_only?: boolean })[];
  /** Make it in this workspace of the key's (`Workspace.create`): its files at /workspace, its env, its history. */
  workspace?: string;
  /** Start from this snapshot (its files and settings; the fields above override them). */
  snapshot?: string;
  /** Egress rules to allow, or `{ mode, rules, enforcement }`. */
  network?: string[] | { mode: string; rules?: string[]; enforcement?: "proxy" | "l4" };
  /** Published ports answer without the port token. */
  public?: boolean;
}

export interface CreateOptions extends ConnectionOptions, CreateFields {}

/**
 * Each create option and the create request's field it fills (the server's
 * OpenAPI schema `CreateSandbox`). The compiler holds it to `CreateFields`,
 * and the SDK's tests to the served document.
 */
export const CREATE_FIELDS = {
  template: "template", memory: "memory", cpus: "cpus", pids: "pids", disk: "disk", env: "env",
  workdir: "workdir", user: "user", timeout: "ttl_seconds", idleTimeout: "idle_timeout_seconds",
  hostname: "hostname", labels: "labels", requireIsolation: "require_isolation", backend: "backend",
  mounts: "mounts", volumes: "volumes", workspace: "workspace", snapshot: "snapshot", network: "network",
  public: "public",
} as const satisfies Record<keyof CreateFields, string>;

/** Each run option and the exec request's field it fills (the schema `Exec`; `cmd` is the argument). */
export const EXEC_FIELDS = {
  env: "env", cwd: "cwd", user: "user", timeout: "timeout_ms", stdin: "stdin", maxOutput: "max_output",
} as const satisfies Partial<Record<keyof RunOptions, string>>;

function mountBody(m: string | { host: string; guest: string; read_only?: boolean }): Record<string, unknown> {
  if (typeof m !== "string") return { ...m };
  const p = m.split(":");
  if ((p.length !== 2 && p.length !== 3) || (p.length === 3 && p[2] !== "ro" && p[2] !== "rw")) {
    throw new Error(`mount ${m}: expected HOST:GUEST[:ro|rw]`);
  }
  return { host: p[0], guest: p[1], read_only: p[2] === "ro" };
}

function volumeBody(m: string | { name: string; path: string; read_only?: boolean }): Record<string, unknown> {
  if (typeof m !== "string") return { ...m };
  const p = m.split(":");
  if ((p.length !== 2 && p.length !== 3) || (p.length === 3 && p[2] !== "ro" && p[2] !== "rw")) {
    throw new Error(`volume ${m}: expected NAME:/PATH[:ro|rw]`);
  }
  return p[2] === "ro" ? { name: p[0], path: p[1], read_only: true } : { name: p[0], path: p[1] };
}

/** The create request of `Sandbox.create`'s options; what is unset or false is left to the server. */
export function createBody(o: CreateFields): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [opt, field] of Object.entries(CREATE_FIELDS) as [keyof CreateFields, string][]) {
    let v: unknown = o[opt];
    if (v === undefined || v === null || v === false) continue;
    if (opt === "network" && Array.isArray(v)) v = { mode: "allowlist", rules: v };
    if (opt === "mounts") v = (v as CreateFields["mounts"] ?? []).map(mountBody);
    if (opt === "volumes") v = (v as CreateFields["volumes"] ?? []).map(volumeBody);
    if (Array.isArray(v) && v.length === 0) continue;
    body[field] = v;
  }
  return body;
}

export class Snapshot {
  readonly id: string;
  constructor(readonly info: any, private readonly http: Http) {
    this.id = info.id;
  }
  async restore(create: Record<string, unknown> = {}): Promise<Sandbox> {
    return new Sandbox(await this.http.json("POST", `/v1/snapshots/${this.id}/restore`, { json: create }), this.http);
  }
  async fork(count: number, create: Record<string, unknown> = {}): Promise<Sandbox[]> {
    const v = await this.http.json("POST", `/v1/snapshots/${this.id}/fork`, { json: { count, ...create } });
    return v.sandboxes.map((s: any) => new Sandbox(s, this.http));
  }
  async delete(): Promise<void> {
    await this.http.request("DELETE", `/v1/snapshots/${this.id}`);
  }
  /** Make this snapshot a template (admin key). */
  toTemplate(name: string): Promise<any> {
    return this.http.json("POST", `/v1/snapshots/${this.id}/template`, { json: { name } });
  }
  static async list(opts: ConnectionOptions & { sandboxId?: string; name?: string } = {}): Promise<Snapshot[]> {
    const http = new Http(opts);
    const v = await http.json("GET", "/v1/snapshots", { query: { sandbox: opts.sandboxId, name: opts.name } });
    return v.snapshots.map((s: any) => new Snapshot(s, http));
  }
  static async get(id: string, opts: ConnectionOptions = {}): Promise<Snapshot> {
    const http = new Http(opts);
    return new Snapshot(await http.json("GET", `/v1/snapshots/${id}`), http);
  }
}

/**
 * A named resource of the key's (a volume, a workspace): its API view in `info`, addressed by id
 * (an admin's list holds every key's, whose names are unique only per key), refreshed, removed
 * and snapshotted the same way.
 */
abstract class Named {
  readonly name: string;
  protected abstract readonly kind: string;
  constructor(public info: any, protected readonly http: Http) {
    this.name = info.name;
  }
  protected get path(): string {
    return `/v1/${this.kind}/${this.info.id}`;
  }
  async refresh(): Promise<any> {
    this.info = await this.http.json("GET", this.path);
    return this.info;
  }
  /** Remove it (refused while a sandbox uses it). */
  async delete(): Promise<void> {
    await this.http.request("DELETE", this.path);
  }
  /** Keep a named copy of its files as they are now. */
  async snapshot(name: string): Promise<any> {
    this.info = await this.http.json("POST", `${this.path}/snapshots`, { json: { name } });
    return this.info;
  }
}

/**
 * A named filesystem with a quota that outlives sandboxes; mount it with
 * `Sandbox.create({ volumes: ["NAME:/path"] })`. `info` is the API's view
 * (quota and whether it is enforced, usage, the sandboxes using it, its snapshots).
 */
export class Volume extends Named {
  protected readonly kind = "volumes";
  /** Make a volume of `size` (bytes or "10g"; default 1g) whose top directory `uid` owns inside sandboxes (default 1000). */
  static async create(
    name: string,
    o: ConnectionOptions & { size?: number | string; uid?: number; labels?: Record<string, string> } = {},
  ): Promise<Volume> {
    const http = new Http(o);
    const v = await http.json("POST", "/v1/volumes", { json: { name, size: o.size, uid: o.uid, labels: o.labels } });
    return new Volume(v, http);
  }
  static async get(name: string, o: ConnectionOptions = {}): Promise<Volume> {
    const http = new Http(o);
    return new Volume(await http.json("GET", `/v1/volumes/${encodeURIComponent(name)}`), http);
  }
  static async list(o: ConnectionOptions & { label?: string } = {}): Promise<Volume[]> {
    const http = new Http(o);
    const v = await http.json("GET", "/v1/volumes", { query: { label: o.label } });
    return v.volumes.map((x: any) => new Volume(x, http));
  }
  async deleteSnapshot(name: string): Promise<void> {
    await this.http.request("DELETE", `${this.path}/snapshots/${encodeURIComponent(name)}`);
  }
  /** A new volume with this one's files (now, or as `snapshot` holds them). */
  async clone(name: string, o: { snapshot?: string; labels?: Record<string, string> } = {}): Promise<Volume> {
    return new Volume(await this.http.json("POST", `${this.path}/clone`, { json: { name, ...o } }), this.http);
  }
}

/**
 * A persistent identity for the sandboxes made in it: its files (a volume at /workspace), its
 * environment and its history. Make a sandbox in it with `Sandbox.create({ workspace: "NAME" })`.
 * `info` is the API's view (`files`, `sandboxes`, `history`).
 */
export class Workspace extends Named {
  protected readonly kind = "workspaces";
  static async create(
    name: string,
    o: ConnectionOptions & { size?: number | string; env?: Record<string, string>; labels?: Record<string, string> } = {},
  ): Promise<Workspace> {
    const http = new Http(o);
    const v = await http.json("POST", "/v1/workspaces", { json: { name, size: o.size, env: o.env, labels: o.labels } });
    return new Workspace(v, http);
  }
  static async get(name: string, o: ConnectionOptions = {}): Promise<Workspace> {
    const http = new Http(o);
    return new Workspace(await http.json("GET", `/v1/workspaces/${encodeURIComponent(name)}`), http);
  }
  static async list(o: ConnectionOptions = {}): Promise<Workspace[]> {
    const http = new Http(o);
    return (await http.json("GET", "/v1/workspaces")).workspaces.map((w: any) => new Workspace(w, http));
  }
}

/** An aibox sandbox. `await using sb = await Sandbox.create()` destroys it at scope exit. */
export class Sandbox {
  readonly id: string;
  info: any;
  readonly commands: Commands;
  readonly files: Files;
  /** @internal */
  readonly http: Http;

  constructor(info: any, http: Http) {
    this.info = info;
    this.id = info.id;
    this.http = http;
    this.commands = new Commands(this);
    this.files = new Files(this);
  }

  static async create(o: CreateOptions = {}): Promise<Sandbox> {
    const http = new Http(o);
    return new Sandbox(await http.json("POST", "/v1/sandboxes", { json: createBody(o) }), http);
  }

  static async connect(id: string, o: ConnectionOptions = {}): Promise<Sandbox> {
    const http = new Http(o);
    return new Sandbox(await http.json("GET", `/v1/sandboxes/${id}`), http);
  }

  static async list(o: ConnectionOptions & { labels?: Record<string, string> } = {}): Promise<any[]> {
    const http = new Http(o);
    const out: any[] = [];
    const label = o.labels ? Object.entries(o.labels).map(([k, v]) => `${k}=${v}`)[0] : undefined;
    let cursor: string | undefined;
    do {
      const page = await http.json("GET", "/v1/sandboxes", { query: { limit: "1000", label, cursor } });
      out.push(...page.sandboxes);
      cursor = page.next ?? undefined;
    } while (cursor);
    return out;
  }

  async refresh(): Promise<any> {
    this.info = await this.http.json("GET", `/v1/sandboxes/${this.id}`);
    return this.info;
  }
  async isRunning(): Promise<boolean> {
    try {
      return (await this.refresh()).state === "running";
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
  async pause(): Promise<void> {
    this.info = await this.http.json("POST", `/v1/sandboxes/${this.id}/pause`);
  }
  async resume(): Promise<void> {
    this.info = await this.http.json("POST", `/v1/sandboxes/${this.id}/resume`);
  }
  /** The sandbox now lives `seconds` more. */
  async setTimeout(seconds: number): Promise<void> {
    this.info = await this.http.json("POST", `/v1/sandboxes/${this.id}/timeout`, { json: { ttl_seconds: seconds } });
  }
  async setNetwork(mode: string, rules: string[] = []): Promise<void> {
    this.info = await this.http.json("PATCH", `/v1/sandboxes/${this.id}/network`, { json: { mode, rules } });
  }
  async snapshot(name?: string): Promise<Snapshot> {
    return new Snapshot(await this.http.json("POST", `/v1/sandboxes/${this.id}/snapshots`, { json: name ? { name } : {} }), this.http);
  }
  /** `count` new sandboxes with this one's files as they are now. */
  async fork(count = 1): Promise<Sandbox[]> {
    return (await this.snapshot()).fork(count);
  }
  ports(): Promise<any> {
    return this.http.json("GET", `/v1/sandboxes/${this.id}/ports`);
  }
  setPorts(o: { public?: boolean; rotateToken?: boolean }): Promise<any> {
    return this.http.json("PATCH", `/v1/sandboxes/${this.id}/ports`, { json: { public: o.public, rotate_token: !!o.rotateToken } });
  }
  /** The URL of `port` inside the sandbox (with its access token unless public). */
  async getUrl(port: number): Promise<string> {
    const v = await this.ports();
    let url: string = v.ports?.find((p: any) => p.port === port)?.url ?? String(v.url_template).replace("{port}", String(port));
    if (!v.public && v.token && !url.includes("aibox_token=")) url += (url.includes("?") ? "&" : "?") + `aibox_token=${v.token}`;
    return url;
  }
  /** Destroy the sandbox (idempotent). */
  async kill(): Promise<void> {
    try {
      await this.http.request("DELETE", `/v1/sandboxes/${this.id}`);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}

/** The server's templates. */
export class Templates {
  private readonly http: Http;
  constructor(o: ConnectionOptions = {}) {
    this.http = new Http(o);
  }
  async list(): Promise<any[]> {
    return (await this.http.json("GET", "/v1/templates")).templates;
  }
  get(name: string): Promise<any> {
    return this.http.json("GET", `/v1/templates/${encodeURI(name)}`);
  }
  pull(reference: string, o: { name?: string; insecure?: boolean } = {}): Promise<any> {
    return this.http.json("POST", "/v1/templates/pull", { json: { reference, name: o.name, insecure: !!o.insecure } });
  }
  async delete(name: string): Promise<void> {
    await this.http.request("DELETE", `/v1/templates/${encodeURI(name)}`);
  }
  prune(o: { buildCache?: boolean } = {}): Promise<any> {
    return this.http.json("POST", "/v1/templates/prune", { query: { build_cache: o.buildCache ? "true" : undefined } });
  }
  /** Import a `docker save` archive or an OCI layout tar. */
  importArchive(archive: Uint8Array, name?: string): Promise<any> {
    return this.http.json("POST", "/v1/templates/import", { body: archive, query: { name } });
  }
  /** Build from a build context as a tar (holding an aibox.toml or a Dockerfile). */
  async build(context: Uint8Array, name: string, o: { file?: string; noCache?: boolean; allow?: string[]; onEvent?: (e: any) => void } = {}): Promise<any> {
    const r = await this.http.request("POST", "/v1/templates/build", {
      body: context,
      query: { name, file: o.file, no_cache: o.noCache ? "true" : undefined, allow: o.allow?.join(",") },
    });
    let done: any;
    for (const line of (await r.text()).split("\n")) {
      if (!line.trim()) continue;
      const ev = JSON.parse(line);
      if (ev.type === "done") done = ev.template;
      else if (ev.type === "error") throw errorFrom(422, JSON.stringify({ error: { code: ev.code, message: ev.message } }));
      else o.onEvent?.(ev);
    }
    if (!done) throw new ConnectionError("the build ended without a result", "connection");
    return done;
  }
}
