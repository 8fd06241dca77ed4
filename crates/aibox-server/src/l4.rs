//! L4 egress (root): any TCP, checked per connection against the same
//! rules as the HTTP proxy, and DNS answered only for allowed names.
//!
//! Each sandbox with network gets a veth pair: `abx<id>` on the host with
//! `10.87.x.1/30`, `eth0` inside with `.2` and a default route through it.
//! An nftables table of its own (`inet abx<id>`) then
//! * hands every TCP connection from the sandbox to a listener of the
//!   server on the host side (DNAT), which reads where it was going
//!   (`SO_ORIGINAL_DST`), decides with the policy — by the names the
//!   sandbox resolved to that address, else by the address — and either
//!   connects and splices, or resets the connection;
//! * hands every DNS query (UDP port 53, whatever server it names) to the
//!   server's resolver for the sandbox, which answers only names the rules
//!   allow, from the host's resolver, and remembers the answers for the
//!   TCP check;
//! * drops everything else from the sandbox: to the host, and forwarded
//!   (in `full` mode, UDP and ICMP are forwarded with NAT, never to a
//!   local address).
//!
//! The server never routes a sandbox's TCP itself: each connection is a
//! new one from the host, so the local-address protections (and DNS
//! rebinding checks) of the proxy apply unchanged.

use crate::resolver::{Event, Resolve};
use aibox_types::egress::{Mode, Policy};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The block links are carved from: 16384 /30s.
const SUBNET: (u8, u8) = (10, 87);
/// How long an answer is remembered for the TCP check (clients cache
/// answers far longer than their TTL).
const REMEMBER: Duration = Duration::from_secs(3600);
/// Most names remembered per sandbox.
const MAX_NAMES: usize = 4096;
const DNS_TTL: u32 = 60;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host side of a sandbox's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifname: String,
    pub host_ip: Ipv4Addr,
    pub guest_ip: Ipv4Addr,
}

pub fn ifname(id: &str) -> String {
    format!("abx{id}")
}

fn tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Where per-connection checks happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// A veth link into the host, with a table in the host's nftables
    /// (root).
    Host,
    /// nftables inside the sandbox's own namespace sends TCP and DNS to
    /// the agent, which asks the server over the egress socket (rootless:
    /// the server owns the sandbox's user namespace, so it may configure
    /// its network namespace).
    Agent,
}

/// Can this host give sandboxes L4 egress, and how? Err says why not.
pub fn support() -> Result<Path, String> {
    static CACHE: OnceLock<Result<Path, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            for t in ["ip", "nft"] {
                if tool(t).is_none() {
                    return Err(format!(
                        "per-connection egress checks need `{t}` (Debian: iproute2, nftables)"
                    ));
                }
            }
            if aibox_runtime::Runtime::new().rootless() {
                return Ok(Path::Agent);
            }
            run("nft", &["list", "tables"], None)
                .map(|_| Path::Host)
                .map_err(|e| format!("nftables does not work here: {e}"))
        })
        .clone()
}

/// The sandbox-side address of the agent path's link (a veth pair whose
/// both ends stay inside: it only gives connections a route, so nftables
/// sees them).
pub const INSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);

/// Set up the agent path in the network namespace of `pid` (again after a
/// restart: the link is kept, the table replaced).
pub fn attach_inside(pid: i32) -> Result<(), String> {
    if in_sandbox(pid, "ip", &["-o", "link", "show", "abx0"], None).is_err() {
        in_sandbox(
            pid,
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link add abx0 type veth peer name abx1\naddr add {INSIDE_ADDR}/32 dev abx0\nlink set abx0 up\nlink set abx1 up\nroute add default dev abx0\n"
            )),
        )?;
    }
    in_sandbox(pid, "nft", &["-f", "-"], Some(&inside_ruleset())).map(|_| ())
}

