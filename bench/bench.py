"""aibox benchmarks, side by side with peers in one run. Usage: bench.py AIBOX [--quick]

Every figure is measured in this run; ratios compare medians from this run.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

AIBOX = sys.argv[1]
QUICK = "--quick" in sys.argv
RUNS = 100 if QUICK else 400
BENCH_DIR = tempfile.mkdtemp(prefix="aibox-bench-")
os.chmod(BENCH_DIR, 0o711)
env = dict(os.environ, AIBOX_RUN_DIR=os.path.join(BENCH_DIR, "run"), AIBOX_LOCAL="1")
env.pop("AIBOX_LOG", None)
rows = []


def pct(ts, p):
    ts = sorted(ts)
    return ts[min(len(ts) - 1, int(len(ts) * p))]


def hyperfine(cmds, rounds=8, run_env=None):
    """Times of each command, in ms. The runs are split into rounds that take
    turns (A B C, A B C, ...), so drift on a busy VM hits every side alike
    instead of whichever block ran during it."""
    times = [[] for _ in cmds]
    for _ in range(rounds):
        out = tempfile.mktemp(suffix=".json")
        subprocess.run(["hyperfine", "-N", "-w", "10", "-r", str(max(RUNS // rounds, 2)),
                        "--export-json", out, *cmds],
                       check=True, env=run_env or env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for acc, r in zip(times, json.load(open(out))["results"]):
            acc.extend(t * 1000 for t in r["times"])
        os.unlink(out)
    return times


def row(bench, name, ts, base=None, unit="ms"):
    p50 = statistics.median(ts)
    ratio = f"{p50 / base:.2f}×" if base else ""
    rows.append((bench, name, f"{p50:.2f}", f"{pct(ts, .95):.2f}", f"{pct(ts, .99):.2f}", unit, ratio))
    return p50


def aibox(*args):
    return subprocess.run([AIBOX, *args], check=True, env=env, capture_output=True, text=True).stdout.strip()


def sandbox_pid(sid):
    """The host pid of a local sandbox's PID 1, from its runtime record."""
    with open(os.path.join(env["AIBOX_RUN_DIR"], "sandboxes", sid, "sandbox.json")) as f:
        return json.load(f)["pid"]


# 1. one-shot run with the full default isolation
bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
for l in ["bin", "sbin", "lib", "lib64"]:
    if os.path.islink("/" + l):
        bwrap += ["--symlink", os.readlink("/" + l), "/" + l]
bwrap += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]
a, b, t = hyperfine([f"{AIBOX} run -- /bin/true", " ".join(bwrap), "/bin/true"])
base = statistics.median(b)
ns_run = a
row("one-shot run of /bin/true", "aibox run (overlay, cgroups, seccomp, landlock)", a, base)
row("one-shot run of /bin/true", "bubblewrap --unshare-all", b, base)
row("one-shot run of /bin/true", "plain /bin/true", t, base)

# 2. exec into a running sandbox vs nsenter into the same namespaces
sid = aibox("create")
pid = sandbox_pid(sid)
e, n = hyperfine([f"{AIBOX} exec {sid} -- /bin/true", f"nsenter -t {pid} -a /bin/true"])
base = statistics.median(n)
row("exec /bin/true in a running sandbox", "aibox exec (through the agent)", e, base)
row("exec /bin/true in a running sandbox", "nsenter -a (same namespaces)", n, base)

# 3. idle memory: PSS of every host-side process of a sandbox (its PID 1)
def pss(p):
    for line in open(f"/proc/{p}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0

aibox("rm", sid)
# Fresh sandboxes that have served nothing yet.
ids = [aibox("create")]
time.sleep(0.5)
pids = [sandbox_pid(ids[0])]
one = pss(pids[0]) / 1024
ids += [aibox("create") for _ in range(9)]
time.sleep(0.5)
pids += [sandbox_pid(i) for i in ids[1:]]
ten = statistics.mean(pss(p) for p in pids) / 1024
rows.append(("idle sandbox memory (PSS)", "1 sandbox running", f"{one:.2f}", "", "", "MiB", ""))
rows.append(("idle sandbox memory (PSS)", "10 sandboxes running, mean", f"{ten:.2f}", "", "", "MiB", ""))
for i in ids:
    aibox("rm", i)

# 4. create -> first exec -> destroy, through the CLI
n = 50 if QUICK else 200
lat, ok = [], 0
t0 = time.perf_counter()
for _ in range(n):
    s = time.perf_counter()
    try:
        i = aibox("create")
        aibox("exec", i, "--", "/bin/true")
        lat.append((time.perf_counter() - s) * 1000)
        aibox("rm", i)
        ok += 1
    except subprocess.CalledProcessError:
        pass
churn = n / (time.perf_counter() - t0)
row("create → first exec (CLI)", f"success {ok}/{n}", lat)
rows.append(("churn", "create + exec + destroy per second (CLI, sequential)", f"{churn:.0f}", "", "", "/s", ""))

# 5. the REST server (aibox serve) on loopback, HTTP/1.1 keep-alive
import http.client, socket

srv_dir = os.path.join(BENCH_DIR, "server")
# An upstream on the host's loopback for the egress benchmarks.
import http.server, threading
SMALL, BIG = b"x" * 1024, os.urandom(64 << 20)
class Up(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = BIG if self.path.endswith("/big") else SMALL
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
up_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Up)
up_port = up_srv.server_address[1]
threading.Thread(target=up_srv.serve_forever, daemon=True).start()

srv = subprocess.Popen([AIBOX, "serve", "--listen", "127.0.0.1:0", "--data-dir", srv_dir,
                        "--max-sandboxes", "2000", "--memory-budget", "1t"],
                       env=dict(env, AIBOX_RATE_LIMIT="0", AIBOX_LOG="warn",
                                AIBOX_EGRESS_HOSTS="up.test=127.0.0.1"),
                       stderr=subprocess.PIPE, text=True)
addr = None
for line in srv.stderr:
    if line.startswith("aibox: listening on http://"):
        addr = line.strip().split("http://")[1]
        break
host, port = addr.rsplit(":", 1)
key = open(os.path.join(srv_dir, "admin.key")).read().strip()
conn = http.client.HTTPConnection(host, int(port))
conn.connect()
conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

def call(method, path, body=None, raw=False):
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None and not raw:
        body = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
    return data if raw or not data else json.loads(data)

n = 50 if QUICK else 200
tti, ok = [], 0
for _ in range(n):
    s = time.perf_counter()
    try:
        i = call("POST", "/v1/sandboxes", {"memory": "256m"})["id"]
        call("POST", f"/v1/sandboxes/{i}/exec", {"cmd": ["/bin/true"]})
        tti.append((time.perf_counter() - s) * 1000)
        ok += 1
        call("DELETE", f"/v1/sandboxes/{i}")
    except RuntimeError:
        pass
row("time to interactive (REST: create → first exec)", f"success {ok}/{n}", tti)

sid = call("POST", "/v1/sandboxes", {})["id"]
rec = json.load(open(os.path.join(srv_dir, "run", "sandboxes", sid, "sandbox.json")))
ex = []
for _ in range(RUNS):
    s = time.perf_counter()
    call("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": ["/bin/true"]})
    ex.append((time.perf_counter() - s) * 1000)
