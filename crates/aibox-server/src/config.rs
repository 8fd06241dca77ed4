//! Server configuration: defaults < TOML file < `AIBOX_*` environment <
//! command-line flags, validated once at start with errors naming the
//! setting and where it came from.

use aibox_types::{parse_duration, parse_size};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The TCP port `aibox serve` listens on by default (loopback only).
pub const DEFAULT_PORT: u16 = 7878;

#[derive(Debug, Clone)]
pub struct Config {
    /// TCP listener (always authenticated). `None`: Unix socket only.
    pub listen: Option<SocketAddr>,
    /// Unix socket; its file permissions (0600) are the boundary, so local
    /// requests on it need no key.
    pub socket: Option<PathBuf>,
    /// State (SQLite), templates, the admin key file.
    pub data_dir: PathBuf,
    /// Sandboxes' records and sockets: owned by this server alone, so what
    /// it finds there without a row in its database is half-made.
    pub run_dir: PathBuf,
    pub max_sandboxes: u64,
    /// Sum of the memory limits of running sandboxes.
    pub memory_budget: u64,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// Host paths sandboxes may mount (a mount must lie under one of them).
    pub allowed_mounts: Vec<PathBuf>,
    /// Largest request body (file uploads), in bytes.
    pub max_body: u64,
    /// Requests per second per API key (bursts up to twice that); 0: no limit.
    pub rate_limit: u64,
    /// Most snapshots kept at once (they live on disk until deleted).
    pub max_snapshots: u64,
    /// Names the egress proxy resolves to fixed addresses instead of asking
    /// the host's resolver (tests, split-horizon setups).
    pub egress_hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// Published ports answer at `{port}-{id}.{port_domain}` on the TCP
    /// listener (a wildcard DNS name, or `localhost`, which resolves
    /// every subdomain to loopback by itself).
    pub port_domain: String,
    /// The backend of sandboxes whose request names none.
    pub default_backend: aibox_types::BackendKind,
    /// What a user key may ask for unless the operator gave the key a
    /// ceiling of its own (admin keys have none).
    pub user_ceiling: aibox_types::ceiling::Ceiling,
    /// Calls into sandboxes one key may have in progress at once (execs,
    /// transfers, process waits): each holds a server thread.
    pub max_calls_per_key: usize,
    /// WebSocket sessions one key may have open at once.
    pub max_streams_per_key: usize,
    /// Most bytes of each of an exec's stdout and stderr the server keeps,
    /// whatever the request asks (the rest is counted, not kept).
    pub max_exec_output: u64,
}

/// Settings as written in the TOML file, the environment or flags.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    pub listen: Option<String>,
    pub socket: Option<String>,
    pub data_dir: Option<String>,
    pub run_dir: Option<String>,
    pub max_sandboxes: Option<u64>,
    pub memory_budget: Option<String>,
    pub default_ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub allowed_mounts: Option<Vec<String>>,
    pub max_body: Option<String>,
    pub rate_limit: Option<u64>,
    pub max_snapshots: Option<u64>,
    /// `name=ip,name=ip`.
    pub egress_hosts: Option<String>,
    pub port_domain: Option<String>,
    /// `namespaces` or `microvm`.
    pub default_backend: Option<String>,
    /// `[user_ceiling]` in the file; JSON in `AIBOX_USER_CEILING`.
    pub user_ceiling: Option<aibox_types::ceiling::Ceiling>,
    pub max_calls_per_key: Option<u64>,
    pub max_streams_per_key: Option<u64>,
    pub max_exec_output: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key} {value:?} (from {origin}): {why}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: String,
        why: String,
    },
}

