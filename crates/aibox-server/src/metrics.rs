//! Prometheus metrics in the text exposition format: request latency by
//! route, create and exec latency, errors by code, sandboxes by state and
//! per-sandbox CPU and memory (read at scrape time).

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::ErrorCode;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (method, route) → latency.
    requests: BTreeMap<(String, String), Histogram>,
    /// (method, route, status) → count.
    responses: BTreeMap<(String, String, u16), u64>,
    errors: BTreeMap<&'static str, u64>,
    create: Histogram,
    exec: Histogram,
    /// "allow" / "deny" → egress decisions.
    egress: BTreeMap<&'static str, u64>,
    /// (minute since the epoch, creates, execs), oldest first.
    activity: std::collections::VecDeque<(u64, u64, u64)>,
}

/// Minutes of create and exec counts kept for the dashboard.
pub const ACTIVITY_MINUTES: u64 = 30;

impl Inner {
    fn bump(&mut self, create: bool) {
        let minute = crate::now_ms() / 60_000;
        if self.activity.back().is_none_or(|(m, _, _)| *m != minute) {
            self.activity.push_back((minute, 0, 0));
            while self.activity.len() as u64 > ACTIVITY_MINUTES {
                self.activity.pop_front();
            }
        }
        if let Some(last) = self.activity.back_mut() {
            if create {
                last.1 += 1;
            } else {
                last.2 += 1;
            }
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_egress(&self, allowed: bool) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.egress
            .entry(if allowed { "allow" } else { "deny" })
            .or_default() += 1;
    }

    pub fn observe_create(&self, secs: f64) {
        let mut m = self.lock();
        m.create.observe(secs);
        m.bump(true);
    }

    pub fn observe_exec(&self, secs: f64) {
        let mut m = self.lock();
        m.exec.observe(secs);
        m.bump(false);
    }

    /// An exec that is not timed (streamed, on a terminal, in the background).
    pub fn count_exec(&self) {
        self.lock().bump(false);
    }

    /// Creates and execs per minute over the last [`ACTIVITY_MINUTES`]
    /// minutes, oldest first, the current minute last.
    pub fn activity(&self) -> serde_json::Value {
        let m = self.lock();
        let now = crate::now_ms() / 60_000;
        let first = now + 1 - ACTIVITY_MINUTES;
        let mut creates = vec![0; ACTIVITY_MINUTES as usize];
        let mut execs = vec![0; ACTIVITY_MINUTES as usize];
        for (minute, c, e) in &m.activity {
            if let Some(i) = minute.checked_sub(first).filter(|i| *i < ACTIVITY_MINUTES) {
                creates[i as usize] = *c;
                execs[i as usize] = *e;
            }
        }
        serde_json::json!({"minute_ms": first * 60_000, "creates": creates, "execs": execs})
    }
}

/// Label values are escaped as the exposition format requires.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: time every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let t = Instant::now();
    let resp = next.run(req).await;
    let secs = t.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    let code = resp.extensions().get::<ErrorCode>().copied();
    let mut m = state.metrics().lock();
    m.requests
        .entry((method.clone(), route.clone()))
        .or_default()
        .observe(secs);
    *m.responses.entry((method, route, status)).or_default() += 1;
    if let Some(c) = code {
        *m.errors.entry(c.as_str()).or_default() += 1;
    }
    resp
}

pub async fn render(State(state): State<AppState>, who: Principal) -> ApiResult<Response> {
    if !who.admin() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "metrics need an admin key",
        ));
    }
    let rows = state
        .store()
        .all()
        .map_err(|e| ApiError::internal("metrics", e))?;
    let engine = state.engine();
    let live: Vec<String> = rows
        .iter()
        .filter(|r| r.state == "running" || r.state == "paused")
        .map(|r| r.id.clone())
        .collect();
    let usage = tokio::task::spawn_blocking(move || {
        live.into_iter()
            .filter_map(|id| engine.stats(&id).map(|s| (id, s)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();

    let mut out = String::new();
    {
        let m = state.metrics().lock();
        out.push_str("# HELP aibox_http_request_duration_seconds Time to answer an API request.\n");
        out.push_str("# TYPE aibox_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &m.requests {
            let labels = format!("method=\"{}\",route=\"{}\"", esc(method), esc(route));
            h.render(&mut out, "aibox_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP aibox_http_responses_total API responses by status.\n");
        out.push_str("# TYPE aibox_http_responses_total counter\n");
        for ((method, route, status), n) in &m.responses {
            let _ = writeln!(
                out,
                "aibox_http_responses_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                esc(method),
                esc(route)
            );
        }
        out.push_str("# HELP aibox_errors_total API errors by stable error code.\n");
        out.push_str("# TYPE aibox_errors_total counter\n");
        for (code, n) in &m.errors {
            let _ = writeln!(out, "aibox_errors_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP aibox_egress_decisions_total Egress proxy decisions.\n");
        out.push_str("# TYPE aibox_egress_decisions_total counter\n");
        for (d, n) in &m.egress {
            let _ = writeln!(out, "aibox_egress_decisions_total{{decision=\"{d}\"}} {n}");
        }
        out.push_str("# HELP aibox_sandbox_create_duration_seconds Time to create a sandbox.\n");
        out.push_str("# TYPE aibox_sandbox_create_duration_seconds histogram\n");
        m.create
            .render(&mut out, "aibox_sandbox_create_duration_seconds", "");
        out.push_str(
            "# HELP aibox_exec_duration_seconds Time of a synchronous exec, end to end.\n",
        );
        out.push_str("# TYPE aibox_exec_duration_seconds histogram\n");
        m.exec.render(&mut out, "aibox_exec_duration_seconds", "");
    }
    let mut by_state: BTreeMap<&str, u64> = ["creating", "running", "paused"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    for r in &rows {
        *by_state.entry(r.state.as_str()).or_default() += 1;
    }
    out.push_str("# HELP aibox_sandboxes Sandboxes by state.\n# TYPE aibox_sandboxes gauge\n");
    for (s, n) in by_state {
        let _ = writeln!(out, "aibox_sandboxes{{state=\"{}\"}} {n}", esc(s));
    }
    out.push_str("# HELP aibox_sandbox_cpu_seconds_total CPU time used by a sandbox.\n");
    out.push_str("# TYPE aibox_sandbox_cpu_seconds_total counter\n");
    for (id, s) in &usage {
        if let Some(us) = s["cpu_usec"].as_u64() {
            let _ = writeln!(
                out,
                "aibox_sandbox_cpu_seconds_total{{sandbox=\"{id}\"}} {}",
                us as f64 / 1e6
            );
        }
    }
    out.push_str("# HELP aibox_sandbox_memory_bytes Memory charged to a sandbox.\n");
    out.push_str("# TYPE aibox_sandbox_memory_bytes gauge\n");
    for (id, s) in &usage {
        if let Some(b) = s["memory_bytes"].as_u64() {
            let _ = writeln!(out, "aibox_sandbox_memory_bytes{{sandbox=\"{id}\"}} {b}");
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.25\"} 2"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 2"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 2"), "{out}");
    }
}
