//! Egress policy: which destinations a sandbox may connect to, and why not.
//!
//! One policy per sandbox: a mode and an ordered list of rules. The egress
//! proxy (HTTP forward and CONNECT) and the L3/L4 filter both ask
//! [`Policy::decide`] about a destination and act on the [`Decision`].
//!
//! Rule syntax (one string each; `allow` is the default action):
//!
//! ```text
//! [allow|deny] TARGET[:PORTS]
//! TARGET  pypi.org            the name itself (not its subdomains)
//!         *.pythonhosted.org  any subdomain, at any depth (not the name itself)
//!         10.0.0.0/8          addresses in a CIDR block (IPv4 or IPv6)
//!         10.1.2.3            one address (a /32, or /128)
//!         [2001:db8::/32]     IPv6, in brackets when a port follows
//!         *                   anything
//! PORTS   443 | 8000-8999 | *   (left out: any port)
//! ```
//!
//! Evaluation, for a destination `host:port`:
//! 1. The first rule whose target and ports match decides. A name matches
//!    only name rules; an IP literal (in any spelling: dotted, decimal,
//!    hex, octal, short, IPv4-mapped IPv6) matches only address rules, so a
//!    literal never slips past a name rule. No match: denied in
//!    `allowlist` mode, allowed in `full` mode; `none` denies everything.
//! 2. Addresses that reach the host or the local network — loopback,
//!    private (RFC 1918, unique-local), link-local, cloud metadata,
//!    carrier-grade NAT, unspecified, multicast, broadcast, and IPv4 hidden
//!    in IPv6 (mapped, NAT64, 6to4) — are refused even when step 1 allowed
//!    the destination, unless an `allow` address rule covers that address
//!    before any `deny` rule does. This applies to the *resolved* addresses
//!    of a name, and the caller connects only to the addresses returned in
//!    the decision (no second lookup, so no DNS rebinding).
//!
//! Every decision carries a short reason written for a model to read: the
//! destination, what decided, and how an operator would allow it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How much network a sandbox has.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Loopback only.
    #[default]
    None,
    /// Only what the rules allow.
    Allowlist,
    /// Everything the rules do not deny (local addresses still refused).
    Full,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::None => "none",
            Mode::Allowlist => "allowlist",
            Mode::Full => "full",
        })
    }
}

impl Mode {
    /// A build's or a request's network from its options: the mode named
    /// (`none`, `allowlist`, `full`), else `allowlist` when rules are
    /// given, else nothing said (`None`).
    pub fn from_options(mode: Option<&str>, has_rules: bool) -> Result<Option<Mode>, String> {
        match mode {
            None if !has_rules => Ok(None),
            None | Some("allowlist") => Ok(Some(Mode::Allowlist)),
            Some("full") => Ok(Some(Mode::Full)),
            Some("none") => Ok(Some(Mode::None)),
            Some(other) => Err(format!(
                "network {other:?}: expected none, allowlist or full"
            )),
        }
    }
}

/// Where egress is enforced.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// HTTP and HTTPS through the server's egress proxy; the sandbox has
    /// no route out, so nothing else leaves. Works without root.
    Proxy,
    /// The proxy, plus any TCP, which nftables hands to the server (over
    /// a link into the host as root, through the agent without), which
    /// applies the same rules to each connection; DNS answered only for
    /// allowed names. Needs nftables and iproute2.
    L4,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enforcement::Proxy => "proxy",
            Enforcement::L4 => "l4",
        })
    }
}

/// What egress a sandbox really has, for its isolation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EgressReport {
    pub mode: Mode,
    pub enforcement: Enforcement,
    /// HTTP(S) through the proxy (`HTTP_PROXY` set inside).
    pub http_proxy: bool,
    /// Other TCP is possible, checked per connection against the rules.
    pub tcp: bool,
    /// A resolver inside answers allowed names (else DNS fails).
    pub dns: bool,
    /// UDP beyond DNS (full mode with L4 only).
    pub udp: bool,
    /// One sentence saying the above, with why L4 is missing if it is.
    pub summary: String,
}