impl Raw {
    /// Later sources win: `self` is overridden by `other`'s set fields.
    pub fn merge(mut self, other: Raw) -> Raw {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            listen,
            socket,
            data_dir,
            run_dir,
            max_sandboxes,
            memory_budget,
            default_ttl,
            max_ttl,
            allowed_mounts,
            max_body,
            rate_limit,
            max_snapshots,
            egress_hosts,
            port_domain,
            default_backend,
            user_ceiling,
            max_calls_per_key,
            max_streams_per_key,
            max_exec_output
        );
        self
    }

    pub fn from_toml_file(path: &Path) -> Result<Raw, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// `AIBOX_LISTEN`, `AIBOX_SOCKET`, `AIBOX_DATA_DIR`, `AIBOX_MAX_SANDBOXES`, ...
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Raw, ConfigError> {
        let s = |k: &str| get(k).filter(|v| !v.is_empty());
        let num = |var: &'static str, key: &'static str| -> Result<Option<u64>, ConfigError> {
            s(var)
                .map(|v| {
                    v.parse().map_err(|_| ConfigError::Invalid {
                        key,
                        value: v.clone(),
                        origin: var.into(),
                        why: "not a whole number".into(),
                    })
                })
                .transpose()
        };
        let max_sandboxes = num("AIBOX_MAX_SANDBOXES", "max_sandboxes")?;
        let rate_limit = num("AIBOX_RATE_LIMIT", "rate_limit")?;
        let max_snapshots = num("AIBOX_MAX_SNAPSHOTS", "max_snapshots")?;
        let max_calls_per_key = num("AIBOX_MAX_CALLS_PER_KEY", "max_calls_per_key")?;
        let max_streams_per_key = num("AIBOX_MAX_STREAMS_PER_KEY", "max_streams_per_key")?;
        let user_ceiling = s("AIBOX_USER_CEILING")
            .map(|v| {
                serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                    key: "user_ceiling",
                    value: v.clone(),
                    origin: "AIBOX_USER_CEILING".into(),
                    why: format!("expected a JSON object: {e}"),
                })
            })
            .transpose()?;
        Ok(Raw {
            listen: s("AIBOX_LISTEN"),
            socket: s("AIBOX_SOCKET"),
            data_dir: s("AIBOX_DATA_DIR"),
            run_dir: s("AIBOX_SERVER_RUN_DIR"),
            max_sandboxes,
            memory_budget: s("AIBOX_MEMORY_BUDGET"),
            default_ttl: s("AIBOX_DEFAULT_TTL"),
            max_ttl: s("AIBOX_MAX_TTL"),
            allowed_mounts: s("AIBOX_ALLOWED_MOUNTS")
                .map(|v| v.split(':').map(str::to_string).collect()),
            max_body: s("AIBOX_MAX_BODY"),
            rate_limit,
            max_snapshots,
            egress_hosts: s("AIBOX_EGRESS_HOSTS"),
            port_domain: s("AIBOX_PORT_DOMAIN"),
            default_backend: s("AIBOX_DEFAULT_BACKEND"),
            user_ceiling,
            max_calls_per_key,
            max_streams_per_key,
            max_exec_output: s("AIBOX_MAX_EXEC_OUTPUT"),
        })
    }

    /// Apply defaults and validate. `origin` names where the settings came
    /// from, for error messages.
    pub fn resolve(self, origin: &str) -> Result<Config, ConfigError> {
        let bad = |key: &'static str, value: &str, why: String| ConfigError::Invalid {
            key,
            value: value.to_string(),
            origin: origin.to_string(),
            why,
        };
        let listen = match self.listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            Some("none") => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "listen",
                    v,
                    "expected HOST:PORT, e.g. 127.0.0.1:7878, or none".into(),
                )
            })?),
        };
        let data_dir = PathBuf::from(self.data_dir.unwrap_or_else(|| {
            aibox_runtime::Dirs::from_env()
                .data
                .to_string_lossy()
                .into_owned()
        }));
        if !data_dir.is_absolute() {
            return Err(bad(
                "data_dir",
                &data_dir.to_string_lossy(),
                "must be an absolute path".into(),
            ));
        }
        let run_dir = self
            .run_dir
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("run"));
        let socket = match self.socket.as_deref() {
            None => Some(data_dir.join("aibox.sock")),
            Some("none") => None,
            Some(v) if Path::new(v).is_absolute() => Some(PathBuf::from(v)),
            Some(v) => return Err(bad("socket", v, "must be an absolute path or none".into())),
        };
        if listen.is_none() && socket.is_none() {
            return Err(bad(
                "listen",
                "none",
                "with socket = none too, the server would be unreachable".into(),
            ));
        }
        let size = |key: &'static str, v: Option<&str>, default: u64| match v {
            None => Ok(default),
            Some(v) => parse_size(v).map_err(|e| bad(key, v, e.to_string())),
        };
        let dur = |key: &'static str, v: Option<&str>, default: Duration| match v {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|e| bad(key, v, e.to_string())),
        };
        let max_sandboxes = self.max_sandboxes.unwrap_or(100);
        if max_sandboxes == 0 || max_sandboxes > 100_000 {
            return Err(bad(
                "max_sandboxes",
                &max_sandboxes.to_string(),
                "must be between 1 and 100000".into(),
            ));
        }
        let memory_budget = size(
            "memory_budget",
            self.memory_budget.as_deref(),
            default_memory_budget(),
        )?;
        let default_ttl = dur(
            "default_ttl",
            self.default_ttl.as_deref(),
            Duration::from_secs(600),
        )?;
        let max_ttl = dur(
            "max_ttl",
            self.max_ttl.as_deref(),
            Duration::from_secs(24 * 3600),
        )?;
        if default_ttl.is_zero() || default_ttl > max_ttl {
            return Err(bad(
                "default_ttl",
                &format!("{}s", default_ttl.as_secs()),
                format!(
                    "must be positive and at most max_ttl ({}s)",
                    max_ttl.as_secs()
                ),
            ));
        }
        let mut allowed_mounts = Vec::new();
        for m in self.allowed_mounts.unwrap_or_default() {
            let p = PathBuf::from(&m);
            if !p.is_absolute() || m.split('/').any(|c| c == "..") {
                return Err(bad(
                    "allowed_mounts",
                    &m,
                    "entries must be absolute paths without '..'".into(),
                ));
            }
            allowed_mounts.push(p);
        }
        let max_body = size("max_body", self.max_body.as_deref(), 1 << 30)?;
        let mut egress_hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>> =
            Default::default();
        for item in self
            .egress_hosts
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|i| !i.trim().is_empty())
        {
            let parsed = item.split_once('=').and_then(|(n, ip)| {
                Some((
                    aibox_types::egress::normalize_name(n.trim())?,
                    ip.trim().parse::<std::net::IpAddr>().ok()?,
                ))
            });
            let Some((name, ip)) = parsed else {
                return Err(bad(
                    "egress_hosts",
                    item,
                    "entries are name=ip, separated by commas".into(),
                ));
            };
            egress_hosts.entry(name).or_default().push(ip);
        }
        let max_snapshots = self.max_snapshots.unwrap_or(1000);
        if max_snapshots > 1_000_000 {
            return Err(bad(
                "max_snapshots",
                &max_snapshots.to_string(),
                "must be at most 1000000 (0 turns snapshots off)".into(),
            ));
        }
        let port_domain = match self.port_domain.as_deref() {
            None => "localhost".to_string(),
            Some(v) => aibox_types::egress::normalize_name(v)
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .ok_or_else(|| {
                    bad(
                        "port_domain",
                        v,
                        "expected a DNS name such as localhost or sandboxes.example.com".into(),
                    )
                })?,
        };
        let default_backend = match self.default_backend.as_deref() {
            None => aibox_types::BackendKind::Namespaces,
            Some(v) => v.parse().map_err(|why| bad("default_backend", v, why))?,
        };
        let share =
            |key: &'static str, v: Option<u64>, default: u64| -> Result<usize, ConfigError> {
                let n = v.unwrap_or(default);
                if n == 0 || n > 4096 {
                    return Err(bad(
                        key,
                        &n.to_string(),
                        "must be between 1 and 4096".into(),
                    ));
                }
                Ok(n as usize)
            };
        let max_calls_per_key = share("max_calls_per_key", self.max_calls_per_key, 64)?;
        let max_streams_per_key = share("max_streams_per_key", self.max_streams_per_key, 32)?;
        let max_exec_output = size("max_exec_output", self.max_exec_output.as_deref(), 10 << 20)?;
        let user_ceiling = self.user_ceiling.unwrap_or_default();
        user_ceiling
            .validate()
            .map_err(|why| bad("user_ceiling", &format!("{user_ceiling:?}"), why))?;
        Ok(Config {
            listen,
            socket,
            data_dir,
            run_dir,
            max_sandboxes,
            memory_budget,
            default_ttl,
            max_ttl,
            allowed_mounts,
            max_body,
            rate_limit: self.rate_limit.unwrap_or(100),
            max_snapshots,
            egress_hosts,
            port_domain,
            default_backend,
            user_ceiling,
            max_calls_per_key,
            max_streams_per_key,
            max_exec_output,
        })
    }
}