/// Run a network tool in the network namespace of the sandbox whose PID 1
/// is `pid`, through our own binary: it joins the sandbox's user and
/// network namespaces and runs the tool with CAP_NET_ADMIN there (nsenter
/// cannot without root: our uid inside is not 0, so exec would drop the
/// capabilities).
fn in_sandbox(
    pid: i32,
    tool_name: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| format!("finding the aibox binary: {e}"))?;
    let t = tool(tool_name).ok_or_else(|| format!("{tool_name} is not installed"))?;
    let (me, t, target) = (
        me.to_string_lossy().into_owned(),
        t.to_string_lossy().into_owned(),
        pid.to_string(),
    );
    let mut argv = vec!["internal-netns", target.as_str(), "--", t.as_str()];
    argv.extend_from_slice(args);
    run_path(&me, &argv, stdin)
}

/// The table inside a sandbox for the agent path.
pub fn inside_ruleset() -> String {
    let (tcp, dns) = (aibox_types::L4_TCP_PORT, aibox_types::L4_DNS_PORT);
    format!(
        "table inet aibox
delete table inet aibox
table inet aibox {{
  chain nat_out {{
    type nat hook output priority -100; policy accept;
    meta l4proto tcp ip daddr != 127.0.0.0/8 redirect to :{tcp}
    udp dport 53 redirect to :{dns}
  }}
  chain out {{
    type filter hook output priority 0; policy accept;
    oifname \"lo\" accept
    ct status dnat accept
    drop
  }}
}}
"
    )
}

/// The report of a sandbox with the agent path.
pub fn agent_report(mode: Mode) -> aibox_types::egress::EgressReport {
    let mut r = aibox_types::egress::l4_report(mode);
    r.udp = false;
    r.summary = "HTTP and HTTPS go through the aibox egress proxy; any other TCP connection is handed by nftables inside the sandbox to its agent and checked against the same rules by the server; DNS answers only names the rules allow; no other UDP leaves (without root there is no NAT).".into();
    r
}

/// Run a tool; its stderr is the error.
fn run(name: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let path = tool(name).ok_or_else(|| format!("{name} is not installed"))?;
    run_path(&path.to_string_lossy(), args, stdin)
}

fn run_path(path: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut child = Command::new(path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes())
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Addresses of the links that exist now, by interface name.
fn links() -> HashMap<String, Ipv4Addr> {
    let out = run("ip", &["-4", "-o", "addr", "show"], None).unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.nth(1)?.to_string();
            let addr = f.nth(1)?.split('/').next()?.parse().ok()?;
            name.starts_with("abx").then_some((name, addr))
        })
        .collect()
}

/// The link of sandbox `id`, if it has one (after a server restart).
pub fn find(id: &str) -> Option<Link> {
    let name = ifname(id);
    let host_ip = *links().get(&name)?;
    Some(Link {
        guest_ip: Ipv4Addr::from(u32::from(host_ip) + 1),
        host_ip,
        ifname: name,
    })
}

/// Make the veth pair into the network namespace of `pid` and address it.
pub fn attach(id: &str, pid: i32) -> Result<Link, String> {
    // One at a time on this host (every server here draws from the same
    // block): the free /30 is chosen from what exists.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let _host = host_lock()?;
    let name = ifname(id);
    let used: std::collections::HashSet<Ipv4Addr> = links().into_values().collect();
    let host_ip = (1u32..16384)
        .map(|i| Ipv4Addr::new(SUBNET.0, SUBNET.1, ((i * 4) >> 8) as u8, (i * 4 + 1) as u8))
        .find(|ip| !used.contains(ip))
        .ok_or("every L4 link address is in use")?;
    let guest_ip = Ipv4Addr::from(u32::from(host_ip) + 1);
    let pid_s = pid.to_string();
    run(
        "ip",
        &[
            "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &pid_s,
        ],
        None,
    )?;
    let done = (|| {
        // No IPv6 on the link: nothing would route it, and it would only
        // chatter (router solicitations) into the drop rules.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "addr add {host_ip}/30 dev {name}\nlink set {name} up\n"
            )),
        )?;
        in_sandbox(
            pid,
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "addr add {guest_ip}/30 dev eth0\nlink set eth0 up\nroute add default via {host_ip}\n"
            )),
        )
        .map(|_| ())
    })();
    if let Err(e) = done {
        let _ = run("ip", &["link", "del", &name], None);
        return Err(e);
    }
    Ok(Link {
        ifname: name,
        host_ip,
        guest_ip,
    })
}