/// The report of a sandbox whose egress is the proxy alone; `why` says
/// why L4 is not there (None: not asked for).
pub fn proxy_report(mode: Mode, why: Option<&str>) -> EgressReport {
    EgressReport {
        mode,
        enforcement: Enforcement::Proxy,
        http_proxy: true,
        tcp: false,
        dns: false,
        udp: false,
        summary: format!(
            "Only HTTP and HTTPS leave, through the aibox egress proxy (HTTP_PROXY); other TCP, UDP and DNS lookups fail{}",
            why.map(|w| format!(" ({w})")).unwrap_or_else(|| ".".into())
        ),
    }
}

/// The report of a sandbox with the L4 path.
pub fn l4_report(mode: Mode) -> EgressReport {
    EgressReport {
        mode,
        enforcement: Enforcement::L4,
        http_proxy: true,
        tcp: true,
        dns: true,
        udp: mode == Mode::Full,
        summary: format!(
            "HTTP and HTTPS go through the aibox egress proxy; any other TCP connection is checked against the same rules by the server; DNS answers only names the rules allow{}",
            if mode == Mode::Full {
                "; other UDP is forwarded (NAT), never to local addresses."
            } else {
                "; no other UDP leaves."
            }
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A name, lower case, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name below `suffix`.
    Subdomains(String),
    Cidr(Cidr),
    Any,
}

/// Inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl Ports {
    pub const ANY: Ports = Ports { lo: 0, hi: 65535 };
    fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    pub target: Target,
    pub ports: Ports,
    /// As written (normalised), for messages.
    pub text: String,
}

impl Rule {
    /// Does this rule trust whatever a connection it allows carries? An
    /// address rule does, and so does a name rule that names its ports
    /// (`git.example:22`: the operator opted that port in, for protocols
    /// that carry no name). Otherwise a name rule holds only for traffic
    /// that names it (TLS SNI, an HTTP Host), as the egress proxy checks.
    pub fn trusts_any_traffic(&self) -> bool {
        matches!(self.target, Target::Cidr(_)) || self.ports != Ports::ANY
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress rule {rule:?}: {why}")]
pub struct RuleError {
    pub rule: String,
    pub why: String,
}

impl std::str::FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Rule, RuleError> {
        let err = |why: &str| RuleError {
            rule: s.to_string(),
            why: why.to_string(),
        };
        let t = s.trim();
        let (action, rest) = match t.split_once(char::is_whitespace) {
            Some(("allow", r)) => (Action::Allow, r.trim()),
            Some(("deny", r)) => (Action::Deny, r.trim()),
            _ if t == "allow" || t == "deny" => return Err(err("a target is missing")),
            _ => (Action::Allow, t),
        };
        if rest.is_empty() {
            return Err(err("a target is missing"));
        }
        if rest.contains(char::is_whitespace) {
            return Err(err("one target per rule"));
        }
        // Split off the ports: `[v6]:p`, `v4:p`, `name:p`; a bare IPv6
        // address (several colons, no brackets) has no port.
        let (target, ports) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner.split_once(']').ok_or_else(|| err("unclosed '['"))?;
            let ports = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("expected ':' after ']'"))?,
                ),
            };
            (addr, ports)
        } else if rest.matches(':').count() > 1 {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (rest, None),
            }
        };
        let ports = match ports {
            None | Some("*") => Ports::ANY,
            Some(p) => parse_ports(p).ok_or_else(|| err("ports are N, N-M or *"))?,
        };
        let target = parse_target(target).map_err(|why| err(&why))?;
        let text = format!(
            "{} {}{}",
            match action {
                Action::Allow => "allow",
                Action::Deny => "deny",
            },
            match &target {
                Target::Name(n) => n.clone(),
                Target::Subdomains(s) => format!("*.{s}"),
                Target::Cidr(c) if c.addr.is_ipv6() && ports != Ports::ANY => format!("[{c}]"),
                Target::Cidr(c) => c.to_string(),
                Target::Any => "*".into(),
            },
            match ports {
                Ports::ANY => String::new(),
                Ports { lo, hi } if lo == hi => format!(":{lo}"),
                Ports { lo, hi } => format!(":{lo}-{hi}"),
            }
        );
        Ok(Rule {
            action,
            target,
            ports,
            text,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl schemars::JsonSchema for Rule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rule".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`[allow|deny] TARGET[:PORTS]`; the first rule that matches wins (docs/network.md)"
        })
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_ports(p: &str) -> Option<Ports> {
    let one = |s: &str| -> Option<u16> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (lo, hi) = match p.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let v = one(p)?;
            (v, v)
        }
    };
    (lo <= hi && lo > 0).then_some(Ports { lo, hi })
}

