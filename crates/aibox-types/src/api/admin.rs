//! The operator's resources: API keys (`/v1/keys`), the audit log
//! (`/v1/audit`) and templates (`/v1/templates…`).

use crate::ceiling::Ceiling;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everything, including keys and every tenant's sandboxes.
    Admin,
    /// Its own sandboxes only.
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::User => "user",
        }
    }
}

fn user_scope() -> Scope {
    Scope::User
}

/// `POST /v1/keys` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CreateKey")]
pub struct KeyRequest {
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    #[serde(default = "user_scope")]
    pub scope: Scope,
    /// Most sandboxes this key may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_sandboxes: Option<u64>,
    /// Most memory (sum of limits) its sandboxes may have, e.g. "8g".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// What it may ask for at most (user keys; default: the server's
    /// `user_ceiling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
}

/// A new key: its secret is shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The secret: send it as `Authorization: Bearer KEY`.
    pub key: String,
}

/// `PATCH /v1/keys/{id}`: what changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    /// A ceiling of the key's own, or `null` for the server's default.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Ceiling>")]
    pub ceiling: Option<Option<Ceiling>>,
}

/// A field that is present, even as `null` (absent stays `None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// An API key as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Key")]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
    /// Per-key quotas (null: only the server's limits apply).
    pub max_sandboxes: Option<u64>,
    pub max_memory: Option<u64>,
    /// The operator's ceiling set for this key alone (absent: the
    /// server's default for its scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// One entry of the audit log, chained to the one before by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    /// The key (or `server`) that acted.
    pub actor: String,
    pub action: String,
    pub sandbox: Option<String>,
    pub detail: Value,
    pub prev: String,
    pub hash: String,
}

/// `GET /v1/audit` query (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Oldest first, after this sequence number (the export order).
    pub after: Option<u64>,
    /// Newest first, before this sequence number (with any filter below).
    pub before: Option<u64>,
    pub actor: Option<String>,
    /// A prefix: `sandbox.` selects every sandbox event.
    pub action: Option<String>,
    pub sandbox: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// `asc` (default) or `desc`: newest first.
    pub order: Option<String>,
    pub limit: Option<u64>,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// `GET /v1/audit/verify`: whether the hash chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditVerdict {
    pub ok: bool,
    /// The first entry whose hash does not follow.
    pub broken_at: Option<u64>,
    pub entries: u64,
}

/// A template as the API shows it: the built-in `host`, or an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Template")]
pub struct TemplateView {
    pub name: String,
    /// The host's own userland (no image).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Bytes of its layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Value>>,
    /// The image's config (env, workdir, user, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
    /// Where it came from (a registry reference, an archive, a build, a
    /// snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Anything else the store knows of it.
    #[serde(flatten)]
    pub more: serde_json::Map<String, Value>,
}

/// The template store's disk use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreUsage {
    pub layers: u64,
    pub bytes: u64,
}

/// `GET /v1/templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
    pub store: StoreUsage,
}

/// `POST /v1/templates/pull` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pull")]
pub struct PullRequest {
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Plain HTTP for this (non-loopback) registry.
    #[serde(default)]
    pub insecure: bool,
}

/// `POST /v1/snapshots/{id}/template` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Promote")]
pub struct PromoteRequest {
    pub name: String,
}

/// `POST /v1/templates/prune` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneQuery {
    /// Forget the build cache first, so its layers go too.
    #[serde(default)]
    pub build_cache: bool,
}

/// What a prune removed.
pub type Pruned = StoreUsage;

/// `POST /v1/templates/import` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The template's name (default: the archive's tag).
    pub name: Option<String>,
}

/// `POST /v1/templates/build` query: the build context is the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildQuery {
    /// The template to write (default: the recipe's `name`).
    pub name: Option<String>,
    /// The recipe's path in the context (default: `aibox.toml`, else `Dockerfile`).
    pub file: Option<String>,
    #[serde(default)]
    pub no_cache: bool,
    /// Leave a failed step's sandbox running (it becomes one of the
    /// caller's sandboxes, with the default TTL).
    #[serde(default)]
    pub keep_failed: bool,
    /// RUN steps' network: `none`, `allowlist` or `full` (default: the recipe's).
    pub network: Option<String>,
    /// Egress rules, comma-separated (`pypi.org,deny 10.0.0.0/8`).
    pub allow: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    /// Size of each step's writable layer.
    pub disk: Option<String>,
}
