//! The aibox control plane (`aibox serve`): persistent sandboxes over a REST
//! API under `/v1`, with state in SQLite, bearer API keys, a hash-chained
//! audit log, capacity limits and a TTL reaper.
//!
//! The server never clones namespaces itself (it is multi-threaded): the
//! runtime re-executes `aibox internal-create` for that. Sandboxes outlive
//! the server; on start it re-adopts what runs and cleans what is half-made.

#![forbid(unsafe_code)]
// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

pub mod agentops;
pub mod audit;
pub mod auth;
pub mod config;
pub mod control;
pub mod dns;
pub mod egress;
pub mod engine;
pub mod error;
pub mod fairness;
pub mod keys;
pub mod l4;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod ports;
pub mod resolver;
pub mod sandboxes;
pub mod session;
pub mod snapshots;
pub mod store;
pub mod streaming;
pub mod templates;
pub mod tunnel;
pub mod ui;
pub mod volumes;
pub mod wire;
pub mod ws;

use crate::auth::{LocalSocket, Principal};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::store::{Scope, Store};
use aibox_types::ErrorCode;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) use aibox_types::now_ms;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    store: Arc<Store>,
    /// Writes the audit log off the request path.
    auditor: audit::Auditor,
    engine: Arc<dyn Engine>,
    create_lock: tokio::sync::Mutex<()>,
    metrics: metrics::Metrics,
    limiter: auth::RateLimiter,
    /// Sandboxes being snapshotted (count per id): they are frozen and
    /// thawed by the snapshot, so pause, resume, delete and the reaper
    /// leave them alone meanwhile.
    busy: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Sandboxes with network: their egress policy (replaced atomically;
    /// each connection takes the policy of its moment) and listener task.
    egress: std::sync::Mutex<std::collections::HashMap<String, EgressEntry>>,
    /// Idle keep-alive connections to published ports.
    port_pool: ports::Pool,
    /// Dashboard sessions.
    sessions: session::Sessions,
    /// Each key's share of long calls and WebSockets.
    shares: fairness::Shares,
}

struct EgressEntry {
    policy: Arc<std::sync::RwLock<aibox_types::egress::Policy>>,
    /// The proxy's listener, and the L4 path's TCP and DNS servers.
    tasks: Vec<tokio::task::AbortHandle>,
    /// The L4 path: its link and the ports its table sends to.
    l4: Option<(l4::Link, u16, u16)>,
}

/// Marks a sandbox busy until dropped.
pub struct Busy {
    state: AppState,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut b = self.state.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = b.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                b.remove(&self.id);
            }
        }
    }
}

impl AppState {
    pub fn new(config: Config, store: Store, engine: Arc<dyn Engine>) -> AppState {
        let store = Arc::new(store);
        AppState(Arc::new(Inner {
            config,
            auditor: audit::Auditor::start(store.clone()),
            store,
            engine,
            create_lock: tokio::sync::Mutex::new(()),
            metrics: metrics::Metrics::default(),
            limiter: auth::RateLimiter::default(),
            busy: Default::default(),
            egress: Default::default(),
            port_pool: Default::default(),
            sessions: Default::default(),
            shares: Default::default(),
        }))
    }

