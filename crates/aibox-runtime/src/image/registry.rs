//! Pulling images from a registry (the OCI distribution protocol): the
//! manifest (or an index, from which the host's platform is chosen), the
//! config and the layers, each checked against its digest; layers already
//! in the store are not fetched again.
//!
//! Authentication: anonymous first; on a `401` the registry's challenge is
//! followed — `Bearer` (a token from the realm it names, with credentials
//! when there are some) or `Basic`. Credentials come from `AIBOX_REGISTRY_USER`
//! and `AIBOX_REGISTRY_PASSWORD`, else from the docker config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths`).
//!
//! Plain HTTP is used only for loopback registries or those the caller
//! names as insecure; everything else is HTTPS (Mozilla's roots).

use crate::image::oci::{self, sha256_hex, ImageMeta, OciError, Store};
use serde::Deserialize;
use std::io::Read;
use std::time::Duration;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as used in URLs (`registry-1.docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

impl Reference {
    /// `[registry/]repo[:tag|@digest]`, as `docker pull` reads it.
    pub fn parse(s: &str) -> Result<Reference, OciError> {
        let bad = || {
            OciError::Invalid(format!(
                "{s:?} is not an image reference (REGISTRY/REPO:TAG or REPO@sha256:...)"
            ))
        };
        if s.is_empty() || s.len() > 512 || s.contains("://") || s.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                oci::digest_hex(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (first, remainder) = match rest.split_once('/') {
            Some((f, r)) if f.contains('.') || f.contains(':') || f == "localhost" => {
                (Some(f.to_string()), r.to_string())
            }
            _ => (None, rest.to_string()),
        };
        let (repo, tag) = match remainder.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
            _ => (remainder.clone(), None),
        };
        let valid_repo = !repo.is_empty()
            && repo.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repo {
            return Err(bad());
        }
        if let Some(t) = &tag {
            if t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(bad());
            }
        }
        if let Some(r) = &first {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
                _ => (r.as_str(), None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b));
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(bad());
            }
        }
        let (registry, repository) = match first {
            Some(r) if r == "docker.io" || r == "index.docker.io" => {
                ("registry-1.docker.io".to_string(), library(&repo))
            }
            Some(r) => (r, repo),
            None => ("registry-1.docker.io".to_string(), library(&repo)),
        };
        Ok(Reference {
            registry,
            repository,
            reference: digest.or(tag).unwrap_or_else(|| "latest".into()),
        })
    }

    /// Is the registry on this host's loopback?
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => self.registry.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Docker Hub's official images live under `library/`.
fn library(repo: &str) -> String {
    if repo.contains('/') {
        repo.to_string()
    } else {
        format!("library/{repo}")
    }
}

/// Username and password for a registry.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in debug output.
        write!(f, "Credentials({}, ***)", self.user)
    }
}

/// Credentials for `registry`: `AIBOX_REGISTRY_USER` and
/// `AIBOX_REGISTRY_PASSWORD` when `AIBOX_REGISTRY` names this registry
/// (they are never offered to any other: an image reference or a
/// Dockerfile's `FROM` picks the registry, and with it who would see them;
/// the review's M5), else the docker config's entry for it.
pub fn credentials_for(registry: &str) -> Option<Credentials> {
    if let (Ok(user), Ok(password), Ok(scope)) = (
        std::env::var("AIBOX_REGISTRY_USER"),
        std::env::var("AIBOX_REGISTRY_PASSWORD"),
        std::env::var("AIBOX_REGISTRY"),
    ) {
        if scope.trim().eq_ignore_ascii_case(registry) {
            return Some(Credentials { user, password });
        }
    }
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(|d| std::path::PathBuf::from(d).join("config.json"))
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".docker/config.json"))
        })?;
    let text = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let keys = if registry == "registry-1.docker.io" {
        vec![
            "https://index.docker.io/v1/".to_string(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let encoded = keys
        .iter()
        .find_map(|k| auths.get(k)?.get("auth")?.as_str())?;
    let decoded = base64_decode(encoded)?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// May a token realm see the registry's credentials? Only on the
/// registry's own `host[:port]`, or Docker Hub's token service for Docker
/// Hub.
fn realm_trusted(realm: &str, registry: &str) -> bool {
    let host = realm
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("");
    host.eq_ignore_ascii_case(registry)
        || (registry == "registry-1.docker.io" && host.eq_ignore_ascii_case("auth.docker.io"))
}

/// A `WWW-Authenticate` challenge: scheme and parameters.
fn parse_challenge(h: &str) -> Option<(String, std::collections::HashMap<String, String>)> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = std::collections::HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k.trim().to_ascii_lowercase(), v);
        rest = next.trim_start_matches([',', ' ']);
    }
    Some((scheme.to_ascii_lowercase(), params))
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    reference: Reference,
    credentials: Option<Credentials>,
    /// The `Authorization` header value once a challenge was answered.
    auth: Option<String>,
}

fn http_err(what: &str) -> impl FnOnce(ureq::Error) -> OciError + '_ {
    move |e| OciError::Unreachable(format!("{what}: {e}"))
}

impl Client {
    /// `insecure`: plain HTTP allowed for this (non-loopback) registry.
    pub fn new(reference: Reference, insecure: bool) -> Client {
        let scheme = if insecure || reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(format!("aibox/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: format!(
                "{scheme}://{}/v2/{}",
                reference.registry, reference.repository
            ),
            credentials: credentials_for(&reference.registry),
            reference,
            auth: None,
        }
    }

    pub fn with_credentials(mut self, c: Option<Credentials>) -> Client {
        if c.is_some() {
            self.credentials = c;
        }
        self
    }

    /// GET `path` (under the repository), answering one auth challenge.
    fn get(
        &mut self,
        path: &str,
        accept: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, OciError> {
        let url = format!("{}/{path}", self.base);
        for attempt in 0..2 {
            let mut req = self.agent.get(&url).header("Accept", accept);
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(http_err(&format!("GET {url}")))?;
            match resp.status().as_u16() {
                200 => return Ok(resp),
                401 if attempt == 0 => {
                    let challenge = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.auth = Some(self.answer(&challenge)?);
                }
                401 | 403 => {
                    return Err(OciError::Denied(format!(
                        "{} refused access to {}{}",
                        self.reference.registry,
                        self.reference.repository,
                        if self.credentials.is_some() {
                            " with the credentials given"
                        } else {
                            ": set AIBOX_REGISTRY_USER and AIBOX_REGISTRY_PASSWORD, or log in with docker"
                        }
                    )))
                }
                404 => {
                    return Err(OciError::ImageNotFound(format!(
                        "{}/{}:{} ({path} answered 404)",
                        self.reference.registry,
                        self.reference.repository,
                        self.reference.reference
                    )))
                }
                s => {
                    return Err(OciError::Invalid(format!(
                        "{} answered {s} to GET {path}",
                        self.reference.registry
                    )))
                }
            }
        }
        Err(OciError::Invalid("authentication failed".into()))
    }

    /// The `Authorization` value for a challenge.
    fn answer(&self, challenge: &str) -> Result<String, OciError> {
        let (scheme, params) = parse_challenge(challenge).ok_or_else(|| {
            OciError::Invalid(format!(
                "{} asked for authentication without a usable challenge ({challenge:?})",
                self.reference.registry
            ))
        })?;
        let basic = self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64_encode(format!("{}:{}", c.user, c.password).as_bytes())
            )
        });
        match scheme.as_str() {
            "basic" => basic.ok_or_else(|| {
                OciError::Denied(format!(
                    "{} needs credentials: set AIBOX_REGISTRY_USER and AIBOX_REGISTRY_PASSWORD",
                    self.reference.registry
                ))
            }),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    OciError::Invalid("a bearer challenge without a realm".into())
                })?;
                if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                    return Err(OciError::Invalid(format!(
                        "token realm {realm:?} is no URL"
                    )));
                }
                if self.base.starts_with("https://") && realm.starts_with("http://") {
                    return Err(OciError::Denied(format!(
                        "{} sent its token service to plain HTTP ({realm}): refused",
                        self.reference.registry
                    )));
                }
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                // Credentials go to the registry's own host (and Docker
                // Hub's token service) only: a realm elsewhere gets an
                // anonymous request (a registry cannot send them away).
                let trusted = realm_trusted(realm, &self.reference.registry);
                if let (Some(b), true) = (&basic, trusted) {
                    req = req.header("Authorization", b);
                }
                let mut resp = req.call().map_err(http_err("token request"))?;
                if resp.status().as_u16() != 200 {
                    return Err(OciError::Denied(format!(
                        "the token service at {realm} answered {}{}",
                        resp.status().as_u16(),
                        if basic.is_none() {
                            " (no credentials were sent)"
                        } else {
                            ""
                        }
                    )));
                }
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(http_err("token response"))?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| OciError::Invalid(format!("token response: {e}")))?;
                let t = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| OciError::Invalid("the token response holds no token".into()))?;
                Ok(format!("Bearer {t}"))
            }
            other => Err(OciError::Invalid(format!(
                "{} asks for {other} authentication, which aibox does not speak",
                self.reference.registry
            ))),
        }
    }

    /// A JSON document (manifest or index), its media type and digest.
    fn document(&mut self, reference: &str) -> Result<(Vec<u8>, String, String), OciError> {
        let mut resp = self.get(&format!("manifests/{reference}"), MANIFEST_TYPES)?;
        let media = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(http_err("reading a manifest"))?;
        let digest = format!("sha256:{}", sha256_hex(&body));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(OciError::Digest {
                what: "a manifest".into(),
                expected: reference.into(),
                actual: digest,
            });
        }
        Ok((body, media, digest))
    }

    fn blob(&mut self, digest: &str) -> Result<ureq::Body, OciError> {
        oci::digest_hex(digest)?;
        Ok(self.get(&format!("blobs/{digest}"), "*/*")?.into_body())
    }

    /// Pull the image into `store` as template `name`. `progress` gets
    /// (what, bytes so far, total).
    pub fn pull(
        &mut self,
        store: &Store,
        name: &str,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<ImageMeta, OciError> {
        if !oci::valid_name(name) {
            return Err(OciError::Invalid(format!(
                "{name:?} is not a valid template name"
            )));
        }
        let _lock = store.lock_shared()?;
        let mut reference = self.reference.reference.clone();
        let (manifest, digest) = loop {
            let (body, media, digest) = self.document(&reference)?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| OciError::Invalid(format!("manifest: {e}")))?;
            let is_index = v.get("manifests").is_some()
                || media.contains("index")
                || media.contains("manifest.list");
            if !is_index {
                break (v, digest);
            }
            let arch = oci::host_arch();
            let pick = v["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| {
                    OciError::Invalid(format!("the image has no linux/{arch} variant"))
                })?;
            if reference.starts_with("sha256:") && reference == pick {
                return Err(OciError::Invalid("the image index points to itself".into()));
            }
            reference = pick.to_string();
        };
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| OciError::Invalid("the manifest names no config".into()))?
            .to_string();
        let layers: Vec<(String, u64)> = manifest["layers"]
            .as_array()
            .ok_or_else(|| OciError::Invalid("the manifest lists no layers".into()))?
            .iter()
            .map(|l| {
                Ok((
                    l["digest"]
                        .as_str()
                        .ok_or_else(|| OciError::Invalid("a layer without a digest".into()))?
                        .to_string(),
                    l["size"].as_u64().unwrap_or(0),
                ))
            })
            .collect::<Result<_, OciError>>()?;
        if layers.len() > oci::MAX_LAYERS {
            return Err(OciError::Limit(format!(
                "the image has {} layers; at most {}",
                layers.len(),
                oci::MAX_LAYERS
            )));
        }
        let config_bytes = {
            let mut b = Vec::new();
            self.blob(&config_digest)?
                .into_reader()
                .take(4 << 20)
                .read_to_end(&mut b)
                .map_err(|e| OciError::Invalid(format!("reading the config: {e}")))?;
            let actual = format!("sha256:{}", sha256_hex(&b));
            if actual != config_digest {
                return Err(OciError::Digest {
                    what: "the image config".into(),
                    expected: config_digest,
                    actual,
                });
            }
            b
        };
        let config = oci::parse_config(&config_bytes)?;
        let mut metas = Vec::new();
        let total = layers.len();
        for (i, (d, size)) in layers.iter().enumerate() {
            let label = format!("layer {}/{total} {}", i + 1, &d[7..19.min(d.len())]);
            if let Some(have) = store.present_layer(d) {
                progress(&format!("{label} (present)"), *size, *size);
                metas.push(have);
                continue;
            }
            let mut body = self.blob(d)?.into_reader();
            metas.push(store.add_layer(d, &mut body, &mut |n| progress(&label, n, *size))?);
        }
        oci::check_diff_ids(&config_bytes, &metas)?;
        let meta = ImageMeta {
            name: name.to_string(),
            digest,
            layers: metas,
            config,
            created_ms: crate::now_ms(),
            source: format!(
                "{}/{}:{}",
                self.reference.registry, self.reference.repository, self.reference.reference
            ),
            base: None,
        };
        store.save(&meta)?;
        Ok(meta)
    }
}

/// A template name for a reference: as written, with `:latest` when it
/// names neither a tag nor a digest.
pub fn default_name(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || reference.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m5_credentials_go_only_to_their_registry() {
        assert!(realm_trusted(
            "http://127.0.0.1:5000/token",
            "127.0.0.1:5000"
        ));
        assert!(realm_trusted("https://ghcr.io/token?x=1", "ghcr.io"));
        assert!(realm_trusted(
            "https://auth.docker.io/token",
            "registry-1.docker.io"
        ));
        for (realm, registry) in [
            ("https://evil.example/token", "ghcr.io"),
            ("https://ghcr.io.evil.example/token", "ghcr.io"),
            ("https://ghcr.io@evil.example/token", "ghcr.io"),
            ("http://127.0.0.1:5001/token", "127.0.0.1:5000"),
            ("https://auth.docker.io/token", "ghcr.io"),
        ] {
            assert!(!realm_trusted(realm, registry), "{realm} for {registry}");
        }
    }

    #[test]
    fn references_parse_like_docker_reads_them() {
        let r = |s: &str| Reference::parse(s).map(|r| (r.registry, r.repository, r.reference));
        assert_eq!(
            r("busybox").unwrap(),
            (
                "registry-1.docker.io".into(),
                "library/busybox".into(),
                "latest".into()
            )
        );
        assert_eq!(
            r("docker.io/team/tool:2").unwrap(),
            (
                "registry-1.docker.io".into(),
                "team/tool".into(),
                "2".into()
            )
        );
        assert_eq!(
            r("127.0.0.1:5000/test/bb:1").unwrap(),
            ("127.0.0.1:5000".into(), "test/bb".into(), "1".into())
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            r(&format!("ghcr.io/o/r@{d}")).unwrap(),
            ("ghcr.io".into(), "o/r".into(), d)
        );
        assert_eq!(r("localhost/x").unwrap().0, "localhost");
        for bad in [
            "",
            "UP/per",
            "a b",
            "x:",
            "http://x/y",
            "x@sha256:zz",
            "a//b",
            "x:t/u",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::parse("127.0.0.1:5000/a").unwrap().is_loopback());
        assert!(Reference::parse("localhost:5000/a").unwrap().is_loopback());
        assert!(
            Reference::parse("[::1]:5000/a").is_err()
                || Reference::parse("[::1]:5000/a").unwrap().is_loopback()
        );
        assert!(!Reference::parse("example.com/a").unwrap().is_loopback());
    }

    #[test]
    fn challenges_and_base64() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        for text in ["", "a", "ab", "abc", "user:pässword"] {
            assert_eq!(
                base64_decode(&base64_encode(text.as_bytes())).unwrap(),
                text.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"aibox:secret"), "YWlib3g6c2VjcmV0");
        let c = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
