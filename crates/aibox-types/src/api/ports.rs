//! A sandbox's published ports: `/v1/sandboxes/{id}/ports`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One listening port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortView {
    pub port: u16,
    /// The address it listens on, inside the sandbox.
    pub address: String,
    /// The server can reach it (it listens on loopback or every address).
    pub reachable: bool,
    /// `http://{port}-{id}.{domain}:{server port}/` (null without a TCP
    /// listener on the server).
    pub url: Option<String>,
    /// The same through the API's path: `/v1/sandboxes/{id}/ports/{port}/`.
    pub path_url: Option<String>,
}

/// `GET /v1/sandboxes/{id}/ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Ports")]
pub struct PortsView {
    pub id: String,
    /// Published ports answer without the token.
    pub public: bool,
    /// Send as X-Aibox-Token, the aibox_token cookie or ?aibox_token=.
    pub token: String,
    pub url_template: Option<String>,
    pub ports: Vec<PortView>,
}

/// `PATCH /v1/sandboxes/{id}/ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortsPatch {
    /// Published ports answer without the token (true) or need it (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// Replace the token: URLs handed out before stop working.
    #[serde(default)]
    pub rotate_token: bool,
}