/// A lock every server on this host takes while it picks an address.
fn host_lock() -> Result<std::fs::File, String> {
    use std::os::fd::AsFd;
    let path = if std::path::Path::new("/run").is_dir() {
        "/run/aibox-l4.lock"
    } else {
        "/tmp/aibox-l4.lock"
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match aibox_sys::try_lock_exclusive(f.as_fd()) {
            Ok(true) => return Ok(f),
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(false) => return Err(format!("{path} stayed locked for 10 s")),
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
}

/// The nftables table of one sandbox (replaced as a whole, atomically).
pub fn ruleset(link: &Link, mode: Mode, tcp_port: u16, dns_port: u16) -> String {
    let Link {
        ifname: i,
        host_ip: h,
        guest_ip: g,
    } = link;
    // Local destinations never get forwarded packets (full mode).
    let local = "{ 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, 224.0.0.0/3 }";
    let forward = if mode == Mode::Full {
        format!(
            "iifname \"{i}\" ip daddr {local} drop\n    iifname \"{i}\" ip saddr {g} meta l4proto {{ udp, icmp }} accept\n    iifname \"{i}\" drop\n    oifname \"{i}\" ct state established,related accept\n    oifname \"{i}\" drop"
        )
    } else {
        format!("iifname \"{i}\" drop\n    oifname \"{i}\" drop")
    };
    let nat = if mode == Mode::Full {
        format!("iifname \"{i}\" ip saddr {g} masquerade")
    } else {
        String::new()
    };
    format!(
        "table inet {i}
delete table inet {i}
table inet {i} {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"{i}\" udp dport 53 dnat ip to {h}:{dns_port}
    iifname \"{i}\" meta l4proto tcp dnat ip to {h}:{tcp_port}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"{i}\" ip daddr {h} tcp dport {tcp_port} accept
    iifname \"{i}\" ip daddr {h} udp dport {dns_port} accept
    iifname \"{i}\" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    {forward}
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    {nat}
  }}
}}
"
    )
}

pub fn apply(script: &str) -> Result<(), String> {
    run("nft", &["-f", "-"], Some(script)).map(|_| ())
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Present while aibox has IPv4 forwarding on that the host had off (one
/// file for every server on the host: the setting is host-wide).
const FORWARD_MARK: &str = "/run/aibox-ip-forward";
/// While aibox has forwarding on, the host forwards only to and from
/// sandbox links: it never becomes a router for its other networks.
const FENCE: &str = "table inet aibox-fence
delete table inet aibox-fence
table inet aibox-fence {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname != \"abx*\" oifname != \"abx*\" drop
  }
}
";

/// One host-wide lock for turning forwarding on and off (every aibox
/// server of the host takes it), held while the returned file lives.
fn forwarding_lock() -> Result<std::fs::File, String> {
    use std::os::fd::AsFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/aibox-ip-forward.lock")
        .map_err(|e| format!("opening the forwarding lock: {e}"))?;
    aibox_sys::lock_exclusive(f.as_fd()).map_err(|e| format!("taking the forwarding lock: {e}"))?;
    Ok(f)
}

/// Full mode forwards UDP and ICMP: the host must route. A host that had
/// forwarding off gets it on only for sandbox links (the fence), and gets
/// it back off when the last link goes ([`restore_forwarding`]; the
/// review's L9: it was turned on host-wide for good).
pub fn enable_forwarding() -> Result<(), String> {
    let _lock = forwarding_lock()?;
    if std::fs::read_to_string(IP_FORWARD).is_ok_and(|v| v.trim() != "0") {
        return Ok(());
    }
    tracing::info!("enabling IPv4 forwarding for sandbox links (full network mode)");
    std::fs::write(FORWARD_MARK, "0\n").map_err(|e| format!("writing {FORWARD_MARK}: {e}"))?;
    apply(FENCE)?;
    std::fs::write(IP_FORWARD, "1").map_err(|e| format!("enabling IPv4 forwarding: {e}"))
}

/// Turn forwarding off again if aibox turned it on and no sandbox link
/// is left on the host.
pub fn restore_forwarding() {
    if !std::path::Path::new(FORWARD_MARK).exists() {
        return;
    }
    // Under the lock enable_forwarding takes, so a sandbox that made its
    // link meanwhile either shows here or turns forwarding on again after.
    let Ok(_lock) = forwarding_lock() else {
        return;
    };
    if !std::path::Path::new(FORWARD_MARK).exists() || !links().is_empty() {
        return;
    }
    tracing::info!("no sandbox link left: IPv4 forwarding back off");
    let _ = std::fs::write(IP_FORWARD, "0");
    let _ = run("nft", &["delete", "table", "inet", "aibox-fence"], None);
    let _ = std::fs::remove_file(FORWARD_MARK);
}

/// Remove a sandbox's table and link (the link usually went with its
/// network namespace already).
pub fn detach(id: &str) {
    let name = ifname(id);
    let _ = run("nft", &["delete", "table", "inet", &name], None);
    let _ = run("ip", &["link", "del", &name], None);
    restore_forwarding();
}

/// Remove the tables of links that are gone. A link lives exactly as long
/// as its sandbox's network namespace (the pair dies with it), so a table
/// without its link is stale, whichever server made it; live links are
/// never touched (other servers on this host may own them).
pub fn gc() {
    if support() != Ok(Path::Host) {
        return;
    }
    let tables = run("nft", &["list", "tables"], None).unwrap_or_default();
    let live = links();
    for name in tables
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|n| n.starts_with("abx"))
    {
        if !live.contains_key(name) {
            let _ = run("nft", &["delete", "table", "inet", name], None);
        }
    }
    restore_forwarding();
}