fn parse_target(t: &str) -> Result<Target, String> {
    if t == "*" {
        return Ok(Target::Any);
    }
    if let Some((addr, prefix)) = t.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length must be 0-{max}"))?;
        return Ok(Target::Cidr(Cidr { addr, prefix }));
    }
    if let Some(ip) = parse_ip_literal(t) {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Target::Cidr(Cidr { addr: ip, prefix }));
    }
    if let Some(suffix) = t.strip_prefix("*.") {
        let s = normalize_name(suffix).ok_or("not a valid domain after '*.'")?;
        return Ok(Target::Subdomains(s));
    }
    if t.contains('*') {
        return Err("'*' may only stand alone or start a name as '*.'".into());
    }
    normalize_name(t)
        .map(Target::Name)
        .ok_or_else(|| format!("{t:?} is not a valid domain name or address"))
}

/// A DNS name in the form rules compare: ASCII, lower case, no trailing
/// dot, labels of letters, digits, '-' and '_' (1-63 bytes, 253 in all).
pub fn normalize_name(n: &str) -> Option<String> {
    let n = n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All digits is an address in disguise, never a name.
        && !n.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(n)
}

/// Any spelling of an IP address a client library might accept: standard
/// IPv4 and IPv6 (with or without brackets), and the inet_aton forms —
/// `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`. IPv4 inside IPv6
/// (mapped) comes back as IPv4.
pub fn parse_ip_literal(h: &str) -> Option<IpAddr> {
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    inet_aton(h.strip_suffix('.').unwrap_or(h)).map(IpAddr::V4)
}

fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let num = |p: &str| -> Option<u64> {
        let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (x, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (p, 10)
        };
        if digits.is_empty() && radix == 16 {
            return Some(0);
        }
        u64::from_str_radix(digits, radix).ok()
    };
    let vals: Vec<u64> = parts.iter().map(|p| num(p)).collect::<Option<_>>()?;
    let (last, head) = vals.split_last()?;
    if head.iter().any(|v| *v > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let mut v: u64 = 0;
    for (i, h) in head.iter().enumerate() {
        v |= h << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why an address is refused unless a rule names it, or None when it is an
/// ordinary public address.
pub fn local_address_class(ip: IpAddr) -> Option<&'static str> {
    let ip = canonical(ip);
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
    .or_else(|| host_addresses().contains(&ip).then_some(HOST_ADDRESS))
}

/// The class of the host's own addresses (the review's M2b: a daemon the
/// host binds to every interface was reachable at the host's public
/// address, which the static classes do not know).
pub const HOST_ADDRESS: &str = "one of this host's own addresses";

static HOST_ADDRESSES: std::sync::RwLock<Vec<IpAddr>> = std::sync::RwLock::new(Vec::new());

/// Tell the policy which addresses are the host's own (the server reads
/// its interfaces at start and again every few seconds): they are local,
/// like loopback.
pub fn set_host_addresses(addrs: impl IntoIterator<Item = IpAddr>) {
    let mut v: Vec<IpAddr> = addrs.into_iter().map(canonical).collect();
    v.sort();
    v.dedup();
    *HOST_ADDRESSES.write().unwrap_or_else(|p| p.into_inner()) = v;
}

/// The host's own addresses, as last set.
pub fn host_addresses() -> Vec<IpAddr> {
    HOST_ADDRESSES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] | [100, 100, 100, 200] | [192, 0, 0, 192] => {
            "a cloud metadata address"
        }
        [127, ..] => "a loopback address",
        [0, ..] => "an unspecified address",
        [10, ..] | [192, 168, ..] => "a private address",
        [172, b, ..] if (16..32).contains(&b) => "a private address",
        [169, 254, ..] => "a link-local address",
        [100, b, ..] if (64..128).contains(&b) => "a carrier-grade NAT address",
        [255, 255, 255, 255] => "the broadcast address",
        [a, ..] if (224..240).contains(&a) => "a multicast address",
        [a, ..] if a >= 240 => "a reserved address",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
        return Some("a cloud metadata address");
    }
    // IPv4 carried inside IPv6 is judged as that IPv4 address.
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 well-known prefix 64:ff9b::/96 (and the local-use /48).
        return v4_class(embedded(s[6], s[7])).or(Some("a NAT64 address"));
    }
    if s[0] == 0x2002 {
        // 6to4 carries the IPv4 address in bits 16..48.
        return v4_class(embedded(s[1], s[2]));
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d.
        return v4_class(embedded(s[6], s[7])).or(Some("an IPv4-compatible address"));
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "a private address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

/// Where a connection wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A (normalised) DNS name and the addresses it resolved to.
    Name { name: String, resolved: Vec<IpAddr> },
    /// An address given as such.
    Ip(IpAddr),
}