(nsn,) = hyperfine([f"nsenter -t {rec['pid']} -a /bin/true"])
base = statistics.median(nsn)
row("exec /bin/true round trip", "REST POST /exec (keep-alive)", ex, base)
row("exec /bin/true round trip", "nsenter -a (same namespaces)", nsn, base)

small = os.urandom(1024)
fio = []
for _ in range(RUNS):
    s = time.perf_counter()
    call("PUT", f"/v1/sandboxes/{sid}/files?path=/workspace/small", small, raw=True)
    assert call("GET", f"/v1/sandboxes/{sid}/files?path=/workspace/small", raw=True) == small
    fio.append((time.perf_counter() - s) * 1000)
row("1 KiB file write + read (REST)", "PUT then GET", fio)

big = os.urandom(64 << 20)
up, down = [], []
for _ in range(3 if QUICK else 5):
    s = time.perf_counter()
    call("PUT", f"/v1/sandboxes/{sid}/files?path=/workspace/big", big, raw=True)
    up.append(64 * 1.048576 / (time.perf_counter() - s))
    s = time.perf_counter()
    got = call("GET", f"/v1/sandboxes/{sid}/files?path=/workspace/big", raw=True)
    down.append(64 * 1.048576 / (time.perf_counter() - s))
    assert len(got) == len(big)
rows.append(("64 MiB file transfer (REST)", "upload (PUT), median", f"{statistics.median(up):.0f}", "", "", "MB/s", ""))
rows.append(("64 MiB file transfer (REST)", "download (GET), median", f"{statistics.median(down):.0f}", "", "", "MB/s", ""))
call("DELETE", f"/v1/sandboxes/{sid}")

m = 30 if QUICK else 100
t0 = time.perf_counter()
for _ in range(m):
    i = call("POST", "/v1/sandboxes", {"memory": "256m"})["id"]
    call("POST", f"/v1/sandboxes/{i}/exec", {"cmd": ["/bin/true"]})
    call("DELETE", f"/v1/sandboxes/{i}")
rows.append(("churn", "create + exec + destroy per second (REST, sequential)",
             f"{m / (time.perf_counter() - t0):.0f}", "", "", "/s", ""))

# Snapshots: a sandbox holding 64 MiB in one file plus 1000 small files.
src = call("POST", "/v1/sandboxes", {"memory": "512m"})["id"]
call("POST", f"/v1/sandboxes/{src}/exec", {"cmd": "mkdir -p /workspace/many && for i in $(seq 1000); do echo $i > /workspace/many/f$i; done && head -c 64M /dev/urandom > /workspace/big"})
src_pid = json.load(open(os.path.join(srv_dir, "run", "sandboxes", src, "sandbox.json")))["pid"]
k = 3 if QUICK else 10
snap_t, cp_t, snaps = [], [], []
# Each copy starts with no dirty pages: otherwise one pays for the
# writeback the one before left behind.
for _ in range(k):
    os.sync()
    s = time.perf_counter()
    snaps.append(call("POST", f"/v1/sandboxes/{src}/snapshots", {})["id"])
    snap_t.append((time.perf_counter() - s) * 1000)
    dst = os.path.join(BENCH_DIR, "cp-copy")
    os.sync()
    s = time.perf_counter()
    subprocess.run(["cp", "-a", "--sparse=always", f"/proc/{src_pid}/root/workspace", dst], check=True)
    cp_t.append((time.perf_counter() - s) * 1000)
    shutil.rmtree(dst)
