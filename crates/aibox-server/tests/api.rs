//! API tests on `app()` without sockets, with a fake engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aibox_server::config::Raw;
use aibox_server::engine::{Created, Engine};
use aibox_server::error::ApiError;
use aibox_server::store::{Scope, Store};
use aibox_server::{app, AppState};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

#[derive(Default)]
struct Fake {
    live: Mutex<Vec<String>>,
    /// (snapshot id, sandboxes restored from it that still run).
    snaps: Mutex<Vec<String>>,
    restored: Mutex<Vec<(String, String)>>,
    /// Creates fail after this many (fork rollback).
    fail_after: Mutex<Option<usize>>,
}

impl Engine for Fake {
    fn create(&self, spec: &aibox_types::SandboxSpec) -> Result<Created, ApiError> {
        if let Some(n) = self.fail_after.lock().unwrap().as_mut() {
            if *n == 0 {
                return Err(ApiError::new(
                    aibox_types::ErrorCode::Internal,
                    "injected failure",
                ));
            }
            *n -= 1;
        }
        let id = aibox_runtime::random_id();
        if let Some(snap) = &spec.snapshot {
            if !self.snaps.lock().unwrap().contains(snap) {
                return Err(ApiError::new(
                    aibox_types::ErrorCode::NotFound,
                    "no such snapshot",
                ));
            }
            self.restored
                .lock()
                .unwrap()
                .push((id.clone(), snap.clone()));
        }
        self.live.lock().unwrap().push(id.clone());
        Ok(Created {
            id,
            isolation: Default::default(),
        })
    }
    fn destroy(&self, id: &str) -> Result<(), ApiError> {
        self.live.lock().unwrap().retain(|x| x != id);
        self.restored.lock().unwrap().retain(|(x, _)| x != id);
        Ok(())
    }
    fn snapshot(
        &self,
        id: &str,
        name: Option<&str>,
    ) -> Result<aibox_runtime::SnapshotMeta, ApiError> {
        let snap = aibox_runtime::random_id();
        self.snaps.lock().unwrap().push(snap.clone());
        Ok(aibox_runtime::SnapshotMeta {
            id: snap,
            name: name.map(str::to_string),
            created_unix_ms: 1,
            source: id.to_string(),
            template: "host".into(),
            spec: Default::default(),
            size_bytes: 4096,
            entries: 3,
            consistent: true,
            memory: false,
        })
    }
    fn delete_snapshot(&self, snap: &str) -> Result<(), ApiError> {
        if self.restored.lock().unwrap().iter().any(|(_, s)| s == snap) {
            return Err(ApiError::new(aibox_types::ErrorCode::Conflict, "in use"));
        }
        self.snaps.lock().unwrap().retain(|x| x != snap);
        Ok(())
    }
    fn snapshot_ids(&self) -> Vec<String> {
        self.snaps.lock().unwrap().clone()
    }
    fn pause(&self, _: &str, _: bool) -> Result<(), ApiError> {
        Ok(())
    }
    fn running(&self) -> Vec<String> {
        self.live.lock().unwrap().clone()
    }
    fn gc(&self) {}
    fn exec(
        &self,
        _: &str,
        _: aibox_protocol::ExecRequest,
        _: Option<&[u8]>,
    ) -> Result<aibox_runtime::Output, ApiError> {
        Ok(aibox_runtime::Output {
            stdout: b"ok\n".to_vec(),
            ..Default::default()
        })
    }
    fn read_file_to(
        &self,
        _: &str,
        _: &str,
        on_size: &mut dyn FnMut(u64),
        out: &mut dyn std::io::Write,
    ) -> Result<(), ApiError> {
        on_size(4);
        out.write_all(b"data").unwrap();
        Ok(())
    }
    fn write_file(
        &self,
        _: &str,
        _: &str,
        data: &mut dyn std::io::Read,
        _: Option<u32>,
    ) -> Result<(), ApiError> {
        std::io::copy(data, &mut std::io::sink())
            .map(drop)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}

fn state(max: u64) -> AppState {
    state_with(max, Arc::new(Fake::default()))
}

fn state_with(max: u64, fake: Arc<Fake>) -> AppState {
    let store = Store::in_memory().unwrap();
    store
        .add_key("ka", "alice", "secret-a", Scope::User, 1)
        .unwrap();
    store
        .add_key("kb", "bob", "secret-b", Scope::User, 1)
        .unwrap();
    store
        .add_key("kr", "old", "secret-r", Scope::User, 1)
        .unwrap();
    store.revoke_key("kr", 2).unwrap();
    let config = Raw {
        data_dir: Some("/nonexistent".into()),
        max_sandboxes: Some(max),
        max_snapshots: Some(2),
        ..Raw::default()
    }
    .resolve("test")
    .unwrap();
    AppState::new(config, store, fake)
}

async fn call(
    s: &AppState,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(s.clone())
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn auth_failures_get_401_with_a_stable_code() {
    let s = state(10);
    for key in [None, Some("nope"), Some("secret-r")] {
        let (st, v) = call(&s, "GET", "/v1/sandboxes", key, "").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["code"], "unauthenticated");
    }
}

#[tokio::test]
async fn a_key_sees_only_its_own_sandboxes() {
    let s = state(10);
    let (st, v) = call(&s, "POST", "/v1/sandboxes", Some("secret-a"), "{}").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, _) = call(
        &s,
        "GET",
        &format!("/v1/sandboxes/{id}"),
        Some("secret-b"),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/v1/sandboxes/{id}"),
        Some("secret-b"),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = call(&s, "GET", "/v1/sandboxes", Some("secret-b"), "").await;
    assert_eq!(v["sandboxes"].as_array().unwrap().len(), 0);
    let (st, v) = call(
        &s,
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some("secret-a"),
        r#"{"cmd":["true"]}"#,
    )
    .await;
    assert_eq!((st, v["stdout"].as_str()), (StatusCode::OK, Some("ok\n")));
    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/v1/sandboxes/{id}"),
        Some("secret-a"),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_input_gets_400_and_creates_nothing() {
    let s = state(10);
    for body in [
        "{bad",
        r#"{"memory":"lots"}"#,
        r#"{"cpus":-1}"#,
        r#"{"nope":1}"#,
        r#"{"ttl_seconds":0}"#,
        r#"{"mounts":[{"host":"/etc","guest":"/x","read_only":true}]}"#,
    ] {
        let (st, v) = call(&s, "POST", "/v1/sandboxes", Some("secret-a"), body).await;
        assert!(
            st == StatusCode::BAD_REQUEST || st == StatusCode::FORBIDDEN,
            "{body}: {st} {v}"
        );
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (_, v) = call(&s, "GET", "/v1/sandboxes", Some("secret-a"), "").await;
    assert_eq!(v["sandboxes"].as_array().unwrap().len(), 0);
    let (st, _) = call(&s, "GET", "/v1/sandboxes/../../etc", Some("secret-a"), "").await;
    assert!(st.is_client_error());
    let (st, v) = call(
        &s,
        "POST",
        "/v1/sandboxes/abc123/exec",
        Some("secret-a"),
        r#"{"cmd":[]}"#,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn capacity_gives_503_with_retry_after_and_idempotency_returns_the_same() {
    let s = state(1);
    let req = |key: &str| {
        Request::builder()
            .method("POST")
            .uri("/v1/sandboxes")
            .header("content-type", "application/json")
            .header("authorization", "Bearer secret-a")
            .header("idempotency-key", key)
            .body(Body::from("{}"))
            .unwrap()
    };
    let r1 = app(s.clone()).oneshot(req("one")).await.unwrap();
    assert_eq!(r1.status(), StatusCode::CREATED);
    let b1 = r1.into_body().collect().await.unwrap().to_bytes();
    let r2 = app(s.clone()).oneshot(req("one")).await.unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    let b2 = r2.into_body().collect().await.unwrap().to_bytes();
    let id = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap()["id"].clone();
    assert_eq!(id(&b1), id(&b2));
    let r3 = app(s.clone()).oneshot(req("two")).await.unwrap();
    assert_eq!(r3.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r3.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn rate_limit_gives_429_with_retry_after() {
    let store = Store::in_memory().unwrap();
    store
        .add_key("ka", "alice", "secret-a", Scope::User, 1)
        .unwrap();
    let config = Raw {
        data_dir: Some("/nonexistent".into()),
        rate_limit: Some(2),
        ..Raw::default()
    }
    .resolve("test")
    .unwrap();
    let s = AppState::new(config, store, Arc::new(Fake::default()));
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let req = Request::builder()
            .uri("/v1/sandboxes")
            .header("authorization", "Bearer secret-a")
            .body(Body::empty())
            .unwrap();
        let r = app(s.clone()).oneshot(req).await.unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            retry = r.headers().get("retry-after").cloned();
        }
    }
    assert_eq!(
        &statuses[..4],
        &[StatusCode::OK; 4],
        "a burst of 2 x rate passes"
    );
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
}

#[tokio::test]
async fn per_key_quotas() {
    let s = state(10);
    s.store().set_quota("ka", Some(1), None).unwrap();
    s.store().set_quota("kb", None, Some(1 << 30)).unwrap();
    let (st, _) = call(&s, "POST", "/v1/sandboxes", Some("secret-a"), "{}").await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = call(&s, "POST", "/v1/sandboxes", Some("secret-a"), "{}").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("resource_exhausted"))
    );
    let (st, _) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        Some("secret-b"),
        r#"{"memory":"512m"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        Some("secret-b"),
        r#"{"memory":"768m"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    s.flush_audit();
    let denied = s
        .store()
        .audit_entries(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "policy.denied")
        .count();
    assert_eq!(denied, 2, "both refusals are in the audit log");
}

#[tokio::test]
async fn openapi_and_docs_are_served() {
    let s = state(10);
    let (st, v) = call(&s, "GET", "/v1/openapi.json", None, "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/v1/sandboxes/{id}/exec"]["post"].is_object());
    let r = app(s.clone())
        .oneshot(
            Request::builder()
                .uri("/docs/")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn snapshots_restore_and_fork() {
    let fake = Arc::new(Fake::default());
    let s = state_with(5, fake.clone());
    let a = Some("secret-a");
    let (_, v) = call(&s, "POST", "/v1/sandboxes", a, r#"{"memory":"64m"}"#).await;
    let sb = v["id"].as_str().unwrap().to_string();
    // Bad names and ids.
    for body in [
        r#"{"name":""}"#,
        r#"{"name":"a b"}"#,
        r#"{"nope":1}"#,
        "{bad",
    ] {
        let (st, v) = call(
            &s,
            "POST",
            &format!("/v1/sandboxes/{sb}/snapshots"),
            a,
            body,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (st, _) = call(&s, "POST", "/v1/sandboxes/0000/snapshots", a, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A body is optional.
    let (st, v) = call(&s, "POST", &format!("/v1/sandboxes/{sb}/snapshots"), a, "").await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        &format!("/v1/sandboxes/{sb}/snapshots"),
        a,
        r#"{"name":"base-1"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "base-1");
    assert_eq!(v["source_sandbox"], sb.as_str());
    let snap = v["id"].as_str().unwrap().to_string();
    let (_, v) = call(&s, "GET", "/v1/snapshots", a, "").await;
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 2);
    // max_snapshots (2 here) is a hard limit.
    let (st, v) = call(&s, "POST", &format!("/v1/sandboxes/{sb}/snapshots"), a, "").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "resource_exhausted");
    let (_, v) = call(&s, "GET", "/v1/snapshots?name=base-1", a, "").await;
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 1);
    // Another key sees nothing and touches nothing.
    let b = Some("secret-b");
    let (_, v) = call(&s, "GET", "/v1/snapshots", b, "").await;
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 0);
    for (m, path) in [
        ("GET", format!("/v1/snapshots/{snap}")),
        ("DELETE", format!("/v1/snapshots/{snap}")),
        ("POST", format!("/v1/snapshots/{snap}/restore")),
        ("POST", format!("/v1/sandboxes/{sb}/snapshots")),
    ] {
        let (st, v) = call(&s, m, &path, b, "").await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{m} {path}: {v}");
    }
    let (st, _) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        b,
        &format!(r#"{{"snapshot":"{snap}"}}"#),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another key's snapshot cannot be restored"
    );
    // Restore: the snapshot's spec, overridden by the body.
    let (st, v) = call(
        &s,
        "POST",
        &format!("/v1/snapshots/{snap}/restore"),
        a,
        r#"{"labels":{"k":"v"},"cpus":0.5}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["snapshot"], snap.as_str());
    assert_eq!(v["spec"]["cpus"], 0.5);
    assert_eq!(v["labels"]["k"], "v");
    let restored = v["id"].as_str().unwrap().to_string();
    for body in [
        r#"{"snapshot":"abc"}"#,
        r#"{"template":"debian"}"#,
        "[1]",
        r#"{"memory":"x"}"#,
    ] {
        let (st, v) = call(
            &s,
            "POST",
            &format!("/v1/snapshots/{snap}/restore"),
            a,
            body,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    // In use: not deleted.
    let (st, v) = call(&s, "DELETE", &format!("/v1/snapshots/{snap}"), a, "").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Fork: count checked, capacity checked up front (3 of 5 in use).
    for body in [
        "{}",
        r#"{"count":0}"#,
        r#"{"count":101}"#,
        r#"{"count":"2"}"#,
    ] {
        let (st, v) = call(&s, "POST", &format!("/v1/snapshots/{snap}/fork"), a, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (st, v) = call(
        &s,
        "POST",
        &format!("/v1/snapshots/{snap}/fork"),
        a,
        r#"{"count":4}"#,
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        &format!("/v1/snapshots/{snap}/fork"),
        a,
        r#"{"count":3}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let forked: Vec<String> = v["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(forked.len(), 3);
    // All or none: a failing create takes the others back.
    for id in forked.iter().chain([&restored]) {
        call(&s, "DELETE", &format!("/v1/sandboxes/{id}"), a, "").await;
    }
    *fake.fail_after.lock().unwrap() = Some(2);
    let (st, _) = call(
        &s,
        "POST",
        &format!("/v1/snapshots/{snap}/fork"),
        a,
        r#"{"count":3}"#,
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    *fake.fail_after.lock().unwrap() = None;
    let (_, v) = call(&s, "GET", "/v1/sandboxes", a, "").await;
    assert_eq!(
        v["sandboxes"].as_array().unwrap().len(),
        1,
        "only the source is left: {v}"
    );
    assert_eq!(fake.live.lock().unwrap().len(), 1);
    // Free again: deleted, then gone.
    let (st, _) = call(&s, "DELETE", &format!("/v1/snapshots/{snap}"), a, "").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = call(&s, "GET", &format!("/v1/snapshots/{snap}"), a, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&s, "POST", &format!("/v1/snapshots/{snap}/restore"), a, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = call(&s, "GET", "/v1/snapshots/..%2F..", a, "").await;
    assert!(st.is_client_error(), "{v}");
}

#[tokio::test]
async fn audit_filters_select_newest_first() {
    let s = state(10);
    s.store()
        .add_key("kadm", "root", "secret-admin", Scope::Admin, 1)
        .unwrap();
    let admin = Some("secret-admin");
    let mut ids = Vec::new();
    for key in ["secret-a", "secret-b", "secret-a"] {
        let (st, v) = call(&s, "POST", "/v1/sandboxes", Some(key), "{}").await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let entries = |v: &serde_json::Value| -> Vec<(u64, String, String)> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["actor"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (st, v) = call(&s, "GET", "/v1/audit?action=sandbox.&actor=ka", admin, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got = entries(&v);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].0 > got[1].0, "newest first: {got:?}");
    assert!(got
        .iter()
        .all(|(_, a, act)| a == "ka" && act == "sandbox.create"));
    // Paging back with before; one sandbox; everything newest first.
    let (_, v) = call(
        &s,
        "GET",
        &format!("/v1/audit?action=sandbox.create&before={}", got[0].0),
        admin,
        "",
    )
    .await;
    assert_eq!(entries(&v).len(), 2, "{v}");
    let (_, v) = call(
        &s,
        "GET",
        &format!("/v1/audit?sandbox={}", ids[1]),
        admin,
        "",
    )
    .await;
    assert_eq!(
        entries(&v).iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["kb"]
    );
    let (_, v) = call(&s, "GET", "/v1/audit?order=desc&limit=1", admin, "").await;
    let (_, all) = call(&s, "GET", "/v1/audit", admin, "").await;
    assert_eq!(entries(&v)[0], *entries(&all).last().unwrap());
    let (_, v) = call(&s, "GET", "/v1/audit?since_ms=99999999999999", admin, "").await;
    assert!(entries(&v).is_empty());
    // Bad input: 400 with a reason; the log needs an admin key.
    for q in [
        "after=1&actor=ka",
        "order=sideways",
        "limit=0",
        "limit=1001",
        "actor=",
        "since_ms=x",
        "nope=1",
    ] {
        let (st, v) = call(&s, "GET", &format!("/v1/audit?{q}"), admin, "").await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_argument")),
            "{q}: {v}"
        );
    }
    let (st, _) = call(&s, "GET", "/v1/audit?order=desc", Some("secret-a"), "").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn health_counts_creates_and_execs_per_minute() {
    let s = state(10);
    let (_, v) = call(&s, "POST", "/v1/sandboxes", Some("secret-a"), "{}").await;
    let id = v["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let (st, _) = call(
            &s,
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some("secret-a"),
            r#"{"cmd":["true"]}"#,
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }
    let (_, v) = call(&s, "GET", "/v1/health", Some("secret-a"), "").await;
    let a = &v["activity"];
    assert_eq!(a["creates"].as_array().unwrap().len(), 30, "{v}");
    let sum = |k: &str| {
        a[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((sum("creates"), sum("execs")), (1, 3), "{v}");
    assert_eq!(
        (
            v["sandboxes"]["active"].as_u64(),
            v["sandboxes"]["running"].as_u64(),
            v["sandboxes"]["paused"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{v}"
    );
    let (_, anon) = call(&s, "GET", "/v1/health", None, "").await;
    assert!(anon.get("activity").is_none(), "{anon}");
}

#[tokio::test]
async fn a_streamed_pull_ends_in_an_error_line() {
    let s = state(10);
    s.store()
        .add_key("kadm", "root", "secret-admin", Scope::Admin, 1)
        .unwrap();
    let req = Request::builder()
        .method("POST")
        .uri("/v1/templates/pull")
        .header("content-type", "application/json")
        .header("accept", "application/x-ndjson")
        .header("authorization", "Bearer secret-admin")
        .body(Body::from(r#"{"reference":"127.0.0.1:1/x/y:1"}"#))
        .unwrap();
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let last: serde_json::Value = serde_json::from_slice(
        bytes
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no template store"),
        "{last}"
    );
    // A bad reference is refused before anything streams.
    let (st, v) = call(
        &s,
        "POST",
        "/v1/templates/pull",
        Some("secret-admin"),
        r#"{"reference":"UPPER CASE"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn lists_have_a_summary_view_and_every_sandbox_its_limits() {
    let s = state(10);
    let (st, v) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        Some("secret-a"),
        r#"{"memory":"256m"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["limits"]["memory"], 256 << 20, "{v}");
    assert!(
        v["limits"]["disk"].as_u64().unwrap() > 0 && v["limits"]["pids"].as_u64().unwrap() > 0,
        "{v}"
    );
    let (_, full) = call(&s, "GET", "/v1/sandboxes", Some("secret-a"), "").await;
    let (_, summary) = call(
        &s,
        "GET",
        "/v1/sandboxes?view=summary",
        Some("secret-a"),
        "",
    )
    .await;
    let (f, m) = (&full["sandboxes"][0], &summary["sandboxes"][0]);
    assert_eq!(f["id"], m["id"]);
    assert_eq!(m["limits"], f["limits"]);
    let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert!(keys(&m["isolation"]).unwrap_or_default().len() <= 2, "{m}");
    let (st, v) = call(&s, "GET", "/v1/sandboxes?view=tiny", Some("secret-a"), "").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"))
    );
}

#[tokio::test]
async fn a_sandbox_larger_than_the_budget_is_bad_input_not_a_full_server() {
    let s = state(10);
    let (st, v) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        Some("secret-a"),
        r#"{"memory": 2251799813685248}"#,
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("whole memory budget"),
        "{v}"
    );
    s.store().set_quota("ka", None, Some(1 << 30)).unwrap();
    let (st, v) = call(
        &s,
        "POST",
        "/v1/sandboxes",
        Some("secret-a"),
        r#"{"memory": "2g"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory quota"),
        "{v}"
    );
    let (st, _) = call(&s, "GET", "/v1/sandboxes", Some("secret-a"), "").await;
    assert_eq!(st, StatusCode::OK);
}