impl Host {
    /// Classify what a client asked for: an address in any spelling, or a
    /// valid name (to be resolved by the caller). None: neither.
    pub fn parse(h: &str) -> Option<Host> {
        if let Some(ip) = parse_ip_literal(h) {
            return Some(Host::Ip(ip));
        }
        normalize_name(h).map(|name| Host::Name {
            name,
            resolved: vec![],
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name { name, .. } => f.write_str(name),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What the policy says about one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that decided (by its text), if one did.
    pub rule: Option<String>,
    /// The addresses the caller may connect to (allowed decisions only).
    pub addrs: Vec<IpAddr>,
    /// One or two sentences for whoever (or whatever) made the request.
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The first rule matching `host:port`, by its index.
    fn first_match(&self, host: &Host, port: u16) -> Option<usize> {
        self.rules.iter().position(|r| {
            r.ports.contains(port)
                && match (&r.target, host) {
                    (Target::Any, _) => true,
                    (Target::Name(n), Host::Name { name, .. }) => n == name,
                    (Target::Subdomains(s), Host::Name { name, .. }) => name
                        .strip_suffix(s.as_str())
                        .is_some_and(|head| head.ends_with('.')),
                    (Target::Cidr(c), Host::Ip(ip)) => c.contains(*ip),
                    // A name matches an address rule when every address it
                    // resolved to lies in the block.
                    (Target::Cidr(c), Host::Name { resolved, .. }) => {
                        !resolved.is_empty() && resolved.iter().all(|ip| c.contains(*ip))
                    }
                    _ => false,
                }
        })
    }

    /// Is a local-class address unlocked by an explicit address rule (the
    /// first address rule covering it, on this port, allows)?
    fn unlocks(&self, ip: IpAddr, port: u16) -> bool {
        self.rules
            .iter()
            .find(|r| {
                r.ports.contains(port) && matches!(&r.target, Target::Cidr(c) if c.contains(ip))
            })
            .is_some_and(|r| r.action == Action::Allow)
    }

    /// Before any lookup: may the name `host` be resolved at all? Only
    /// name rules (and `*`) count here: the first that matches decides,
    /// and with none, `allowlist` refuses and `full` lets it through. A
    /// refusal comes back now (`Some`), so a name no rule allows never
    /// reaches a DNS server, and the sandbox cannot carry data out in DNS
    /// queries. `None`: resolve it, then call [`decide`](Self::decide).
    /// The rule a decision names, if one decided.
    pub fn rule_of(&self, d: &Decision) -> Option<&Rule> {
        let text = d.rule.as_ref()?;
        self.rules.iter().find(|r| &r.text == text)
    }

    pub fn precheck_name(&self, host: &Host, port: u16) -> Option<Decision> {
        let Host::Name { .. } = host else {
            return None;
        };
        let names_only = Policy {
            mode: self.mode,
            rules: self
                .rules
                .iter()
                .filter(|r| !matches!(r.target, Target::Cidr(_)))
                .cloned()
                .collect(),
        };
        // Only the rules decide here: the addresses come later.
        let hit = names_only.first_match(host, port);
        let allowed = self.mode != Mode::None
            && match hit {
                Some(i) => names_only.rules[i].action == Action::Allow,
                None => self.mode == Mode::Full,
            };
        (!allowed).then(|| names_only.decide(host, port))
    }

    /// May the name be resolved for a connection on some port? (The
    /// resolver inside a sandbox does not know the port yet.) Exact: the
    /// decision only changes at the ends of the rules' port ranges, so
    /// one port per stretch between them is checked.
    pub fn may_resolve(&self, name: &str) -> bool {
        let host = Host::Name {
            name: name.to_string(),
            resolved: vec![],
        };
        let mut ports: Vec<u16> = vec![1];
        for r in &self.rules {
            ports.push(r.ports.lo.max(1));
            if let Some(after) = r.ports.hi.checked_add(1) {
                ports.push(after);
            }
        }
        ports.sort_unstable();
        ports.dedup();
        ports
            .into_iter()
            .any(|p| self.precheck_name(&host, p).is_none())
    }

    /// A TCP connection to `ip:port` that did not come through the proxy:
    /// allowed when a name the sandbox resolved to `ip` is allowed on
    /// this port, or when the address itself is.
    pub fn decide_connection(&self, names: &[String], ip: IpAddr, port: u16) -> Decision {
        let mut first = None;
        for n in names {
            let d = self.decide(
                &Host::Name {
                    name: n.clone(),
                    resolved: vec![ip],
                },
                port,
            );
            if d.allowed {
                return d;
            }
            first.get_or_insert(d);
        }
        let by_address = self.decide(&Host::Ip(ip), port);
        match first {
            Some(d) if !by_address.allowed => d,
            _ => by_address,
        }
    }

    pub fn decide(&self, host: &Host, port: u16) -> Decision {
        let dest = format!("{host}:{port}");
        let how = |target: String| {
            format!("An operator can allow it with `aibox network set SANDBOX --allow {target}`.")
        };
        let deny = |rule: Option<String>, reason: String| Decision {
            allowed: false,
            rule,
            addrs: vec![],
            reason,
        };
        if self.mode == Mode::None {
            return deny(
                None,
                format!(
                    "Connection to {dest} refused: this sandbox has no network (mode none). {}",
                    "An operator can give it egress with `aibox network set SANDBOX --mode allowlist --allow HOST`."
                ),
            );
        }
        let hit = self.first_match(host, port);
        let allowed_by_rules = match hit {
            Some(i) => self.rules[i].action == Action::Allow,
            None => self.mode == Mode::Full,
        };
        let rule = hit.map(|i| self.rules[i].text.clone());
        if !allowed_by_rules {
            let target = match host {
                Host::Name { name, .. } => format!("{name}:{port}"),
                Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
                Host::Ip(ip) => format!("{ip}:{port}"),
            };
            let why = match &rule {
                Some(r) => format!("Connection to {dest} refused by the rule `{r}`."),
                None => format!(
                    "Connection to {dest} refused: no rule of this sandbox's allowlist matches it."
                ),
            };
            return deny(rule, format!("{why} {}", how(target)));
        }
        // Allowed so far: now each address on its own.
        let candidates: Vec<IpAddr> = match host {
            Host::Ip(ip) => vec![canonical(*ip)],
            Host::Name { resolved, .. } => resolved.iter().map(|ip| canonical(*ip)).collect(),
        };
        if candidates.is_empty() {
            return deny(
                rule,
                format!("Connection to {dest} refused: the name has no address."),
            );
        }
        let mut ok = Vec::new();
        let mut refused: Option<(IpAddr, &str)> = None;
        for ip in candidates {
            match local_address_class(ip) {
                Some(class) if !self.unlocks(ip, port) => {
                    refused.get_or_insert((ip, class));
                }
                _ => ok.push(ip),
            }
        }
        if let (true, Some((ip, class))) = (ok.is_empty(), refused) {
            let shown = match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            let block = if ip.is_ipv4() { 32 } else { 128 };
            let named = match host {
                Host::Name { .. } => format!(" (it resolves to {shown})"),
                Host::Ip(_) => String::new(),
            };
            return deny(
                rule,
                format!(
                    "Connection to {dest} refused: {shown} is {class}{named}, which sandboxes may reach only when a rule names it. {}",
                    how(if ip.is_ipv4() {
                        format!("{ip}/{block}:{port}")
                    } else {
                        format!("[{ip}/{block}]:{port}")
                    })
                ),
            );
        }
        let reason = match &rule {
            Some(r) => format!("Connection to {dest} allowed by the rule `{r}`."),
            None => format!("Connection to {dest} allowed (mode full)."),
        };
        Decision {
            allowed: true,
            rule,
            addrs: ok,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, rules: &[&str]) -> Policy {
        Policy {
            mode,
            rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
        }
    }

    fn name(n: &str, ips: &[&str]) -> Host {
        Host::Name {
            name: normalize_name(n).unwrap(),
            resolved: ips.iter().map(|i| i.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn names_resolve_when_some_port_allows_them() {
        let p = policy(
            Mode::Allowlist,
            &[
                "deny a.test:1-442",
                "a.test:443",
                "deny *.b.test",
                "b.test:22",
                "10.0.0.0/8",
            ],
        );
        assert!(p.may_resolve("a.test"));
        assert!(p.may_resolve("b.test"));
        assert!(!p.may_resolve("x.b.test"));
        assert!(!p.may_resolve("c.test"));
        let p = policy(Mode::Allowlist, &["deny a.test", "a.test:443"]);
        assert!(!p.may_resolve("a.test"));
        let p = policy(Mode::Full, &["deny a.test"]);
        assert!(!p.may_resolve("a.test") && p.may_resolve("anything.test"));
        assert!(!policy(Mode::None, &[]).may_resolve("a.test"));
    }

    #[test]
    fn connections_are_judged_by_the_names_that_led_to_them() {
        let p = policy(Mode::Allowlist, &["git.test:22", "192.0.2.7:5432"]);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let names = vec!["git.test".to_string()];
        assert!(p.decide_connection(&names, ip, 22).allowed);
        let d = p.decide_connection(&names, ip, 23);
        assert!(
            !d.allowed && d.reason.contains("git.test:23"),
            "{}",
            d.reason
        );
        assert!(!p.decide_connection(&[], ip, 22).allowed);
        let db: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(p.decide_connection(&[], db, 5432).allowed);
        assert!(p.decide_connection(&names, db, 5432).allowed);
        // A name never makes a local address reachable.
        let local: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(!p.decide_connection(&names, local, 22).allowed);
    }

    #[test]
    fn rules_parse_and_print_back() {
        for (input, shown) in [
            ("pypi.org", "allow pypi.org"),
            ("allow PyPI.org.", "allow pypi.org"),
            ("deny *.example.com:443", "deny *.example.com:443"),
            ("github.com:22", "allow github.com:22"),
            ("10.0.0.0/8:5432", "allow 10.0.0.0/8:5432"),
            ("10.1.2.3", "allow 10.1.2.3/32"),
            ("[2001:db8::/32]:443", "allow [2001:db8::/32]:443"),
            ("2001:db8::1", "allow 2001:db8::1/128"),
            ("api.internal:8000-8999", "allow api.internal:8000-8999"),
            ("deny *", "deny *"),
            ("allow ::ffff:127.0.0.1", "allow 127.0.0.1/32"),
        ] {
            let r: Rule = input.parse().unwrap();
            assert_eq!(r.to_string(), shown, "{input}");
            let again: Rule = r.to_string().parse().unwrap();
            assert_eq!(again, r);
        }
        for bad in [
            "",
            "allow",
            "maybe x.com",
            "x.com:0",
            "x.com:70000",
            "x.com:9-1",
            "x.com:a",
            "*x.com",
            "x.*.com",
            "10.0.0.0/33",
            "[::1",
            "a b",
            "-bad.com",
            "ex ample.com",
            "xn--é.com",
            "1.2.3.4.5.6",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?} should not parse");
        }
        let e = "x.com:a".parse::<Rule>().unwrap_err();
        assert!(e.to_string().contains("ports"), "{e}");
    }

    #[test]
    fn first_match_decides_and_the_default_depends_on_the_mode() {
        let p = policy(
            Mode::Allowlist,
            &["deny evil.example.com", "*.example.com:443", "pypi.org"],
        );
        let pub_ip = ["93.184.216.34"];
        assert!(p.decide(&name("a.example.com", &pub_ip), 443).allowed);
        assert!(p.decide(&name("a.b.example.com", &pub_ip), 443).allowed);
        assert!(
            !p.decide(&name("example.com", &pub_ip), 443).allowed,
            "subdomains only"
        );
        assert!(
            !p.decide(&name("a.example.com", &pub_ip), 80).allowed,
            "port"
        );
        let d = p.decide(&name("evil.example.com", &pub_ip), 443);
        assert!(!d.allowed);
        assert_eq!(d.rule.as_deref(), Some("deny evil.example.com"));
        assert!(
            d.reason
                .contains("refused by the rule `deny evil.example.com`"),
            "{}",
            d.reason
        );
        assert!(!p.decide(&name("notexample.com", &pub_ip), 443).allowed);
        let d = p.decide(&name("other.org", &pub_ip), 443);
        assert!(!d.allowed && d.rule.is_none());
        assert!(d.reason.contains("--allow other.org:443"), "{}", d.reason);
        // full: allowed unless denied.
        let f = policy(Mode::Full, &["deny *.tracker.net"]);
        assert!(f.decide(&name("other.org", &pub_ip), 443).allowed);
        assert!(!f.decide(&name("x.tracker.net", &pub_ip), 443).allowed);
        // none: nothing, whatever the rules say.
        let n = policy(Mode::None, &["*"]);
        let d = n.decide(&name("pypi.org", &pub_ip), 443);
        assert!(
            !d.allowed && d.reason.contains("no network"),
            "{}",
            d.reason
        );
    }

    /// M2b: the host's own addresses are local like loopback, so a
    /// daemon bound to every interface is not reachable at the host's
    /// public address without a rule naming it (and the ceiling treats
    /// such a rule like one for loopback).
    #[test]
    fn m2b_the_hosts_own_addresses_are_local() {
        // Addresses no other test uses: the set is process-wide.
        set_host_addresses([
            "198.18.77.77".parse().unwrap(),
            "2001:db8:77::77".parse().unwrap(),
        ]);
        let p = policy(Mode::Full, &[]);
        for h in ["198.18.77.77", "[2001:db8:77::77]", "::ffff:198.18.77.77"] {
            let d = p.decide(&ip(h), 22);
            assert!(!d.allowed, "{h}");
            assert!(d.reason.contains(HOST_ADDRESS), "{}", d.reason);
        }
        let d = p.decide(&name("host.example", &["198.18.77.77"]), 443);
        assert!(
            !d.allowed && d.reason.contains(HOST_ADDRESS),
            "{}",
            d.reason
        );
        assert!(p.decide(&ip("198.18.77.78"), 22).allowed);
        let open = policy(Mode::Allowlist, &["198.18.77.77/32:22"]);
        assert!(open.decide(&ip("198.18.77.77"), 22).allowed);
        let ceiling = crate::ceiling::Ceiling::default();
        let rule: Rule = "198.18.0.0/15".parse().unwrap();
        let e = ceiling.check_rules(&[rule]).unwrap_err();
        assert!(e.to_string().contains(HOST_ADDRESS), "{e}");
    }

    #[test]
    fn local_addresses_need_a_rule_that_names_them() {
        let p = policy(Mode::Full, &[]);
        for h in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.1",
            "[::1]",
            "::ffff:127.0.0.1",
            "[::ffff:7f00:1]",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "fd00:ec2::254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:0001::1",
            "::127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            let d = p.decide(&ip(h), 80);
            assert!(!d.allowed, "{h} was allowed");
            assert!(
                d.reason
                    .contains("sandboxes may reach only when a rule names it"),
                "{h}: {}",
                d.reason
            );
        }
        assert!(p.decide(&ip("93.184.216.34"), 80).allowed);
        assert!(p.decide(&ip("2606:4700::1111"), 443).allowed);
        // A name that resolves to a local address (DNS rebinding) is refused
        // even though a rule allows the name...
        let a = policy(Mode::Allowlist, &["internal.example.com"]);
        let d = a.decide(&name("internal.example.com", &["10.0.0.5"]), 5432);
        assert!(!d.allowed);
        assert!(d.reason.contains("resolves to 10.0.0.5"), "{}", d.reason);
        assert!(
            d.reason.contains("--allow 10.0.0.5/32:5432"),
            "{}",
            d.reason
        );
        // ...unless an address rule names it, and then only that address is used.
        let a = policy(
            Mode::Allowlist,
            &["internal.example.com", "10.0.0.0/24:5432"],
        );
        let d = a.decide(
            &name("internal.example.com", &["10.0.0.5", "10.9.9.9"]),
            5432,
        );
        assert!(d.allowed);
        assert_eq!(d.addrs, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        // A deny before the allow keeps it locked.
        let a = policy(Mode::Full, &["deny 10.0.0.5", "10.0.0.0/8"]);
        assert!(!a.decide(&ip("10.0.0.5"), 80).allowed);
        assert!(a.decide(&ip("10.0.0.6"), 80).allowed);
        // Metadata stays refused under a broad rule that does not name it.
        let a = policy(Mode::Allowlist, &["*"]);
        assert!(!a.decide(&ip("169.254.169.254"), 80).allowed);
        let a = policy(Mode::Allowlist, &["169.254.169.254:80"]);
        assert!(a.decide(&ip("169.254.169.254"), 80).allowed);
    }

    #[test]
    fn literals_never_match_name_rules_and_names_are_checked() {
        let p = policy(Mode::Allowlist, &["example.com", "*.example.com"]);
        // The address example.com has, spelt as a literal: not the name.
        assert!(!p.decide(&ip("93.184.216.34"), 443).allowed);
        // A name made of digits is an address, not a name.
        assert!(normalize_name("1.2.3.4").is_none());
        assert!(matches!(Host::parse("1.2.3.4"), Some(Host::Ip(_))));
        assert!(Host::parse("exa mple.com").is_none());
        assert!(Host::parse("").is_none());
        assert!(Host::parse("a..b").is_none());
        assert_eq!(
            Host::parse("EXAMPLE.com."),
            Some(Host::Name {
                name: "example.com".into(),
                resolved: vec![]
            })
        );
        // A name with no address is refused with a reason.
        let d = p.decide(&name("example.com", &[]), 443);
        assert!(!d.allowed && d.reason.contains("no address"));
        // CIDR rules match names by every resolved address.
        let c = policy(Mode::Allowlist, &["203.0.113.0/24"]);
        assert!(c.decide(&name("svc.test", &["203.0.113.7"]), 22).allowed);
        assert!(
            !c.decide(&name("svc.test", &["203.0.113.7", "198.51.100.1"]), 22)
                .allowed
        );
    }

    #[test]
    fn inet_aton_spellings() {
        for (s, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.01", "127.0.0.1"),
            ("0x7f.0.0.0x1", "127.0.0.1"),
            ("10.0.0.1.", "10.0.0.1"),
        ] {
            assert_eq!(parse_ip_literal(s), Some(want.parse().unwrap()), "{s}");
        }
        for s in [
            "256.0.0.1",
            "1.2.3.4.5",
            "0x100000000",
            "08.0.0.1",
            "1.2.3.256",
            "abc",
        ] {
            assert_eq!(parse_ip_literal(s), None, "{s}");
        }
    }

    #[test]
    fn policies_round_trip_through_json() {
        let p = policy(Mode::Allowlist, &["pypi.org:443", "deny *"]);
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(
            j,
            r#"{"mode":"allowlist","rules":["allow pypi.org:443","deny *"]}"#
        );
        assert_eq!(serde_json::from_str::<Policy>(&j).unwrap(), p);
        let e = serde_json::from_str::<Policy>(r#"{"mode":"allowlist","rules":["x.com:0"]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("invalid egress rule"), "{e}");
    }

    #[test]
    fn names_are_looked_up_only_when_a_name_rule_allows_them() {
        let p = policy(
            Mode::Allowlist,
            &["deny secret.example.com", "*.example.com", "203.0.113.0/24"],
        );
        let n = |h: &str| Host::parse(h).unwrap();
        assert_eq!(p.precheck_name(&n("a.example.com"), 443), None);
        let d = p.precheck_name(&n("secret.example.com"), 443).unwrap();
        assert_eq!(d.rule.as_deref(), Some("deny secret.example.com"));
        // An address rule does not open lookups of arbitrary names.
        let d = p.precheck_name(&n("data.exfil.net"), 53).unwrap();
        assert!(!d.allowed && d.rule.is_none());
        // Literals need no lookup; full mode resolves what no name rule denies.
        assert_eq!(p.precheck_name(&n("203.0.113.9"), 22), None);
        let f = policy(Mode::Full, &["deny *.tracker.net"]);
        assert_eq!(f.precheck_name(&n("anything.org"), 443), None);
        assert!(f.precheck_name(&n("x.tracker.net"), 443).is_some());
        assert!(policy(Mode::None, &["*"])
            .precheck_name(&n("a.org"), 443)
            .is_some());
    }
}