    /// Serve a sandbox's egress socket with the policy of its spec, and
    /// give it the L4 path when the host can and the spec does not ask for
    /// the proxy alone. The report says what it got (None: no network).
    /// Fails only when the spec demands L4 and it cannot be had.
    pub async fn start_egress(
        &self,
        id: &str,
        spec: &aibox_types::SandboxSpec,
    ) -> ApiResult<Option<aibox_types::egress::EgressReport>> {
        use aibox_types::egress::{l4_report, proxy_report, Enforcement, Policy};
        if spec.network == aibox_types::NetworkMode::None {
            return Ok(None);
        }
        let engine = self.engine();
        let sid = id.to_string();
        let Ok(Some((path, uid))) =
            tokio::task::spawn_blocking(move || engine.egress_socket(&sid)).await
        else {
            return Ok(None);
        };
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| ApiError::internal("listening for egress", e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            if let Some(uid) = uid {
                let _ = std::os::unix::fs::chown(&path, Some(uid), Some(uid));
            }
        }
        let policy = Arc::new(std::sync::RwLock::new(Policy {
            mode: spec.network,
            rules: spec.network_rules.clone(),
        }));
        let resolver: Arc<dyn egress::Resolve> = Arc::new(egress::HostResolver {
            overrides: self.config().egress_hosts.clone(),
        });
        let (state, sid) = (self.clone(), id.to_string());
        let report: l4::Report = Arc::new(move |e: egress::Event| {
            state.metrics().count_egress(e.allowed);
            state.audit(
                "egress",
                if e.allowed {
                    "egress.allow"
                } else {
                    "egress.deny"
                },
                Some(&sid),
                json!({"destination": e.destination, "rule": e.rule, "reason": e.reason}),
            );
        });
        let wanted = spec.network_enforcement;
        // Per-connection checks: on a link from the host (root), or
        // through the agent (without root); else the proxy alone.
        let mut l4_host = None;
        let mut agent_names = None;
        let backend = aibox_runtime::backend_of(spec.backend);
        let outcome: Result<aibox_types::egress::EgressReport, Option<String>> = match wanted {
            Some(Enforcement::Proxy) => Err(None),
            _ if backend.no_per_connection_egress().is_some() => {
                Err(backend.no_per_connection_egress().map(str::to_string))
            }
            _ => match l4::support() {
                Err(why) => Err(Some(why)),
                Ok(l4::Path::Host) => self
                    .start_l4(id, spec.network, &policy, &resolver, &report)
                    .await
                    .map(|started| {
                        l4_host = Some(started);
                        l4_report(spec.network)
                    })
                    .map_err(Some),
                Ok(l4::Path::Agent) => self
                    .start_agent_l4(id)
                    .await
                    .map(|names| {
                        agent_names = Some(names);
                        l4::agent_report(spec.network)
                    })
                    .map_err(Some),
            },
        };
        let (p2, r2, res2, n2) = (
            policy.clone(),
            report.clone(),
            resolver.clone(),
            agent_names.clone(),
        );
        let proxy = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (policy, report, resolver, names) =
                    (p2.clone(), r2.clone(), res2.clone(), n2.clone());
                tokio::spawn(async move {
                    let now = policy.read().unwrap_or_else(|p| p.into_inner()).clone();
                    let _ = egress::serve_with(
                        conn,
                        &now,
                        resolver.as_ref(),
                        &*report,
                        names.as_deref(),
                    )
                    .await;
                });
            }
        });
        let mut entry = EgressEntry {
            policy: policy.clone(),
            tasks: vec![proxy.abort_handle()],
            l4: None,
        };
        if let Some((link, tcp, dns, tasks)) = l4_host {
            entry.tasks.extend(tasks);
            entry.l4 = Some((link, tcp, dns));
        }
        let result = match outcome {
            Ok(report) => Ok(Some(report)),
            Err(why) if wanted == Some(Enforcement::L4) => Err(ApiError::new(
                ErrorCode::IsolationUnavailable,
                format!(
                    "L4 egress was required but cannot be given: {}",
                    why.unwrap_or_default()
                ),
            )),
            Err(why) => Ok(Some(proxy_report(spec.network, why.as_deref()))),
        };
        let old = self
            .0
            .egress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), entry);
        if let Some(old) = old {
            old.tasks.iter().for_each(|t| t.abort());
        }
        result
    }

    /// The L4 path of one sandbox: its link (made, or found again after a
    /// restart), the TCP and DNS servers on the link's host address, the
    /// nftables table sending to them, and its resolv.conf.
    async fn start_l4(
        &self,
        id: &str,
        mode: aibox_types::NetworkMode,
        policy: &Arc<std::sync::RwLock<aibox_types::egress::Policy>>,
        resolver: &Arc<dyn egress::Resolve>,
        report: &l4::Report,
    ) -> Result<(l4::Link, u16, u16, Vec<tokio::task::AbortHandle>), String> {
        let engine = self.engine();
        let sid = id.to_string();
        let link = tokio::task::spawn_blocking(move || -> Result<l4::Link, String> {
            if let Some(l) = l4::find(&sid) {
                return Ok(l);
            }
            let pid = engine
                .pid(&sid)
                .ok_or_else(|| format!("sandbox {sid} has no process to attach a link to"))?;
            l4::attach(&sid, pid)
        })
        .await
        .map_err(|e| e.to_string())??;
        let tcp = tokio::net::TcpListener::bind((link.host_ip, 0))
            .await
            .map_err(|e| format!("listening on {}: {e}", link.host_ip))?;
        let udp = tokio::net::UdpSocket::bind((link.host_ip, 0))
            .await
            .map_err(|e| format!("listening on {}: {e}", link.host_ip))?;
        let tcp_port = tcp.local_addr().map_err(|e| e.to_string())?.port();
        let dns_port = udp.local_addr().map_err(|e| e.to_string())?.port();
        let names = Arc::new(l4::Names::default());
        let tasks = vec![
            tokio::spawn(l4::serve_tcp(
                tcp,
                policy.clone(),
                names.clone(),
                report.clone(),
            ))
            .abort_handle(),
            tokio::spawn(l4::serve_dns(
                udp,
                policy.clone(),
                names,
                resolver.clone(),
                report.clone(),
            ))
            .abort_handle(),
        ];
        let script = l4::ruleset(&link, mode, tcp_port, dns_port);
        let engine = self.engine();
        let (sid, host_ip) = (id.to_string(), link.host_ip);
        let applied = tokio::task::spawn_blocking(move || -> Result<(), String> {
            if mode == aibox_types::NetworkMode::Full {
                l4::enable_forwarding()?;
            }
            l4::apply(&script)?;
            write_resolv_conf(engine.as_ref(), &sid, host_ip)
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Err(e) = applied {
            tasks.iter().for_each(|t| t.abort());
            let sid = id.to_string();
            let _ = tokio::task::spawn_blocking(move || l4::detach(&sid)).await;
            return Err(e);
        }
        Ok((link, tcp_port, dns_port, tasks))
    }

    /// Put what egress a sandbox got into its isolation report.
    pub fn record_egress(
        &self,
        row: &crate::store::Row,
        report: Option<aibox_types::egress::EgressReport>,
    ) {
        let Some(report) = report else { return };
        let mut iso = row.isolation.clone();
        if !iso.is_object() {
            return;
        }
        iso["network"] = json!(report.enforcement);
        iso["egress"] = json!(report);
        let _ = self.store().set_isolation(&row.id, &iso);
    }

    /// Per-connection checks through the agent (rootless): nftables in the
    /// sandbox's namespace sends its TCP and DNS to the agent, which asks
    /// the server on the egress socket.
    async fn start_agent_l4(&self, id: &str) -> Result<Arc<l4::Names>, String> {
        let engine = self.engine();
        let sid = id.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let pid = engine
                .pid(&sid)
                .ok_or_else(|| format!("sandbox {sid} has no process"))?;
            l4::attach_inside(pid)?;
            write_resolv_conf(engine.as_ref(), &sid, l4::INSIDE_ADDR)
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Arc::new(l4::Names::default()))
    }

    pub(crate) async fn stop_egress(&self, id: &str) {
        let gone = self
            .0
            .egress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(e) = gone {
            e.tasks.iter().for_each(|t| t.abort());
            if e.l4.is_some() {
                let sid = id.to_string();
                let _ = tokio::task::spawn_blocking(move || l4::detach(&sid)).await;
            }
        }
    }

    /// Replace a running sandbox's egress policy: new connections see it
    /// (and a new mode is applied to its nftables table).
    pub async fn set_egress_policy(
        &self,
        id: &str,
        policy: aibox_types::egress::Policy,
    ) -> ApiResult<bool> {
        let l4 = {
            let map = self.0.egress.lock().unwrap_or_else(|p| p.into_inner());
            let Some(e) = map.get(id) else {
                return Ok(false);
            };
            let mut p = e.policy.write().unwrap_or_else(|p| p.into_inner());
            let mode_changed = p.mode != policy.mode;
            *p = policy.clone();
            e.l4.clone().filter(|_| mode_changed)
        };
        if let Some((link, tcp, dns)) = l4 {
            let script = l4::ruleset(&link, policy.mode, tcp, dns);
            tokio::task::spawn_blocking(move || {
                if policy.mode == aibox_types::NetworkMode::Full {
                    l4::enable_forwarding()?;
                }
                l4::apply(&script)
            })
            .await
            .map_err(|e| ApiError::internal("network task", e))?
            .map_err(|e| ApiError::internal("applying the network mode", e))?;
        }
        Ok(true)
    }

    pub fn busy(&self, id: &str) -> Busy {
        let mut b = self.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        *b.entry(id.to_string()).or_insert(0) += 1;
        Busy {
            state: self.clone(),
            id: id.to_string(),
        }
    }

    fn is_busy(&self, id: &str) -> bool {
        self.0
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    pub fn check_not_busy(&self, id: &str) -> ApiResult<()> {
        if self.is_busy(id) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("a snapshot of sandbox {id} is being taken; try again when it is done"),
            )
            .retry_after(1));
        }
        Ok(())
    }
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn store(&self) -> &Store {
        &self.0.store
    }
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.0.engine.clone()
    }
    /// The engine, borrowed (for calls that do not outlive the request).
    pub fn engine_ref(&self) -> &dyn Engine {
        self.0.engine.as_ref()
    }
    pub fn shares(&self) -> &fairness::Shares {
        &self.0.shares
    }
    pub fn port_pool(&self) -> &ports::Pool {
        &self.0.port_pool
    }

    pub fn sessions(&self) -> &session::Sessions {
        &self.0.sessions
    }

    pub fn limiter(&self) -> &auth::RateLimiter {
        &self.0.limiter
    }
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }
    fn create_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.0.create_lock
    }

    /// Record an audit event (written by the audit thread, in order; a
    /// failure to write is logged, never hidden).
    pub fn audit(&self, actor: &str, action: &str, sandbox: Option<&str>, detail: Value) {
        self.0.auditor.record(store::AuditEvent {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            sandbox: sandbox.map(str::to_string),
            detail,
        });
    }

    /// Wait until every event recorded so far is in the database.
    pub fn flush_audit(&self) {
        self.0.auditor.flush();
    }

    /// Destroy a sandbox and forget it.
    pub async fn destroy(&self, id: &str) -> ApiResult<()> {
        let row = self.store().get(id).ok().flatten();
        self.stop_egress(id).await;
        self.port_pool().forget(id);
        let engine = self.engine();
        let sid = id.to_string();
        tokio::task::spawn_blocking(move || engine.destroy(&sid))
            .await
            .map_err(|e| ApiError::internal("destroy task", e))??;
        self.store()
            .remove(id)
            .map_err(|e| ApiError::internal("remove", e))?;
        if let Some(row) = row {
            control::workspaces::sandbox_ended(self, &row);
        }
        Ok(())
    }

    /// Reconcile the database with what runs: keep live sandboxes, forget
    /// lost ones, destroy sandboxes nobody recorded (a create interrupted by
    /// a crash). Never touches a sandbox that has a row.
    pub async fn adopt(&self) -> ApiResult<()> {
        let engine = self.engine();
        let running = tokio::task::spawn_blocking(move || {
            engine.gc();
            engine.running()
        })
        .await
        .map_err(|e| ApiError::internal("adopt task", e))?;
        let _ = tokio::task::spawn_blocking(l4::gc).await;
        let rows = self
            .store()
            .all()
            .map_err(|e| ApiError::internal("adopt", e))?;
        for r in &rows {
            if running.contains(&r.id) {
                if r.state != "running" && r.state != "paused" {
                    let _ = self.store().set_state(&r.id, "running");
                }
                if let Ok(spec) = serde_json::from_value::<aibox_types::SandboxSpec>(r.spec.clone())
                {
                    match self.start_egress(&r.id, &spec).await {
                        Ok(report) => self.record_egress(r, report),
                        Err(e) => {
                            tracing::error!(sandbox_id = %r.id, error = %e.message, "egress after restart")
                        }
                    }
                }
            } else {
                let _ = self.store().remove(&r.id);
                self.audit(
                    "server",
                    "sandbox.lost",
                    Some(&r.id),
                    json!({"state": r.state}),
                );
            }
        }
        self.adopt_snapshots().await?;
        // Volumes a killed server made but did not record.
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || control::volumes::reconcile(&me)).await;
        for id in running {
            if !rows.iter().any(|r| r.id == id) {
                tracing::warn!(sandbox_id = %id, "destroying a sandbox with no record (interrupted create)");
                let engine = self.engine();
                let sid = id.clone();
                let _ = tokio::task::spawn_blocking(move || engine.destroy(&sid)).await;
                self.audit("server", "sandbox.orphan_destroyed", Some(&id), json!({}));
            }
        }
        Ok(())
    }

    /// Snapshots: forget rows whose data is gone, delete data nobody
    /// recorded (a snapshot interrupted between its copy and its row).
    async fn adopt_snapshots(&self) -> ApiResult<()> {
        let engine = self.engine();
        let on_disk = tokio::task::spawn_blocking(move || engine.snapshot_ids())
            .await
            .map_err(|e| ApiError::internal("adopt task", e))?;
        let rows = self
            .store()
            .snapshots(None)
            .map_err(|e| ApiError::internal("adopt", e))?;
        for s in &rows {
            if !on_disk.contains(&s.id) {
                let _ = self.store().remove_snapshot(&s.id);
                self.audit(
                    "server",
                    "snapshot.lost",
                    Some(&s.source),
                    json!({"snapshot": s.id}),
                );
            }
        }
        for id in on_disk {
            if !rows.iter().any(|s| s.id == id) {
                tracing::warn!(snapshot_id = %id, "deleting a snapshot with no record (interrupted snapshot)");
                let engine = self.engine();
                let sid = id.clone();
                let _ = tokio::task::spawn_blocking(move || engine.delete_snapshot(&sid)).await;
            }
        }
        Ok(())
    }

    /// Destroy running sandboxes whose TTL has passed or that were idle
    /// too long. Paused sandboxes keep their remaining TTL and never idle out.
    pub async fn reap(&self) {
        let now = now_ms();
        let Ok(rows) = self.store().all() else { return };
        for r in rows {
            if r.state != "running" || self.is_busy(&r.id) {
                continue;
            }
            let why = if r.expires_ms.is_some_and(|e| e <= now) {
                "sandbox.expired"
            } else if r
                .idle_timeout_ms
                .is_some_and(|t| r.last_active_ms.saturating_add(t) <= now)
            {
                "sandbox.idle_expired"
            } else {
                continue;
            };
            match self.destroy(&r.id).await {
                Ok(()) => self.audit("server", why, Some(&r.id), json!({})),
                Err(e) => tracing::warn!(sandbox_id = %r.id, error = %e.message, "reaping failed"),
            }
        }
    }
}