/// What the sandbox resolved: address → names, for the TCP check.
#[derive(Default)]
pub struct Names(
    Mutex<HashMap<Ipv4Addr, Vec<(String, Instant)>>>,
    /// Names refused lately: a resolver asks several times (A, AAAA,
    /// retries), and one refusal is one event.
    Mutex<HashMap<String, Instant>>,
);

/// Repeated refusals of one name within this are one event.
const REFUSAL_WINDOW: Duration = Duration::from_secs(2);

impl Names {
    /// Should a refusal of `name` be reported now?
    fn first_refusal(&self, name: &str) -> bool {
        let mut m = self.1.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if m.len() >= MAX_NAMES {
            m.retain(|_, t| now.duration_since(*t) < REFUSAL_WINDOW);
        }
        match m.get(name) {
            Some(t) if now.duration_since(*t) < REFUSAL_WINDOW => false,
            _ => {
                m.insert(name.to_string(), now);
                true
            }
        }
    }

    fn remember(&self, name: &str, addrs: &[Ipv4Addr]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if m.len() >= MAX_NAMES {
            m.retain(|_, v| {
                v.retain(|(_, t)| now.duration_since(*t) < REMEMBER);
                !v.is_empty()
            });
        }
        for ip in addrs {
            let v = m.entry(*ip).or_default();
            v.retain(|(n, _)| n != name);
            v.push((name.to_string(), now));
        }
    }

