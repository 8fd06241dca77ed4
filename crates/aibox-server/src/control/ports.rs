//! A sandbox's published ports: what listens, the URLs that reach it,
//! and who may use them (the port token, or anyone when public).

use crate::auth::Principal;
use crate::control::access::owned;
use crate::control::sandboxes::new_token;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use aibox_types::api::{PortView, PortsPatch, PortsView};
use serde_json::json;

/// The URL of `port` of sandbox `id` in both forms (None without a TCP
/// listener).
fn urls(state: &AppState, id: &str, port: u16) -> (Option<String>, Option<String>) {
    let Some(listen) = state.config().listen else {
        return (None, None);
    };
    let host = match listen.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let lp = listen.port();
    let domain = &state.config().port_domain;
    (
        Some(format!("http://{port}-{id}.{domain}:{lp}/")),
        Some(format!(
            "http://{host}:{lp}/v1/sandboxes/{id}/ports/{port}/"
        )),
    )
}

async fn view(state: &AppState, row: &crate::store::Row) -> ApiResult<PortsView> {
    let engine = state.engine();
    let id = row.id.clone();
    let listeners = if row.state == "running" || row.state == "paused" {
        tokio::task::spawn_blocking(move || engine.listeners(&id))
            .await
            .map_err(|e| ApiError::internal("listeners task", e))??
    } else {
        Vec::new()
    };
    let networked = row.spec["network"].as_str().is_some_and(|m| m != "none");
    let mut ports = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for l in listeners {
        // The agent's own egress relay is not the user's.
        if networked && l.port == aibox_types::EGRESS_PROXY_PORT && l.address.is_loopback() {
            continue;
        }
        if !seen.insert(l.port) {
            continue;
        }
        let (url, path_url) = urls(state, &row.id, l.port);
        ports.push(PortView {
            port: l.port,
            address: l.address.to_string(),
            // The agent connects to loopback: a socket bound to another
            // address only cannot be reached through the server.
            reachable: l.address.is_loopback() || l.address.is_unspecified(),
            url,
            path_url,
        });
    }
    let (template, _) = urls(state, &row.id, 0);
    Ok(PortsView {
        id: row.id.clone(),
        public: row.public_ports,
        token: row.port_token.clone(),
        url_template: template.map(|t| t.replacen("0-", "{port}-", 1)),
        ports,
    })
}

/// The listening ports, their URLs and the token.
pub async fn get(state: &AppState, who: &Principal, id: &str) -> ApiResult<PortsView> {
    let row = owned(state, who, id)?;
    view(state, &row).await
}

/// Make the ports public or private, or rotate the token.
pub async fn update(
    state: &AppState,
    who: &Principal,
    id: &str,
    patch: PortsPatch,
) -> ApiResult<PortsView> {
    let mut row = owned(state, who, id)?;
    if let Some(p) = patch.public {
        if p {
            who.within(|c| c.check_public_ports())?;
        }
        row.public_ports = p;
    }
    if patch.rotate_token {
        row.port_token = new_token();
    }
    state
        .store()
        .set_ports(&row.id, &row.port_token, row.public_ports)
        .map_err(|e| ApiError::internal("set ports", e))?;
    state.audit(
        &who.id,
        "sandbox.ports",
        Some(&row.id),
        json!({"public": row.public_ports, "token_rotated": patch.rotate_token}),
    );
    view(state, &row).await
}