base = statistics.median(cp_t)
row("snapshot (64 MiB + 1000 files)", "REST POST /snapshots (frozen copy)", snap_t, base)
row("snapshot (64 MiB + 1000 files)", "cp -a of the same files (host)", cp_t, base)
for sn in snaps[1:]:
    call("DELETE", f"/v1/snapshots/{sn}")
snap = snaps[0]
# Restore vs create, interleaved so drift hits both alike.
n = 20 if QUICK else 100
rtti, ctti, ok = [], [], 0
for _ in range(n):
    for restore in (True, False):
        s = time.perf_counter()
        if restore:
            i = call("POST", f"/v1/snapshots/{snap}/restore", {})["id"]
        else:
            i = call("POST", "/v1/sandboxes", {"memory": "256m"})["id"]
        call("POST", f"/v1/sandboxes/{i}/exec", {"cmd": ["/bin/true"]})
        (rtti if restore else ctti).append((time.perf_counter() - s) * 1000)
        ok += restore
        call("DELETE", f"/v1/sandboxes/{i}")
base = statistics.median(ctti)
row("time to interactive (REST: restore → first exec)", f"success {ok}/{n}", rtti, base)
row("time to interactive (REST: restore → first exec)", "create → first exec, same rounds", ctti, base)
fork_t = []
for _ in range(2 if QUICK else 5):
    s = time.perf_counter()
    made = call("POST", f"/v1/snapshots/{snap}/fork", {"count": 10})["sandboxes"]
    fork_t.append((time.perf_counter() - s) * 1000)
    for v in made:
        call("DELETE", f"/v1/sandboxes/{v['id']}")
row("fork 10 sandboxes from a snapshot (REST)", "whole request", fork_t)
call("DELETE", f"/v1/snapshots/{snap}")
call("DELETE", f"/v1/sandboxes/{src}")

# Volumes: what mounting costs a create (0, 1 and 5 volumes, interleaved),
# and cloning a volume that holds 64 MiB plus 1000 files against `cp -a` of
# the same files on the host.
for v in range(5):
    call("POST", "/v1/volumes", {"name": f"bench{v}", "size": "1g"})
n = 20 if QUICK else 100
vt = {0: [], 1: [], 5: []}
for _ in range(n):
    for k in (0, 1, 5):
        body = {"memory": "256m", "volumes": [{"name": f"bench{v}", "path": f"/v{v}"} for v in range(k)]}
        s = time.perf_counter()
        i = call("POST", "/v1/sandboxes", body)["id"]
        call("POST", f"/v1/sandboxes/{i}/exec", {"cmd": ["/bin/true"]})
        vt[k].append((time.perf_counter() - s) * 1000)
        call("DELETE", f"/v1/sandboxes/{i}")
base = statistics.median(vt[0])
row("time to interactive with volumes (REST)", "no volume", vt[0], base)
row("time to interactive with volumes (REST)", "1 volume", vt[1], base)
row("time to interactive with volumes (REST)", "5 volumes", vt[5], base)
w = call("POST", "/v1/sandboxes", {"memory": "512m", "volumes": [{"name": "bench0", "path": "/v"}]})["id"]
call("POST", f"/v1/sandboxes/{w}/exec", {"cmd": "mkdir -p /v/many && for i in $(seq 1000); do echo $i > /v/many/f$i; done && head -c 64M /dev/urandom > /v/big"})
call("DELETE", f"/v1/sandboxes/{w}")
vol_id = call("GET", "/v1/volumes/bench0")["id"]
data = os.path.join(srv_dir, "volumes", vol_id, "data")
k = 3 if QUICK else 10
clone_t, vcp_t = [], []
for j in range(k):
    os.sync()
    s = time.perf_counter()
    call("POST", "/v1/volumes/bench0/clone", {"name": f"bench-clone{j}"})
    clone_t.append((time.perf_counter() - s) * 1000)
    call("DELETE", f"/v1/volumes/bench-clone{j}")
    dst = os.path.join(BENCH_DIR, "vol-copy")
    os.sync()
    s = time.perf_counter()
    subprocess.run(["cp", "-a", "--sparse=always", data, dst], check=True)
    vcp_t.append((time.perf_counter() - s) * 1000)
    shutil.rmtree(dst)
base = statistics.median(vcp_t)
how = call("GET", "/v1/volumes/bench0")["quota"]["how"]
row("volume clone (64 MiB + 1000 files)", f"REST POST /clone ({'image, frozen' if 'ext4' in how else 'files'})", clone_t, base)
row("volume clone (64 MiB + 1000 files)", "cp -a of the same files (host)", vcp_t, base)
for v in range(5):
    call("DELETE", f"/v1/volumes/bench{v}")