    pub fn of(&self, ip: Ipv4Addr) -> Vec<String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        m.get(&ip)
            .map(|v| {
                v.iter()
                    .filter(|(_, t)| now.duration_since(*t) < REMEMBER)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub type Report = Arc<dyn Fn(Event) + Send + Sync>;

/// Answer the sandbox's DNS queries.
pub async fn serve_dns(
    sock: tokio::net::UdpSocket,
    policy: Arc<RwLock<Policy>>,
    names: Arc<Names>,
    resolver: Arc<dyn Resolve>,
    report: Report,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let msg = buf[..n].to_vec();
        let (sock, policy, names, resolver, report) = (
            sock.clone(),
            policy.clone(),
            names.clone(),
            resolver.clone(),
            report.clone(),
        );
        tokio::spawn(async move {
            let now = policy.read().unwrap_or_else(|p| p.into_inner()).clone();
            let answer = answer(&msg, &now, &names, resolver.as_ref(), &*report).await;
            if let Some(a) = answer {
                let _ = sock.send_to(&a, peer).await;
            }
        });
    }
}

async fn answer(
    msg: &[u8],
    policy: &Policy,
    names: &Names,
    resolver: &dyn Resolve,
    report: &(dyn Fn(Event) + Send + Sync),
) -> Option<Vec<u8>> {
    use crate::dns;
    let q = dns::parse_query(msg)?;
    let reply = |rcode, addrs: &[Ipv4Addr]| Some(dns::response(msg, &q, rcode, addrs, DNS_TTL));
    if !q.is_internet() {
        return reply(dns::NOTIMP, &[]);
    }
    let Some(name) = aibox_types::egress::normalize_name(&q.name) else {
        return reply(dns::NXDOMAIN, &[]);
    };
    let allowed = policy.may_resolve(&name);
    if !allowed {
        if names.first_refusal(&name) {
            report(Event {
            destination: format!("dns:{name}"),
            allowed: false,
            rule: None,
            reason: format!(
                "DNS lookup of {name} refused: no rule of this sandbox allows connections to it. An operator can allow it with `aibox network set SANDBOX --allow {name}`."
            ),
            });
        }
        return reply(dns::REFUSED, &[]);
    }
    if q.qtype != dns::TYPE_A {
        // No IPv6 route, and nothing but addresses is looked up.
        return reply(dns::NOERROR, &[]);
    }
    match resolver.lookup(&name).await {
        Ok(found) => {
            let v4: Vec<Ipv4Addr> = found
                .into_iter()
                .filter_map(|ip| match aibox_types::egress::canonical(ip) {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .take(16)
                .collect();
            names.remember(&name, &v4);
            reply(dns::NOERROR, &v4)
        }
        Err(_) => reply(dns::NXDOMAIN, &[]),
    }
}

/// Take the sandbox's TCP connections, decide each, splice the allowed.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    policy: Arc<RwLock<Policy>>,
    names: Arc<Names>,
    report: Report,
) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let (policy, names, report) = (policy.clone(), names.clone(), report.clone());
        tokio::spawn(async move {
            let _ = connection(conn, &policy, &names, &report).await;
        });
    }
}

async fn connection(
    conn: tokio::net::TcpStream,
    policy: &RwLock<Policy>,
    names: &Names,
    report: &Report,
) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let dst = aibox_sys::original_dst(conn.as_fd())?;
    let now = policy.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut conn = conn;
    let _ = conn.set_nodelay(true);
    let relayed = match decide(dst, &now, names, &**report) {
        Some(expect) => splice(&mut conn, dst, Vec::new(), expect, &**report).await,
        None => Ok(false),
    };
    if !matches!(relayed, Ok(true)) {
        // A reset, so the client sees the connection refused.
        let _ = aibox_sys::set_linger_zero(conn.as_fd());
    }
    Ok(())
}

/// Decide a connection to `dst` (by the names the sandbox resolved to its
/// address, else by the address) and report it. Allowed: what its
/// traffic must show (`crate::tunnel`).
fn decide(
    dst: std::net::SocketAddrV4,
    policy: &Policy,
    names: &Names,
    report: &(dyn Fn(Event) + Send + Sync),
) -> Option<crate::tunnel::Expect> {
    let ip = *dst.ip();
    let known = names.of(ip);
    let d = policy.decide_connection(&known, IpAddr::V4(ip), dst.port());
    let shown = match known.first() {
        Some(n) => format!("{n}:{} ({ip}, tcp)", dst.port()),
        None => format!("{dst} (tcp)"),
    };
    report(Event {
        destination: shown,
        allowed: d.allowed,
        rule: d.rule.clone(),
        reason: d.reason.clone(),
    });
    d.allowed
        .then(|| crate::tunnel::Expect::for_address(policy, &known, IpAddr::V4(ip), dst.port()))
}

async fn connect(dst: std::net::SocketAddrV4) -> Option<tokio::net::TcpStream> {
    let up = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(dst)).await;
    let up = up.ok()?.ok()?;
    let _ = up.set_nodelay(true);
    Some(up)
}

/// Relay an allowed connection (see `crate::tunnel`). False: not
/// connected, or refused.
async fn splice<C>(
    client: C,
    dst: std::net::SocketAddrV4,
    first: Vec<u8>,
    expect: crate::tunnel::Expect,
    report: &(dyn Fn(Event) + Send + Sync),
) -> std::io::Result<bool>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(up) = connect(dst).await else {
        return Ok(false);
    };
    let start = crate::tunnel::Start::Inspect(first, expect, dst.port());
    match crate::tunnel::splice(client, up, start).await? {
        crate::tunnel::Outcome::Relayed => Ok(true),
        crate::tunnel::Outcome::Refused(reason) => {
            report(Event {
                destination: format!("{dst} (tcp)"),
                allowed: false,
                rule: None,
                reason: format!("Connection to {dst} refused: {reason}."),
            });
            Ok(false)
        }
    }
}