/// 80% of the host's RAM: the rest is for the host and page cache.
fn default_memory_budget() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(4 << 20);
    total_kib * 1024 / 10 * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_a_socket_in_the_data_dir() {
        let c = Raw {
            data_dir: Some("/srv/aibox".into()),
            ..Raw::default()
        }
        .resolve("test")
        .unwrap();
        assert_eq!(
            c.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
        );
        assert_eq!(c.socket, Some(PathBuf::from("/srv/aibox/aibox.sock")));
        assert_eq!(c.run_dir, PathBuf::from("/srv/aibox/run"));
        assert_eq!(c.default_ttl, Duration::from_secs(600));
    }

    #[test]
    fn later_sources_win() {
        let file = Raw {
            listen: Some("127.0.0.1:1".into()),
            max_sandboxes: Some(5),
            ..Raw::default()
        };
        let env = Raw {
            listen: Some("127.0.0.1:2".into()),
            ..Raw::default()
        };
        let m = file.merge(env);
        assert_eq!(m.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(m.max_sandboxes, Some(5));
    }

    #[test]
    fn bad_values_name_the_setting_and_origin() {
        for (raw, key) in [
            (
                Raw {
                    listen: Some("localhost".into()),
                    ..Raw::default()
                },
                "listen",
            ),
            (
                Raw {
                    data_dir: Some("rel".into()),
                    ..Raw::default()
                },
                "data_dir",
            ),
            (
                Raw {
                    memory_budget: Some("lots".into()),
                    ..Raw::default()
                },
                "memory_budget",
            ),
            (
                Raw {
                    default_ttl: Some("0s".into()),
                    ..Raw::default()
                },
                "default_ttl",
            ),
            (
                Raw {
                    egress_hosts: Some("a.test=127.0.0.1,nope".into()),
                    ..Raw::default()
                },
                "egress_hosts",
            ),
            (
                Raw {
                    max_sandboxes: Some(0),
                    ..Raw::default()
                },
                "max_sandboxes",
            ),
            (
                Raw {
                    allowed_mounts: Some(vec!["/a/../etc".into()]),
                    ..Raw::default()
                },
                "allowed_mounts",
            ),
            (
                Raw {
                    listen: Some("none".into()),
                    socket: Some("none".into()),
                    ..Raw::default()
                },
                "listen",
            ),
        ] {
            let e = raw.resolve("flags").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("flags"), "{e}");
        }
    }

    #[test]
    fn toml_unknown_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("aibox-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "listne = \"127.0.0.1:1\"\n").unwrap();
        let e = Raw::from_toml_file(&f).unwrap_err().to_string();
        assert!(e.contains("listne"), "{e}");
        std::fs::write(&f, "listen = \"127.0.0.1:9\"\nmax_sandboxes = 3\n").unwrap();
        let r = Raw::from_toml_file(&f).unwrap();
        assert_eq!(r.max_sandboxes, Some(3));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