# Egress: a request per connection through the sandbox's path (agent relay
# + egress proxy) and through tinyproxy, to the same upstream; and direct.
CLIENT = r'''
import json, socket, sys, time
proxy, host, port, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
times, size = [], 0
for _ in range(n):
    t = time.perf_counter()
    if proxy == "-":
        s = socket.create_connection(("127.0.0.1", port))
        req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    else:
        ph, pp = proxy.split(":")
        s = socket.create_connection((ph, int(pp)))
        req = f"GET http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req.encode())
    got = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
    s.close()
    times.append((time.perf_counter() - t) * 1000)
    size = got
print(json.dumps({"times": times, "bytes": size}))
'''
tp_conf = os.path.join(BENCH_DIR, "tinyproxy.conf")
open(tp_conf, "w").write("Port 18888\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\nLogLevel Critical\n")
tp = subprocess.Popen(["tinyproxy", "-d", "-c", tp_conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
eg = call("POST", "/v1/sandboxes", {"network": {"mode": "allowlist",
          "rules": [f"up.test:{up_port}", f"127.0.0.1:{up_port}"]}})["id"]
def host_client(proxy, host, path, n):
    out = subprocess.run(["python3", "-c", CLIENT, proxy, host, str(up_port), path, str(n)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)
def sandbox_client(path, n):
    r = call("POST", f"/v1/sandboxes/{eg}/exec", {"cmd": ["python3", "-c", CLIENT, "127.0.0.1:3128",
             "up.test", str(up_port), path, str(n)], "timeout_ms": 120000})
    return json.loads(r["stdout"])
k = 100 if QUICK else 400
lat = {"aibox": [], "tinyproxy": [], "direct": []}
for _ in range(4):  # interleaved rounds
    lat["aibox"] += sandbox_client("/small", k // 4)["times"]
    lat["tinyproxy"] += host_client("127.0.0.1:18888", "127.0.0.1", "/small", k // 4)["times"]
    lat["direct"] += host_client("-", "127.0.0.1", "/small", k // 4)["times"]
base = statistics.median(lat["direct"])
row("egress: 1 KiB request, new connection", "aibox (agent relay + egress proxy)", lat["aibox"], base)
row("egress: 1 KiB request, new connection", "tinyproxy (host)", lat["tinyproxy"], base)
row("egress: 1 KiB request, new connection", "direct (no proxy)", lat["direct"], base)
thr = {"aibox": [], "tinyproxy": [], "direct": []}
for _ in range(2 if QUICK else 3):
    r = sandbox_client("/big", 1)
    thr["aibox"].append(r["bytes"] / 1e6 / (r["times"][0] / 1000))
    r = host_client("127.0.0.1:18888", "127.0.0.1", "/big", 1)
    thr["tinyproxy"].append(r["bytes"] / 1e6 / (r["times"][0] / 1000))
    r = host_client("-", "127.0.0.1", "/big", 1)
    thr["direct"].append(r["bytes"] / 1e6 / (r["times"][0] / 1000))
for name, label in [("aibox", "aibox (agent relay + egress proxy)"), ("tinyproxy", "tinyproxy (host)"), ("direct", "direct (no proxy)")]:
    rows.append(("egress: 64 MiB download", label, f"{statistics.median(thr[name]):.0f}", "", "", "MB/s", ""))
tp.terminate()
tp.wait()
# Raw TCP through the L4 path (root: veth + nftables, each connection
# decided by the server and spliced), the same client without the proxy.
iso = call("GET", f"/v1/sandboxes/{eg}")["isolation"]
if iso.get("network") == "l4":
    # The upstream must be reachable from the link: a TEST-NET-2 address
    # on the host's loopback device.
    subprocess.run(["ip", "addr", "add", "198.51.100.9/32", "dev", "lo"], check=False)
    l4_srv = http.server.ThreadingHTTPServer(("198.51.100.9", 0), Up)
    l4_port = l4_srv.server_address[1]
    threading.Thread(target=l4_srv.serve_forever, daemon=True).start()
    call("PATCH", f"/v1/sandboxes/{eg}/network", {"mode": "allowlist",
         "rules": [f"up.test:{up_port}", f"127.0.0.1:{up_port}", f"198.51.100.9:{l4_port}"]})
    l4_lat = {"l4": [], "direct": []}
    for _ in range(4):
        r = call("POST", f"/v1/sandboxes/{eg}/exec", {"cmd": ["python3", "-c", CLIENT.replace('("127.0.0.1", port)', '("198.51.100.9", port)'),
                 "-", "198.51.100.9", str(l4_port), "/small", str(k // 4)], "timeout_ms": 120000})
        l4_lat["l4"] += json.loads(r["stdout"])["times"]
        out = subprocess.run(["python3", "-c", CLIENT.replace('("127.0.0.1", port)', '("198.51.100.9", port)'),
                              "-", "198.51.100.9", str(l4_port), "/small", str(k // 4)],
                             check=True, capture_output=True, text=True).stdout
        l4_lat["direct"] += json.loads(out)["times"]
    b4 = statistics.median(l4_lat["direct"])
    row("egress: raw TCP (L4), 1 KiB, new connection", "aibox (veth + nftables + per-connection check)", l4_lat["l4"], b4)
    row("egress: raw TCP (L4), 1 KiB, new connection", "direct from the host", l4_lat["direct"], b4)
    l4_srv.shutdown()
    subprocess.run(["ip", "addr", "del", "198.51.100.9/32", "dev", "lo"], check=False)
call("DELETE", f"/v1/sandboxes/{eg}")

# Published ports: a 1 KiB answer from a server inside a sandbox through the
# server's host routing, against the same server run on the host.
PORTSRV = r'''
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go as two writes
    def do_GET(self):
        b = b"x" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
'''
ps = call("POST", "/v1/sandboxes", {})["id"]
call("POST", f"/v1/sandboxes/{ps}/processes", {"cmd": ["python3", "-c", PORTSRV, "8000"]})
host_srv = subprocess.Popen(["python3", "-c", PORTSRV, "18080"])
for _ in range(200):
    if call("GET", f"/v1/sandboxes/{ps}/ports")["ports"]:
        break
    time.sleep(0.05)
ports = call("GET", f"/v1/sandboxes/{ps}/ports")
time.sleep(0.3)
def get_many(port, host, headers, n, keep):
    times = []
    c = None
    for _ in range(n):
        t = time.perf_counter()
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.request("GET", "/", headers=dict(headers, Host=host))
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        if not keep:
            c.close()
            c = None
        times.append((time.perf_counter() - t) * 1000)
    return times
phost = f"8000-{ps}.localhost:{port}"
tok = {"X-Aibox-Token": ports["token"]}
pl = {k2: [] for k2 in ["aibox-new", "host-new", "aibox-keep", "host-keep"]}
m = 100 if QUICK else 400
for _ in range(4):
    pl["aibox-new"] += get_many(int(port), phost, tok, m // 4, False)
    pl["host-new"] += get_many(18080, "127.0.0.1:18080", {}, m // 4, False)
    pl["aibox-keep"] += get_many(int(port), phost, tok, m // 4, True)
    pl["host-keep"] += get_many(18080, "127.0.0.1:18080", {}, m // 4, True)
bn, bk = statistics.median(pl["host-new"]), statistics.median(pl["host-keep"])
row("published port: 1 KiB GET, new connection", "aibox (host routing, token)", pl["aibox-new"], bn)
row("published port: 1 KiB GET, new connection", "same server on the host", pl["host-new"], bn)
row("published port: 1 KiB GET, keep-alive", "aibox (host routing, token)", pl["aibox-keep"], bk)
row("published port: 1 KiB GET, keep-alive", "same server on the host", pl["host-keep"], bk)
host_srv.terminate()
host_srv.wait()
call("DELETE", f"/v1/sandboxes/{ps}")

def rss_kib(p):
    for line in open(f"/proc/{p}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

# The MCP server: a run_command tool call over stdio (aibox mcp, raw
# JSON-RPC frames) against the same exec through REST (keep-alive).
mcp = subprocess.Popen([AIBOX, "mcp"], env=dict(env, AIBOX_URL=f"http://{addr}", AIBOX_KEY=key),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
def rpc(i, method, params=None):
    msg = {"jsonrpc": "2.0", "method": method}
    if i is not None:
        msg["id"] = i
    if params is not None:
        msg["params"] = params
    mcp.stdin.write(json.dumps(msg) + "\n")
    mcp.stdin.flush()
    if i is None:
        return None
    while True:
        r = json.loads(mcp.stdout.readline())
        if r.get("id") == i:
            return r
rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}})
rpc(None, "notifications/initialized")
first = rpc(2, "tools/call", {"name": "run_command", "arguments": {"command": "/bin/true"}})
msid = first["result"]["structuredContent"]["sandbox_id"]
mcp_t, rest_t = [], []
for k in range(RUNS // 2):
    s = time.perf_counter()
    r = rpc(3 + k, "tools/call", {"name": "run_command", "arguments": {"command": "/bin/true", "sandbox_id": msid}})
    mcp_t.append((time.perf_counter() - s) * 1000)
    assert r["result"]["structuredContent"]["exit_code"] == 0, r
    s = time.perf_counter()
    call("POST", f"/v1/sandboxes/{msid}/exec", {"cmd": "/bin/true"})
    rest_t.append((time.perf_counter() - s) * 1000)
mcp.stdin.close()
mcp.wait()
rb = statistics.median(rest_t)
row("run_command /bin/true (shell line), warm sandbox", "MCP tool call over stdio (aibox mcp)", mcp_t, rb)
row("run_command /bin/true (shell line), warm sandbox", "REST POST /exec (keep-alive)", rest_t, rb)

# The Python SDK over raw HTTP (httpx, keep-alive) for the same small exec.
venv_py = os.path.join(os.environ.get("AIBOX_TEST_VENV", "/var/tmp/aibox-test-venv"), "bin", "python")
here = os.path.dirname(os.path.abspath(__file__))
o = subprocess.run([venv_py, os.path.join(here, "sdk_overhead.py"), f"http://{addr}", key, str(RUNS // 2)],
                   env=dict(env, PYTHONPATH=os.path.join(here, "..", "sdk", "python")),
                   capture_output=True, text=True, check=True)
ov = json.loads(o.stdout)
rb = statistics.median(ov["raw"])
row("exec /bin/true from Python, warm sandbox", "aibox SDK sb.commands.run", ov["sdk"], rb)
row("exec /bin/true from Python, warm sandbox", "raw httpx POST /exec (keep-alive)", ov["raw"], rb)
if shutil.which("node") and os.path.exists(os.path.join(here, "..", "sdk", "typescript", "dist", "esm", "index.js")):
    o = subprocess.run(["node", os.path.join(here, "sdk_overhead.mjs"), f"http://{addr}", key, str(RUNS // 2)],
                       env=env, capture_output=True, text=True, check=True)
    ov = json.loads(o.stdout)
    rb = statistics.median(ov["raw"])
    row("exec /bin/true from Node.js, warm sandbox", "@aibox/sdk sb.commands.run", ov["sdk"], rb)
    row("exec /bin/true from Node.js, warm sandbox", "raw fetch POST /exec (keep-alive)", ov["raw"], rb)

idle_n = 100 if QUICK else 1000
rss0 = rss_kib(srv.pid)
idle = [call("POST", "/v1/sandboxes", {"memory": "64m"})["id"] for _ in range(idle_n)]
time.sleep(1)
pids = [json.load(open(os.path.join(srv_dir, "run", "sandboxes", i, "sandbox.json")))["pid"] for i in idle]
per = statistics.mean(pss(p) for p in pids) / 1024
rss1 = rss_kib(srv.pid)
rows.append((f"{idle_n} idle sandboxes (REST)", "server RSS before → after", f"{rss0 / 1024:.1f} → {rss1 / 1024:.1f}", "", "", "MiB", ""))
rows.append((f"{idle_n} idle sandboxes (REST)", "per-sandbox PSS, mean", f"{per:.2f}", "", "", "MiB", ""))
# The dashboard with 500 sandboxes listed (100 in a quick run), in headless
# Chromium, against the list call it makes.
listed = min(500, idle_n)
for i in idle[listed:]:
    call("DELETE", f"/v1/sandboxes/{i}")
idle = idle[:listed]
ui_ready = os.path.exists(os.path.join(here, "..", "ui", "node_modules", "playwright-core"))
if shutil.which("node") and os.path.exists("/usr/bin/chromium") and ui_ready:
    o = subprocess.run(["node", os.path.join(here, "dashboard.mjs"), f"http://{addr}", key, str(10 if QUICK else 20)],
                       env=env, capture_output=True, text=True)
    if o.returncode == 0:
        d = json.loads(o.stdout)
        what = f"dashboard, {d['rows']} sandboxes listed ({d['bytes'] // 1024} KiB of JSON)"
        base = statistics.median(d["list_api"])
        row(what, "GET /v1/sandboxes from Node (the page's call)", d["list_api"], base)
        row(what, "Sandboxes page: route change → every row drawn", d["list_page"], base)
        row(what, "Overview page: route change → cards drawn", d["overview_page"], base)
    else:
        print("dashboard bench failed:", o.stderr[-2000:], file=sys.stderr)
else:
    print("SKIP dashboard bench: needs node, /usr/bin/chromium and ui/node_modules (npm ci in ui/)", file=sys.stderr)
for i in idle:
    call("DELETE", f"/v1/sandboxes/{i}")
conn.close()
srv.terminate()
srv.wait()

# 6. templates: pull + unpack of one image from a registry on loopback,
# aibox versus skopeo copy + umoci unpack; and a run from a ~1 GiB template
# versus from the built-in host template.
MAKE_IMAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "aibox-cli", "tests", "make_image.py")
tdata = os.path.join(BENCH_DIR, "tdata")
tenv = dict(env, AIBOX_DATA_DIR=tdata)
reg_port = 0
with socket.socket() as so:
    so.bind(("127.0.0.1", 0))
    reg_port = so.getsockname()[1]
reg_dir = os.path.join(BENCH_DIR, "registry")
os.makedirs(reg_dir)
open(os.path.join(reg_dir, "config.yml"), "w").write(
    f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {reg_dir}/data\nhttp:\n  addr: 127.0.0.1:{reg_port}\n")
reg = subprocess.Popen(["docker-registry", "serve", os.path.join(reg_dir, "config.yml")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", reg_port)).close()
        break
    except OSError:
        time.sleep(0.05)
img = os.path.join(BENCH_DIR, "img")
subprocess.run(["python3", MAKE_IMAGE, img, "1", "--extra", "/usr/lib/python3"], check=True)
ref = f"127.0.0.1:{reg_port}/bench/py:1"
subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{img}:1", f"docker://{ref}"],
               check=True, capture_output=True)
img_bytes = sum(os.path.getsize(os.path.join(img, "blobs/sha256", f)) for f in os.listdir(os.path.join(img, "blobs/sha256")))
pulls = {"aibox": [], "skopeo": []}
for i in range(3 if QUICK else 5):
    t = time.perf_counter()
    subprocess.run([AIBOX, "template", "pull", ref, "--name", "bench/py:1"], check=True, env=tenv, capture_output=True)
    pulls["aibox"].append((time.perf_counter() - t) * 1000)
    subprocess.run([AIBOX, "template", "rm", "bench/py:1"], check=True, env=tenv, capture_output=True)
    subprocess.run([AIBOX, "template", "prune"], check=True, env=tenv, capture_output=True)
    d = os.path.join(BENCH_DIR, f"sk{i}")
    os.makedirs(d)
    t = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/layout:1"], check=True, capture_output=True)
    subprocess.run(["umoci", "unpack", "--image", f"{d}/layout:1", f"{d}/bundle"], check=True, capture_output=True)
    pulls["skopeo"].append((time.perf_counter() - t) * 1000)
    shutil.rmtree(d, ignore_errors=True)
what = f"pull + unpack, {img_bytes / 1e6:.0f} MB image (3 layers) from a loopback registry"
pb = statistics.median(pulls["skopeo"])
row(what, "aibox template pull", pulls["aibox"], pb)
row(what, "skopeo copy + umoci unpack", pulls["skopeo"], pb)
reg.terminate()
reg.wait()
# A ~1 GiB template (a plain layer of 16 x 64 MiB files) against host.
bigsrc = os.path.join(BENCH_DIR, "big")
os.makedirs(bigsrc)
for k in range(16):
    with open(os.path.join(bigsrc, f"f{k}"), "wb") as f:
        f.write(os.urandom(64 << 20))
bigimg = os.path.join(BENCH_DIR, "bigimg")
subprocess.run(["python3", MAKE_IMAGE, bigimg, "1", "--extra-plain", bigsrc], check=True)
shutil.rmtree(bigsrc, ignore_errors=True)
subprocess.run([AIBOX, "template", "import", bigimg, "--name", "bench/big:1"], check=True, env=tenv, capture_output=True)
shutil.rmtree(bigimg, ignore_errors=True)
big, host = hyperfine([f"{AIBOX} run --template bench/big:1 -- /bin/true", f"{AIBOX} run -- /bin/true"], rounds=4, run_env=tenv)
big_size = json.loads(subprocess.run([AIBOX, "template", "inspect", "bench/big:1"], check=True, env=tenv,
                                     capture_output=True, text=True).stdout)
gib = sum(l["unpacked_bytes"] for l in big_size["layers"]) / (1 << 30)
row("one-shot run by template size", f"aibox run, {gib:.2f} GiB OCI template", big, statistics.median(host))
row("one-shot run by template size", "aibox run, host template", host, statistics.median(host))
subprocess.run([AIBOX, "template", "rm", "bench/big:1"], env=tenv, capture_output=True)
subprocess.run([AIBOX, "template", "prune"], env=tenv, capture_output=True)

# 7. builds: the same Dockerfile (FROM scratch, busybox, two RUN and two
# COPY steps) built by aibox and by buildah (overlay storage, chroot
# isolation: its lightest), cold (no cache) and again with a warm cache.
bctx = os.path.join(BENCH_DIR, "bctx")
os.makedirs(os.path.join(bctx, "app"))
shutil.copy("/bin/busybox", os.path.join(bctx, "busybox"))
with open(os.path.join(bctx, "app", "data"), "wb") as f:
    f.write(os.urandom(1 << 20))
open(os.path.join(bctx, "Dockerfile"), "w").write(
    "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
    "COPY app /app\nRUN [\"/bin/sh\", \"-c\", \"cd /app && for i in 1 2 3; do cat data > out$i; done\"]\n"
    "ENV MODE=bench\nWORKDIR /app\n")
bh = ["buildah", "--root", os.path.join(BENCH_DIR, "buildah"), "--runroot", os.path.join(BENCH_DIR, "buildah-run"),
      "--storage-driver", "overlay"]
builds = {"aibox cold": [], "buildah cold": [], "aibox warm": [], "buildah warm": []}
def timed(key, cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=tenv, capture_output=True)
    builds[key].append((time.perf_counter() - t) * 1000)
for i in range(3 if QUICK else 5):
    timed("aibox cold", [AIBOX, "template", "build", "--no-cache", "-t", "bench/b:1", bctx])
    timed("buildah cold", bh + ["build", "--isolation", "chroot", "--layers", "--no-cache", "-q", "-t", "bench/b:1", bctx])
for i in range(10 if QUICK else 30):
    timed("aibox warm", [AIBOX, "template", "build", "-t", "bench/b:1", bctx])
    timed("buildah warm", bh + ["build", "--isolation", "chroot", "--layers", "-q", "-t", "bench/b:1", bctx])
for kind in ["cold", "warm"]:
    what = f"template build, 7 steps, {kind} cache"
    base = statistics.median(builds[f"buildah {kind}"])
    row(what, "aibox template build", builds[f"aibox {kind}"], base)
    row(what, "buildah build (overlay, chroot)", builds[f"buildah {kind}"], base)
subprocess.run(bh + ["rmi", "--all", "--force"], capture_output=True)
subprocess.run(["umount", "-R", os.path.join(BENCH_DIR, "buildah", "overlay")], capture_output=True)
subprocess.run([AIBOX, "template", "rm", "bench/b:1"], env=tenv, capture_output=True)
subprocess.run([AIBOX, "template", "prune", "--build-cache"], env=tenv, capture_output=True)

# 8. microVM: boot to the guest's ready line under QEMU microvm with TCG,
# then sandboxes on the microvm backend (create → first exec, exec round
# trip, snapshot with memory, restore), each beside the namespace backend
# measured in this same run on the same image template.
def ms_since(t):
    return (time.perf_counter() - t) * 1000

if shutil.which("qemu-system-x86_64") and shutil.which("apt-get") and os.path.exists("/bin/busybox"):
    vmdir = os.path.join(BENCH_DIR, "vm")
    o = subprocess.run([AIBOX, "vm", "artifacts", "--dir", vmdir, "--json"], env=dict(env, AIBOX_BIN=AIBOX),
                       capture_output=True, text=True)
    if o.returncode == 0:
        size = json.loads(o.stdout)["initramfs"]["bytes"] >> 20
        boots = []
        for i in range(3 if QUICK else 8):
            p = subprocess.run([AIBOX, "vm", "probe", "--dir", vmdir, "--json"], env=env, capture_output=True, text=True)
            if p.returncode == 0:
                boots.append(json.loads(p.stdout)["ready_ms"])
        if boots:
            what = f"microVM boot to guest ready (QEMU microvm, TCG; {size} MiB initramfs)"
            nb = statistics.median(ns_run)
            row(what, "aibox vm probe: VMM start → guest init ready", boots, nb)
            row(what, "namespace backend: aibox run /bin/true (same run)", ns_run, nb)
        # Sandboxes on both backends, from the busybox test image.
        img = os.path.join(BENCH_DIR, "vm-image")
        subprocess.run(["python3", os.path.join(os.path.dirname(__file__), "..", "crates", "aibox-cli", "tests",
                                                "make_image.py"), img], check=True, capture_output=True)
        venv = dict(env, AIBOX_BIN=AIBOX)
        subprocess.run([AIBOX, "template", "import", img, "--name", "bench/vm:1"], env=venv, check=True,
                       capture_output=True)
        # A first microVM outside the figures: it builds the guest artifacts
        # for this binary and the template's layer images (cached after).
        w = subprocess.run([AIBOX, "create", "--backend", "microvm", "--template", "bench/vm:1", "--memory", "256m"],
                           env=venv, check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run([AIBOX, "rm", w], env=venv, capture_output=True)
        # The vsock transport (no network device in the guest), when
        # vhost-device-vsock is installed (scripts/setup.sh builds it).
        kinds = ["namespaces", "microvm"]
        if shutil.which("vhost-device-vsock") or os.path.exists("/usr/local/bin/vhost-device-vsock"):
            kinds.append("microvm-vsock")
        first = {k: [] for k in kinds}
        execs = {k: [] for k in kinds}
        snaps, restores = [], []
        for i in range(3 if QUICK else 5):
            for backend in kinds:
                kenv = dict(venv, AIBOX_VM_TRANSPORT="vsock") if backend == "microvm-vsock" else venv
                t = time.perf_counter()
                sid = subprocess.run([AIBOX, "create", "--backend", backend.split("-")[0], "--template",
                                      "bench/vm:1", "--memory", "256m"], env=kenv, check=True, capture_output=True,
                                     text=True).stdout.strip()
                subprocess.run([AIBOX, "exec", sid, "--", "/bin/true"], env=kenv, check=True, capture_output=True)
                first[backend].append(ms_since(t))
                for _ in range(10):
                    t = time.perf_counter()
                    subprocess.run([AIBOX, "exec", sid, "--", "/bin/true"], env=kenv, check=True, capture_output=True)
                    execs[backend].append(ms_since(t))
                if backend == "microvm" and i < 3:
                    t = time.perf_counter()
                    snap = subprocess.run([AIBOX, "snapshot", "create", sid], env=venv, check=True,
                                          capture_output=True, text=True).stdout.strip()
                    snaps.append(ms_since(t))
                    t = time.perf_counter()
                    rid = subprocess.run([AIBOX, "restore", snap], env=venv, check=True, capture_output=True,
                                         text=True).stdout.strip()
                    subprocess.run([AIBOX, "exec", rid, "--", "/bin/true"], env=venv, check=True, capture_output=True)
                    restores.append(ms_since(t))
                    subprocess.run([AIBOX, "rm", rid], env=venv, capture_output=True)
                    subprocess.run([AIBOX, "snapshot", "rm", snap], env=venv, capture_output=True)
                subprocess.run([AIBOX, "rm", sid], env=venv, capture_output=True)
        what = "create → first exec, busybox image (microVM: TCG, 256 MiB)"
        nb = statistics.median(first["namespaces"])
        row(what, "aibox create --backend microvm + exec", first["microvm"], nb)
        if "microvm-vsock" in first:
            row(what, "the same over vsock (AIBOX_VM_TRANSPORT=vsock, vhost-device-vsock)", first["microvm-vsock"], nb)
        row(what, "aibox create --backend namespaces + exec (same run)", first["namespaces"], nb)
        what = "exec /bin/true in a running sandbox, by backend (CLI)"
        nb = statistics.median(execs["namespaces"])
        row(what, "microvm (agent through the VMM's forwarded port)", execs["microvm"], nb)
        if "microvm-vsock" in execs:
            row(what, "microvm over vsock (hybrid vsock through vhost-device-vsock)", execs["microvm-vsock"], nb)
        row(what, "namespaces (same run)", execs["namespaces"], nb)
        if snaps:
            what = "microVM snapshot with memory, and restore → first exec (TCG, 256 MiB)"
            nb = statistics.median(first["microvm"])
            row(what, "aibox snapshot create (migration to a file + disk)", snaps, nb)
            row(what, "aibox restore + exec (vs a cold create + exec above)", restores, nb)
        subprocess.run([AIBOX, "template", "rm", "bench/vm:1"], env=venv, capture_output=True)
    else:
        print("SKIP microVM bench:", o.stderr[-500:], file=sys.stderr)
else:
    print("SKIP microVM bench: needs qemu-system-x86_64, apt-get and /bin/busybox", file=sys.stderr)

# One-shot runs keep an idle per-slot cgroup for the next run: remove it.
subprocess.run([AIBOX, "gc"], env=env, capture_output=True)
shutil.rmtree(BENCH_DIR, ignore_errors=True)
kernel = os.uname().release
lines = [
    f"# aibox benchmarks ({time.strftime('%Y-%m-%d')}, kernel {kernel}, {os.cpu_count()} CPUs, {RUNS} runs each, in interleaved rounds)",
    "",
    "| benchmark | what | p50 | p95 | p99 | unit | ratio (p50 vs peer) |",
    "|---|---|---|---|---|---|---|",
] + [f"| {' | '.join(r)} |" for r in rows]
text = "\n".join(lines) + "\n"
print(text)
if not QUICK:
    open(os.path.join(os.path.dirname(__file__), "results", "latest.md"), "w").write(text)