/// `Json<T>` whose rejections are API errors with stable codes.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase());
        let json = media
            .as_deref()
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !json {
            return Err(ApiError::invalid(
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rej| {
                if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
                } else {
                    ApiError::invalid("the request body could not be read")
                }
            })?;
        crate::error::parse_json(&bytes).map(ApiJson)
    }
}

/// Liveness for anyone (load balancers, probes); capacity only for a key.
async fn health(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    local: Option<Extension<LocalSocket>>,
) -> ApiResult<Json<aibox_types::api::Health>> {
    let mut v = aibox_types::api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        sandboxes: None,
        memory: None,
        activity: None,
        limits: None,
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let authed = local.is_some()
        || match bearer {
            Some(k) => matches!(state.store().find_key(k.trim()), Ok(Some(_))),
            None => matches!(
                session::session_key(&state, &axum::http::Method::GET, &headers),
                Some(Ok(_))
            ),
        };
    if authed {
        let rows = state
            .store()
            .all()
            .map_err(|e| ApiError::internal("health", e))?;
        let active: Vec<_> = rows
            .iter()
            .filter(|r| ["creating", "running", "paused"].contains(&r.state.as_str()))
            .collect();
        let used: u64 = active
            .iter()
            .filter_map(|r| serde_json::from_value::<aibox_types::SandboxSpec>(r.spec.clone()).ok())
            .map(|s| s.memory_bytes())
            .sum();
        let count = |s: &str| active.iter().filter(|r| r.state == s).count();
        v.sandboxes = Some(json!({
            "active": active.len(),
            "max": state.config().max_sandboxes,
            "running": count("running"),
            "paused": count("paused"),
            "creating": count("creating"),
        }));
        v.memory = Some(json!({"budget": state.config().memory_budget, "reserved": used}));
        v.activity = Some(state.metrics().activity());
        v.limits = Some(aibox_types::api::HealthLimits {
            default_ttl_seconds: state.config().default_ttl.as_secs(),
            max_ttl_seconds: state.config().max_ttl.as_secs(),
        });
    }
    Ok(Json(v))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// `GET /v1/audit` (admin): see `control::audit::list`.
async fn audit_list(
    State(state): State<AppState>,
    who: Principal,
    axum::extract::Query(q): axum::extract::Query<aibox_types::api::AuditQuery>,
) -> ApiResult<Json<aibox_types::api::AuditList>> {
    control::audit::list(&state, &who, q).await.map(Json)
}

/// Every error leaves as the JSON envelope with a stable code, including
/// the ones axum's extractors and router produce as plain text (bad query
/// strings, bodies over the limit, wrong methods).
async fn normalize_errors(resp: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    let status = resp.status();
    if resp.extensions().get::<ports::Proxied>().is_some() {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    };
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() || code == ErrorCode::Internal {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = axum::response::IntoResponse::into_response(ApiError::new(code, message));
    *out.status_mut() = status;
    out
}

/// `GET /v1/audit/verify` (admin): the hash chain holds, or where not.
async fn audit_verify(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<aibox_types::api::AuditVerdict>> {
    control::audit::verify(&state, &who).await.map(Json)
}

/// Point the sandbox's resolver at `ip` (whatever it names, DNS is
/// redirected to the server's answers; the name is for tools that read it).
fn write_resolv_conf(engine: &dyn Engine, id: &str, ip: std::net::Ipv4Addr) -> Result<(), String> {
    let conf = format!("# aibox: DNS answers only names this sandbox may reach\nnameserver {ip}\n");
    let agent = engine.agent(id).map_err(|e| e.message)?;
    let write = |user| {
        agent.write_file(
            "/etc/resolv.conf",
            &mut conf.as_bytes(),
            Some(0o644),
            user,
            false,
        )
    };
    // A rootless sandbox has one identity, which owns its files.
    write(Some(aibox_types::User::Root))
        .or_else(|_| write(None))
        .map(|_| ())
        .map_err(|e| format!("writing /etc/resolv.conf: {e}"))
}

/// The API, and the MCP server at `/mcp` (streamable HTTP) on top of it.
/// Tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let api = rest(state.clone());
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    if let Some(addr) = state.config().listen {
        hosts.push(addr.ip().to_string());
        hosts.push(addr.to_string());
    }
    let service = aibox_mcp::http_service(Arc::new(mcp::ControlApi::new(state.clone())), hosts);
    api.route_service(
        "/mcp",
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(
                state,
                mcp::authenticate,
            ))
            .service(service),
    )
}

/// The REST API alone.
fn rest(state: AppState) -> Router {
    let max_body = usize::try_from(state.config().max_body).unwrap_or(usize::MAX);
    let uploads = Router::new()
        .route(
            "/v1/sandboxes/{id}/files",
            get(sandboxes::read_file)
                .put(sandboxes::write_file)
                .delete(agentops::delete),
        )
        .route(
            "/v1/sandboxes/{id}/tar",
            get(agentops::tar_download).put(agentops::tar_upload),
        )
        .layer(DefaultBodyLimit::max(max_body));
    // Calls that hold a blocking thread or a connection for as long as the
    // sandbox wants: each takes a permit from its key's share.
    let agent = Router::new()
        .route("/v1/sandboxes/{id}/exec", post(sandboxes::exec))
        .route("/v1/sandboxes/{id}/snapshots", post(snapshots::create))
        .layer(DefaultBodyLimit::max(1 << 20))
        .route("/v1/sandboxes/{id}/files/list", get(agentops::list))
        .route("/v1/sandboxes/{id}/files/stat", get(agentops::stat))
        .route("/v1/sandboxes/{id}/files/mkdir", post(agentops::mkdir))
        .route("/v1/sandboxes/{id}/files/rename", post(agentops::rename))
        .route(
            "/v1/sandboxes/{id}/processes",
            post(agentops::start).get(agentops::procs),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}",
            get(agentops::proc_get),
        )
        .route("/v1/sandboxes/{id}/exec/ws", get(ws::exec))
        .route("/v1/sandboxes/{id}/processes/{pid}/attach", get(ws::attach))
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/wait",
            post(agentops::proc_wait),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/kill",
            post(agentops::proc_kill),
        )
        .route(
            "/v1/sandboxes/{id}/processes/{pid}/stdin",
            post(agentops::proc_stdin),
        )
        .route("/v1/sandboxes/{id}/forward/{port}", get(ports::forward))
        .merge(uploads)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fairness::limit,
        ));
    Router::new()
        .route("/v1/health", get(health))
        .route(
            "/v1/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/v1/sandboxes/{id}",
            get(sandboxes::get).delete(sandboxes::delete),
        )
        .route("/v1/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/v1/sandboxes/{id}/resume", post(sandboxes::resume))
        .route("/v1/sandboxes/{id}/timeout", post(sandboxes::set_timeout))
        .route(
            "/v1/sandboxes/{id}/network",
            axum::routing::patch(sandboxes::set_network),
        )
        .route(
            "/v1/sandboxes/{id}/ports",
            get(ports::list).patch(ports::update),
        )
        .route("/v1/volumes", post(volumes::create).get(volumes::list))
        .route(
            "/v1/volumes/{volume}",
            get(volumes::get).delete(volumes::delete),
        )
        .route("/v1/volumes/{volume}/snapshots", post(volumes::snapshot))
        .route(
            "/v1/volumes/{volume}/snapshots/{snapshot}",
            axum::routing::delete(volumes::delete_snapshot),
        )
        .route("/v1/volumes/{volume}/clone", post(volumes::clone))
        .route(
            "/v1/workspaces",
            post(volumes::workspaces::create).get(volumes::workspaces::list),
        )
        .route(
            "/v1/workspaces/{workspace}",
            get(volumes::workspaces::get).delete(volumes::workspaces::delete),
        )
        .route(
            "/v1/workspaces/{workspace}/snapshots",
            post(volumes::workspaces::snapshot),
        )
        .route("/v1/snapshots", get(snapshots::list))
        .route(
            "/v1/snapshots/{id}",
            get(snapshots::get).delete(snapshots::delete),
        )
        .route("/v1/snapshots/{id}/restore", post(snapshots::restore))
        .route("/v1/snapshots/{id}/fork", post(snapshots::fork))
        .route("/v1/snapshots/{id}/template", post(templates::promote))
        .route("/v1/templates", get(templates::list))
        .route("/v1/templates/prune", post(templates::prune))
        .route("/v1/templates/build", post(templates::build))
        .route("/v1/templates/pull", post(templates::pull))
        .route(
            "/v1/templates/{*name}",
            get(templates::get).delete(templates::delete),
        )
        .route("/v1/audit", get(audit_list))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route(
            "/v1/keys/{id}",
            axum::routing::delete(keys::revoke).patch(keys::update),
        )
        .layer(DefaultBodyLimit::max(1 << 20))
        .merge(agent)
        .route("/v1/templates/import", post(templates::import))
        .route(
            "/v1/sandboxes/{id}/ports/{port}",
            axum::routing::any(ports::path_route),
        )
        .route(
            "/v1/sandboxes/{id}/ports/{port}/",
            axum::routing::any(ports::path_route),
        )
        .route(
            "/v1/sandboxes/{id}/ports/{port}/{*rest}",
            axum::routing::any(ports::path_route),
        )
        .route("/metrics", get(metrics::render))
        .route("/", get(ui::index))
        .route("/ui/assets/{*path}", get(ui::asset))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/session", get(ui::session))
        .route("/v1/openapi.json", get(openapi::spec))
        .route(
            "/docs",
            get(|| async { axum::response::Redirect::permanent("/docs/") }),
        )
        .route("/docs/", get(openapi::docs_index))
        .route("/docs/{*rest}", get(openapi::docs_file))
        .fallback(not_found)
        .layer(axum::middleware::map_response(normalize_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ports::host_route,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Create the admin key on first start: only its hash is stored; the
/// plaintext goes to `DATA_DIR/admin.key` (0600) for the local CLI.
pub fn bootstrap_admin_key(store: &Store, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if store.key_count()? > 0 {
        return Ok(());
    }
    let secret = aibox_runtime::new_secret();
    let path = data_dir.join("admin.key");
    let tmp = data_dir.join(".admin.key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{secret}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    store.add_key("admin", "admin", &secret, Scope::Admin, now_ms())?;
    Ok(())
}

/// Run the server until SIGINT/SIGTERM. Sandboxes keep running after it.
pub async fn serve(mut config: Config, engine: Arc<dyn Engine>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Bound first, so the port is known (`--listen 127.0.0.1:0`) when
    // published ports' URLs are made.
    let tcp = match config.listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            config.listen = Some(l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)?;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o711))?;
    let store = Store::open(&config.data_dir.join("state.db"))?;
    bootstrap_admin_key(&store, &config.data_dir)?;
    let state = AppState::new(config.clone(), store, engine);
    state
        .adopt()
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;

    // The host's own addresses are local to every egress policy (M2b);
    // interfaces come and go, so they are read again every few seconds.
    let read_addresses = || {
        if let Ok(addrs) = aibox_sys::interface_addresses() {
            aibox_types::egress::set_host_addresses(addrs);
        }
    };
    read_addresses();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            read_addresses();
        }
    });
    let reaper = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            reaper.reap().await;
        }
    });

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(l) = tcp {
        eprintln!("aibox: listening on http://{}", l.local_addr()?);
        eprintln!(
            "aibox: dashboard at http://{}/ (log in with an API key; the admin key is in {})",
            l.local_addr()?,
            config.data_dir.join("admin.key").display()
        );
        let router = app(state.clone());
        // Small replies go out at once: without TCP_NODELAY a response
        // written in two parts waits out the peer's delayed ACK (~40 ms).
        use axum::serve::ListenerExt;
        let l = l.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // The client's address rides with each request (per-address
        // limits on failed authentication and dashboard logins).
        let svc = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tasks.spawn(async move { axum::serve(l, svc).await });
    }
    if let Some(path) = &config.socket {
        let l = bind_private_socket(path)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
        eprintln!("aibox: listening on unix:{}", path.display());
        let router = app(state.clone()).layer(Extension(LocalSocket));
        tasks.spawn(async move { axum::serve(l, router).await });
    }
    tokio::select! {
        r = tasks.join_next() => {
            if let Some(Ok(Err(e))) = r { return Err(e.into()); }
        }
        _ = shutdown_signal() => {}
    }
    // What was recorded is written before the process goes.
    state.flush_audit();
    // Volumes no sandbox uses are unmounted (mounted again on first use).
    if let Ok(rt) = state.engine_ref().volumes() {
        rt.release_volumes();
    }
    Ok(())
}

/// Listen on the local socket, which makes its caller the local admin:
/// bound inside a fresh 0700 directory, made 0600, then renamed into
/// place, so no other local user can connect in between, whatever the
/// umask (the review's L6: bind, then chmod, left a window).
fn bind_private_socket(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().unwrap_or(std::path::Path::new("/"));
    let private = parent.join(format!(".aibox-sock-{}", aibox_runtime::random_id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inner = private.join("s");
    let result = (|| {
        let l = tokio::net::UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        let _ = std::fs::remove_file(path);
        std::fs::rename(&inner, path)?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}