/// A request of a sandbox's agent, on its egress socket (rootless L4):
/// `AIBOX-TCP ip:port` (answered `OK` then the bytes, or `DENY reason`)
/// or `AIBOX-DNS length` followed by a DNS message (answered with the
/// response message).
pub async fn agent_request<S>(
    mut client: S,
    line: &str,
    mut extra: Vec<u8>,
    policy: &Policy,
    names: &Names,
    resolver: &dyn Resolve,
    report: &(dyn Fn(Event) + Send + Sync),
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Some(dst) = line.strip_prefix("TCP ") {
        let Ok(dst) = dst.trim().parse::<std::net::SocketAddrV4>() else {
            return client.write_all(b"DENY malformed destination\n").await;
        };
        let Some(expect) = decide(dst, policy, names, report) else {
            return client.write_all(b"DENY\n").await;
        };
        // Connected before the answer, so a failure is a DENY.
        let Some(up) = connect(dst).await else {
            return client.write_all(b"DENY\n").await;
        };
        client.write_all(b"OK\n").await?;
        let start = crate::tunnel::Start::Inspect(extra, expect, dst.port());
        if let crate::tunnel::Outcome::Refused(reason) =
            crate::tunnel::splice(client, up, start).await?
        {
            report(Event {
                destination: format!("{dst} (tcp)"),
                allowed: false,
                rule: None,
                reason: format!("Connection to {dst} refused: {reason}."),
            });
        }
        return Ok(());
    }
    if let Some(len) = line.strip_prefix("DNS ") {
        let Some(len) = len.trim().parse::<usize>().ok().filter(|l| *l <= 4096) else {
            return Ok(());
        };
        while extra.len() < len {
            let mut b = [0u8; 1024];
            let n = client.read(&mut b).await?;
            if n == 0 {
                return Ok(());
            }
            extra.extend_from_slice(&b[..n]);
        }
        if let Some(a) = answer(&extra[..len], policy, names, resolver, report).await {
            client.write_all(&a).await?;
        }
        return client.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_confines_the_link() {
        let link = Link {
            ifname: "abx0123456789ab".into(),
            host_ip: Ipv4Addr::new(10, 87, 0, 5),
            guest_ip: Ipv4Addr::new(10, 87, 0, 6),
        };
        let r = ruleset(&link, Mode::Allowlist, 4000, 5000);
        assert!(r.contains("udp dport 53 dnat ip to 10.87.0.5:5000"));
        assert!(r.contains("meta l4proto tcp dnat ip to 10.87.0.5:4000"));
        assert!(r.contains("iifname \"abx0123456789ab\" drop"));
        assert!(
            !r.contains("masquerade")
                && !r.contains("accept\n    iifname \"abx0123456789ab\" ip saddr")
        );
        let r = ruleset(&link, Mode::Full, 4000, 5000);
        assert!(r.contains("ip saddr 10.87.0.6 masquerade"));
        assert!(r.contains("meta l4proto { udp, icmp } accept"));
        assert!(r.starts_with("table inet abx0123456789ab\ndelete table inet abx0123456789ab\n"));
    }

    #[test]
    fn repeated_refusals_are_one_event() {
        let n = Names::default();
        assert!(n.first_refusal("a.test"));
        assert!(!n.first_refusal("a.test"));
        assert!(n.first_refusal("b.test"));
    }

    #[test]
    fn names_are_remembered_by_address() {
        let n = Names::default();
        let ip = Ipv4Addr::new(198, 51, 100, 7);
        n.remember("a.test", &[ip]);
        n.remember("b.test", &[ip]);
        n.remember("a.test", &[ip]);
        assert_eq!(n.of(ip), ["b.test", "a.test"]);
        assert!(n.of(Ipv4Addr::new(198, 51, 100, 8)).is_empty());
    }
}
