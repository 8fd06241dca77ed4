//! The tools, resources and prompts.

use crate::{Api, Caller, Session};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most bytes of a file or of a command's output given to the model.
const MAX_TEXT: usize = 256 * 1024;
/// Most bytes of a file a tool or a resource reads: a file may be endless
/// (`/dev/zero`) or huge, and is never held whole.
const MAX_FILE: usize = 8 << 20;

/// One MCP session's server: the tools over the REST API.
#[derive(Clone)]
pub struct AiboxMcp {
    session: Arc<Session>,
    tool_router: ToolRouter<Self>,
}

/// A tool's failure: a readable tool error for the model, never a
/// protocol failure.
struct Fail(String);

impl<T: std::fmt::Display> From<T> for Fail {
    fn from(e: T) -> Fail {
        Fail(e.to_string())
    }
}

type Outcome = Result<CallToolResult, ErrorData>;

fn done(r: Result<CallToolResult, Fail>) -> Outcome {
    Ok(r.unwrap_or_else(|Fail(m)| CallToolResult::error(vec![ContentBlock::text(m)])))
}

/// A result: readable text for the model and the same as structured content.
fn result(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

fn valid_id(id: &str) -> Result<(), Fail> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(Fail(format!(
            "{id:?} is not a sandbox or snapshot id (list_sandboxes shows them)"
        )))
    }
}

fn absolute(path: &str) -> Result<(), Fail> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(Fail(format!(
            "path {path:?} must be absolute (e.g. /workspace/{path})"
        )))
    }
}

/// Cut `s` to at most [`MAX_TEXT`] bytes on a character boundary.
fn cut(s: &str) -> (&str, bool) {
    if s.len() <= MAX_TEXT {
        return (s, false);
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Who this call acts for: what the server resolved about the HTTP
/// request carrying it (streamable HTTP), or nobody in particular over
/// stdio (the API client's own key).
fn caller_of(ctx: &RequestContext<RoleServer>) -> Caller {
    ctx.extensions
        .get::<http::request::Parts>()
        .map(|p| Caller(p.extensions.clone()))
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateArgs {
    /// Template to start from: `host` (the default: the host's own read-only userland, with
    /// python3, node and bash when the host has them) or an OCI template (`aibox template ls`).
    pub template: Option<String>,
    /// Memory limit, e.g. "512m" or "2g" (default 1g).
    pub memory: Option<aibox_types::api::Size>,
    /// CPU limit in cores, e.g. 0.5 (default: unlimited).
    pub cpus: Option<f64>,
    /// The most processes and threads at once (default 1024).
    pub pids: Option<u64>,
    /// Writable disk space, e.g. "2g" (default 1g).
    pub disk: Option<aibox_types::api::Size>,
    /// Lifetime in seconds (default: the server's, usually 600). Longer than the default
    /// asks the user first.
    pub ttl_seconds: Option<u64>,
    /// Destroy after this many seconds without activity.
    pub idle_timeout_seconds: Option<u64>,
    /// Egress to allow: domains (`pypi.org`, `*.github.com`), `host:port` or CIDR blocks
    /// (a shorthand for `network` in allowlist mode). Default: no network. Asks the user first.
    #[serde(default)]
    pub allow_network: Vec<String>,
    /// The egress policy in full (mode none, allowlist or full; rules; enforcement proxy or
    /// l4), instead of `allow_network`. Asks the user first.
    pub network: Option<aibox_types::api::NetworkRequest>,
    /// Environment variables for every command.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Working directory of commands (default /workspace).
    pub workdir: Option<String>,
    /// `user` (uid 1000, the default), `root` (uid 0 inside, no capabilities) or a uid.
    pub user: Option<aibox_types::User>,
    /// Hostname inside the sandbox.
    pub hostname: Option<String>,
    /// Labels to find the sandbox by (`mcp: session` is always added).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Refuse to create unless the sandbox gets at least this isolation level: basic,
    /// standard, strict or vm.
    pub require_isolation: Option<aibox_types::IsolationLevel>,
    /// `namespaces` or `microvm` (default: the server's).
    pub backend: Option<aibox_types::BackendKind>,
    /// Host directories to mount: `HOST:GUEST`, `HOST:GUEST:ro` or `HOST:GUEST:rw` (absolute
    /// paths; only under what the server allows). Asks the user first.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Volumes of this API key to mount (`list_volumes`): `NAME:/path` (read-write; asks the
    /// user first) or `NAME:/path:ro`. A volume's files outlive the sandbox.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Make the sandbox in this workspace of the API key's (`list_workspaces`): its files at
    /// /workspace, its environment, and an entry in its history.
    pub workspace: Option<String>,
    /// Start from this snapshot (its files and settings; the fields above override them).
    pub snapshot: Option<String>,
    /// Published ports answer without the port token. Asks the user first.
    #[serde(default)]
    pub public: bool,
    /// Keep the sandbox when this MCP session ends (default: destroyed with the session).
    #[serde(default)]
    pub keep: bool,
    /// Make it the session's default sandbox, used by tools given no sandbox_id (default:
    /// true when the session has none yet).
    pub make_default: Option<bool>,
}

impl CreateArgs {
    /// The REST create request these arguments make. Written without
    /// `..Default::default()`, so a field added to the request does not
    /// compile here until the tool takes it.
    fn request(
        &self,
        mounts: Vec<aibox_types::MountSpec>,
        volumes: Vec<aibox_types::api::VolumeRef>,
    ) -> Result<aibox_types::api::CreateRequest, Fail> {
        let network = match (&self.network, self.allow_network.is_empty()) {
            (Some(_), false) => return Err(Fail("give allow_network or network, not both".into())),
            (Some(n), true) => Some(n.clone()),
            (None, false) => Some(aibox_types::api::NetworkRequest {
                mode: aibox_types::NetworkMode::Allowlist,
                rules: self
                    .allow_network
                    .iter()
                    .map(|r| {
                        r.parse()
                            .map_err(|e| Fail(format!("allow_network {r:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                enforcement: None,
            }),
            (None, true) => None,
        };
        let mut labels = self.labels.clone();
        labels.insert("mcp".into(), "session".into());
        Ok(aibox_types::api::CreateRequest {
            template: self.template.clone(),
            cpus: self.cpus,
            memory: self.memory.clone(),
            pids: self.pids,
            disk: self.disk.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user,
            ttl_seconds: self.ttl_seconds,
            idle_timeout_seconds: self.idle_timeout_seconds,
            hostname: self.hostname.clone(),
            labels,
            require_isolation: self.require_isolation,
            backend: self.backend,
            mounts,
            volumes,
            workspace: self.workspace.clone(),
            snapshot: self.snapshot.clone(),
            network,
            public: self.public,
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateVolumeArgs {
    /// The volume's name: 1-63 letters, digits, '.', '_' or '-'.
    pub name: String,
    /// Its quota, e.g. "10g" (default 1g).
    pub size: Option<aibox_types::api::Size>,
    /// Owner of its top directory inside sandboxes (default 1000, the default user; 0 for root).
    pub uid: Option<u32>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SandboxArg {
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RunCommandArgs {
    /// A shell command line, run with /bin/sh -c (pipes, &&, redirections work).
    pub command: String,
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
    /// Working directory (default /workspace).
    pub workdir: Option<String>,
    /// Seconds before the command is killed (default 120).
    pub timeout_seconds: Option<u64>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Run as `user` (uid 1000, the default), `root` (uid 0 inside, no capabilities) or a uid.
    pub user: Option<aibox_types::User>,
    /// Text fed to the command's standard input (default: none).
    pub stdin: Option<String>,
    /// Keep at most this many bytes of each output stream (default and most: 256 KiB).
    pub max_output: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RunCodeArgs {
    /// `python`, `node` or `bash`.
    pub language: String,
    /// The program's source text.
    pub code: String,
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
    /// Seconds before the program is killed (default 120).
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadFileArgs {
    /// Absolute path inside the sandbox, e.g. /workspace/out.txt.
    pub path: String,
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WriteFileArgs {
    /// Absolute path inside the sandbox; missing parent directories are created.
    pub path: String,
    /// The file's whole new content (text).
    pub content: String,
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListFilesArgs {
    /// Absolute directory path (default /workspace).
    pub path: Option<String>,
    /// Include subdirectories' contents.
    #[serde(default)]
    pub recursive: bool,
    /// The sandbox (default: the session's default sandbox, created on first use).
    pub sandbox_id: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SnapshotArgs {
    /// The sandbox (default: the session's default sandbox).
    pub sandbox_id: Option<String>,
    /// A name for the snapshot (letters, digits, `.`, `_`, `-`).
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RestoreArgs {
    /// The snapshot to start from (snapshot_sandbox returns it).
    pub snapshot_id: String,
    /// Keep the new sandbox when this MCP session ends.
    #[serde(default)]
    pub keep: bool,
    /// Make it the session's default sandbox (default true).
    pub make_default: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ExposeArgs {
    /// The TCP port a server inside the sandbox listens on (1-65535).
    pub port: u32,
    /// The sandbox (default: the session's default sandbox).
    pub sandbox_id: Option<String>,
    /// Reachable without the sandbox's access token (asks the user first).
    #[serde(default)]
    pub public: bool,
}

/// What the user is asked before a sandbox is widened.
#[derive(Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct Approval {
    /// Approve this change.
    pub approve: bool,
}
rmcp::elicit_safe!(Approval);

#[tool_router]
impl AiboxMcp {
    pub fn new(api: Arc<dyn Api>) -> AiboxMcp {
        AiboxMcp {
            session: Arc::new(Session::new(api)),
            tool_router: Self::tool_router(),
        }
    }

    pub(crate) fn session(&self) -> Arc<Session> {
        self.session.clone()
    }

    fn api(&self) -> &dyn Api {
        self.session.api.as_ref()
    }

    fn own(&self, id: &str, caller: &Caller, keep: bool) {
        let mut owned = self.session.owned();
        owned.push((id.to_string(), caller.clone(), keep));
    }

    /// The sandbox a call acts on: the one given, else the session's
    /// default (created now if there is none).
    async fn target(&self, given: Option<String>, caller: &Caller) -> Result<String, Fail> {
        if let Some(id) = given {
            valid_id(&id)?;
            return Ok(id);
        }
        let mut default = self.session.default.lock().await;
        if let Some(id) = default.as_ref() {
            return Ok(id.clone());
        }
        let req = aibox_types::api::CreateRequest {
            labels: [("mcp".to_string(), "session-default".to_string())].into(),
            ..Default::default()
        };
        let id = self.api().create_sandbox(caller, req).await?.id;
        self.own(&id, caller, false);
        *default = Some(id.clone());
        Ok(id)
    }

    /// Ask the user to approve `what` (MCP elicitation); refused with a
    /// reason when the client cannot ask or the user says no.
    /// What a sandbox made from snapshot `id` would have that widens it
    /// and the request does not replace: its source's read-write volumes,
    /// host mounts and egress. Each needs the user's yes as if asked for
    /// anew (the snapshot may have been a person's, not this agent's).
    async fn inherited(
        &self,
        caller: &Caller,
        id: &str,
        req: &aibox_types::api::CreateRequest,
    ) -> Result<Vec<String>, Fail> {
        let snap = self.api().snapshot_info(caller, id).await?;
        let spec = &snap.spec;
        let mut wider = Vec::new();
        if req.volumes.is_empty() {
            let rw: Vec<String> = snap
                .volumes
                .iter()
                .filter(|v| !v.read_only)
                .map(|v| format!("{}:{}", v.name, v.path.display()))
                .collect();
            if !rw.is_empty() {
                wider.push(format!(
                    "mount the snapshot's volumes read-write {}",
                    rw.join(", ")
                ));
            }
        }
        let mounts = spec["mounts"].as_array().map_or(0, |m| m.len());
        if req.mounts.is_empty() && mounts > 0 {
            wider.push(format!("mount the snapshot's {mounts} host paths"));
        }
        let mode = spec["network"].as_str().unwrap_or("none");
        if req.network.is_none() && mode != "none" {
            wider.push(format!("keep the snapshot's network egress ({mode})"));
        }
        Ok(wider)
    }

    async fn approve(&self, ctx: &RequestContext<RoleServer>, what: &str) -> Result<(), Fail> {
        if ctx.peer.supported_elicitation_modes().is_empty() {
            return Err(Fail(format!(
                "refused: {what} widens what the sandbox can do and needs the user's approval, but this MCP client cannot ask the user (it does not support elicitation). Ask the user to do it themselves (e.g. `aibox create --allow DOMAIN`, then pass the sandbox_id), or go without it."
            )));
        }
        match ctx
            .peer
            .elicit::<Approval>(format!("An AI agent asks to {what}. Approve?"))
            .await
        {
            Ok(Some(Approval { approve: true })) => Ok(()),
            Ok(_) => Err(Fail(format!("refused: the user did not approve ({what})"))),
            Err(rmcp::service::ElicitationError::UserDeclined) => {
                Err(Fail(format!("refused: the user declined ({what})")))
            }
            Err(rmcp::service::ElicitationError::UserCancelled) => Err(Fail(format!(
                "refused: the user dismissed the request ({what})"
            ))),
            Err(e) => Err(Fail(format!(
                "refused: could not ask the user ({what}): {e}"
            ))),
        }
    }

    /// The server's default TTL, in seconds.
    async fn default_ttl(&self, caller: &Caller) -> u64 {
        self.api().default_ttl(caller).await.unwrap_or(600)
    }

    #[tool(
        description = "Create a new isolated Linux sandbox (namespaces, seccomp, Landlock, cgroups; no network unless allowed). Returns its id and the isolation it got. Tools given no sandbox_id use the session's default sandbox, which this makes unless one exists; sandboxes are destroyed when the MCP session ends unless `keep` is true. Network access, a lifetime above the server's default, asks the user first."
    )]
    async fn create_sandbox(
        &self,
        Parameters(a): Parameters<CreateArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(async {
            let mut mounts = Vec::new();
            for m in &a.mounts {
                let spec: aibox_types::MountSpec = m.parse().map_err(|e| Fail(format!("mount {m:?}: {e}")))?;
                mounts.push(spec);
            }
            let mut volumes = Vec::new();
            for v in &a.volumes {
                let r: aibox_types::api::VolumeRef = v.parse().map_err(|e| Fail(format!("volume {v:?}: {e}")))?;
                volumes.push(r);
            }
            let req = a.request(mounts, volumes)?;
            let mut wider = Vec::new();
            if let Some(n) = req.network.as_ref().filter(|n| n.mode != aibox_types::NetworkMode::None) {
                let rules: Vec<String> = n.rules.iter().map(|r| r.to_string()).collect();
                wider.push(match n.mode {
                    aibox_types::NetworkMode::Full => "allow full network egress".to_string(),
                    _ => format!("allow network egress by the rules {}", rules.join(", ")),
                });
            }
            if !a.mounts.is_empty() {
                wider.push(format!("mount host paths {}", a.mounts.join(", ")));
            }
            if let Some(sid) = &req.snapshot {
                wider.extend(self.inherited(&caller, sid, &req).await?);
            }
            if let Some(w) = &req.workspace {
                wider.push(format!("make the sandbox in workspace {w} (it can change or delete the workspace's files)"));
            }
            let writable: Vec<String> = req.volumes.iter().filter(|v| !v.read_only).map(|v| v.to_string()).collect();
            if !writable.is_empty() {
                wider.push(format!("mount volumes read-write (the sandbox can change or delete their files) {}", writable.join(", ")));
            }
            if a.public {
                wider.push("make the sandbox's published ports public".to_string());
            }
            if let Some(t) = a.ttl_seconds {
                let d = self.default_ttl(&caller).await;
                if t > d {
                    wider.push(format!("keep a sandbox for {t} s (the default is {d} s)"));
                }
            }
            if !wider.is_empty() {
                self.approve(&ctx, &wider.join(" and ")).await?;
            }
            let v = self.api().create_sandbox(&caller, req).await?;
            let id = v.id.clone();
            self.own(&id, &caller, a.keep);
            let mut default = self.session.default.lock().await;
            let make_default = a.make_default.unwrap_or(default.is_none());
            if make_default {
                *default = Some(id.clone());
            }
            let level = v.isolation["level"].as_str().unwrap_or("unknown").to_string();
            Ok(result(
                format!(
                    "created sandbox {id} (isolation: {level}{}{})",
                    if make_default { ", the session's default" } else { "" },
                    if a.keep { ", kept after the session" } else { "" }
                ),
                json!({"sandbox_id": id, "default": make_default, "kept": a.keep, "isolation": v.isolation, "expires_at_ms": v.expires_at_ms}),
            ))
        }
        .await)
    }

    #[tool(
        description = "List this API key's volumes: named filesystems with a quota that outlive sandboxes (mount one with create_sandbox's `volumes`). Shows usage, quota, and which sandboxes mount each."
    )]
    async fn list_volumes(&self, ctx: RequestContext<RoleServer>) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let list = self.api().volumes(&caller).await?;
                let text = if list.volumes.is_empty() {
                    "no volumes (create_volume makes one)".to_string()
                } else {
                    list.volumes
                        .iter()
                        .map(|v| {
                            format!(
                                "{}: {} of {} used{}, mounted by {}",
                                v.name,
                                v.used_bytes,
                                v.quota.bytes,
                                if v.quota.enforced {
                                    ""
                                } else {
                                    " (quota not enforced)"
                                },
                                if v.in_use_by.is_empty() {
                                    "none".to_string()
                                } else {
                                    v.in_use_by.join(", ")
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Ok(result(text, json!({"volumes": list.volumes})))
            }
            .await,
        )
    }

    #[tool(
        description = "List this API key's workspaces: persistent identities whose files (at /workspace), environment and history every sandbox created in them shares (create_sandbox's `workspace`). Shows each one's sandboxes now and its history."
    )]
    async fn list_workspaces(&self, ctx: RequestContext<RoleServer>) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let list = self.api().workspaces(&caller).await?;
                let text = if list.workspaces.is_empty() {
                    "no workspaces (aibox workspace create NAME makes one)".to_string()
                } else {
                    list.workspaces
                        .iter()
                        .map(|w| {
                            format!(
                                "{}: {} bytes of files, sandboxes now: {}, {} events",
                                w.name,
                                w.files.used_bytes,
                                if w.sandboxes.is_empty() {
                                    "none".to_string()
                                } else {
                                    w.sandboxes.join(", ")
                                },
                                w.history.len()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Ok(result(text, json!({"workspaces": list.workspaces})))
            }
            .await,
        )
    }

    #[tool(
        description = "Create a volume: a named filesystem with a quota that outlives sandboxes, for caches (pip, npm), datasets or a home directory. Mount it with create_sandbox's `volumes` (NAME:/path)."
    )]
    async fn create_volume(
        &self,
        Parameters(a): Parameters<CreateVolumeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let req = aibox_types::api::VolumeRequest {
                    name: a.name,
                    size: a.size,
                    uid: a.uid,
                    labels: a.labels,
                };
                let v = self.api().create_volume(&caller, req).await?;
                Ok(result(
                    format!(
                        "created volume {} ({} bytes{})",
                        v.name,
                        v.quota.bytes,
                        if v.quota.enforced {
                            ""
                        } else {
                            "; its quota is not enforced here"
                        }
                    ),
                    json!(v),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "List the sandboxes this API key can use: id, state, template, expiry, and which one is this session's default."
    )]
    async fn list_sandboxes(&self, ctx: RequestContext<RoleServer>) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let all = self.api().sandboxes(&caller).await?;
                let default = self.session.default.lock().await.clone();
                let list: Vec<Value> = all
                    .iter()
                    .map(|s| {
                        json!({
                            "sandbox_id": s.id, "state": s.state, "template": s.spec["template"],
                            "expires_at_ms": s.expires_at_ms, "labels": s.labels,
                            "default": default.as_deref() == Some(s.id.as_str()),
                        })
                    })
                    .collect();
                let text = if list.is_empty() {
                    "no sandboxes (tools create the session's default sandbox on first use)"
                        .to_string()
                } else {
                    list.iter()
                        .map(|s| {
                            format!(
                                "{} {} template={}{}",
                                s["sandbox_id"].as_str().unwrap_or_default(),
                                s["state"].as_str().unwrap_or_default(),
                                s["template"].as_str().unwrap_or("host"),
                                if s["default"] == true {
                                    " (default)"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Ok(result(text, json!({"sandboxes": list})))
            }
            .await,
        )
    }

    async fn exec(
        &self,
        caller: &Caller,
        id: &str,
        req: aibox_types::api::ExecRequest,
    ) -> Result<CallToolResult, Fail> {
        let v = self.api().exec(caller, id, req).await?;
        let (out, out_cut) = cut(&v.stdout);
        let (err, err_cut) = cut(&v.stderr);
        let out_trunc = out_cut || v.stdout_truncated;
        let err_trunc = err_cut || v.stderr_truncated;
        let code = v.exit_code;
        let mut text = match (v.signal, v.timed_out) {
            (_, true) => format!("timed out after {} ms", v.duration_ms),
            (None, _) => format!("exit code {code} ({} ms)", v.duration_ms),
            (Some(sig), _) => format!("killed by signal {sig} ({} ms)", v.duration_ms),
        };
        if !out.is_empty() {
            text.push_str(&format!("\n--- stdout ---\n{out}"));
        }
        if out_trunc {
            text.push_str("\n[stdout truncated]");
        }
        if !err.is_empty() {
            text.push_str(&format!("\n--- stderr ---\n{err}"));
        }
        if err_trunc {
            text.push_str("\n[stderr truncated]");
        }
        Ok(result(
            text,
            json!({
                "sandbox_id": id, "exit_code": code, "signal": v.signal, "timed_out": v.timed_out,
                "duration_ms": v.duration_ms, "stdout": out, "stderr": err,
                "stdout_truncated": out_trunc, "stderr_truncated": err_trunc,
            }),
        ))
    }

    #[tool(
        description = "Run a shell command in a sandbox (default: the session's sandbox) and wait for it. Returns stdout, stderr, the exit code and the duration; output beyond 256 KiB per stream is cut and marked truncated. A non-zero exit code is a result, not an error."
    )]
    async fn run_command(
        &self,
        Parameters(a): Parameters<RunCommandArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                if a.command.trim().is_empty() {
                    return Err(Fail("command is empty".into()));
                }
                let id = self.target(a.sandbox_id, &caller).await?;
                let mut req =
                    aibox_types::api::ExecRequest::new(aibox_types::api::Cmd::Shell(a.command));
                req.timeout_ms = Some(a.timeout_seconds.unwrap_or(120).max(1) * 1000);
                // Past the cap the model is told the output was cut.
                req.max_output = Some(
                    a.max_output
                        .map_or(MAX_TEXT as u64 + 1, |m| m.min(MAX_TEXT as u64 + 1)),
                );
                req.env = a.env;
                req.user = a.user;
                req.stdin = a.stdin;
                if let Some(w) = a.workdir {
                    absolute(&w)?;
                    req.cwd = Some(w);
                }
                self.exec(&caller, &id, req).await
            }
            .await,
        )
    }

    #[tool(
        description = "Run a snippet of code in a sandbox (default: the session's sandbox): `language` is python, node or bash; the code is written to a file and run with python3, node or bash. Returns stdout, stderr, exit code and duration like run_command."
    )]
    async fn run_code(
        &self,
        Parameters(a): Parameters<RunCodeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(async {
            let (ext, interpreter) = match a.language.to_ascii_lowercase().as_str() {
                "python" | "python3" | "py" => ("py", "python3"),
                "node" | "javascript" | "js" | "nodejs" => ("js", "node"),
                "bash" | "sh" | "shell" => ("sh", "bash"),
                other => {
                    return Err(Fail(format!(
                        "unsupported language {other:?}: use python, node or bash (or run_command for anything else)"
                    )))
                }
            };
            let id = self.target(a.sandbox_id, &caller).await?;
            let path = format!("/tmp/aibox-snippet-{}.{ext}", snippet_tag());
            self.api()
                .write_file(&caller, &id, &path, a.code.into_bytes())
                .await?;
            let mut req = aibox_types::api::ExecRequest::new(aibox_types::api::Cmd::Argv(vec![
                interpreter.to_string(),
                path,
            ]));
            req.timeout_ms = Some(a.timeout_seconds.unwrap_or(120).max(1) * 1000);
            req.max_output = Some(MAX_TEXT as u64 + 1);
            self.exec(&caller, &id, req).await
        }
        .await)
    }

    #[tool(
        description = "Read a file from a sandbox (default: the session's sandbox). Text comes back as is (cut at 256 KiB); binary content as base64."
    )]
    async fn read_file(
        &self,
        Parameters(a): Parameters<ReadFileArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(async {
            absolute(&a.path)?;
            let id = self.target(a.sandbox_id, &caller).await?;
            let (body, cut_off) = self
                .api()
                .read_file(&caller, &id, &a.path, MAX_FILE)
                .await?;
            // A cut reply says only how much was read.
            let (size, size_json) = if cut_off {
                (format!("more than {}", body.len()), Value::Null)
            } else {
                (body.len().to_string(), json!(body.len()))
            };
            Ok(match String::from_utf8(body) {
                Ok(text) => {
                    let (t, truncated) = cut(&text);
                    result(
                        if truncated { format!("{t}\n[truncated: the file has {size} bytes]") } else { t.to_string() },
                        json!({"sandbox_id": id, "path": a.path, "size": size_json, "text": t, "truncated": truncated || cut_off}),
                    )
                }
                Err(e) => {
                    let bytes = e.into_bytes();
                    let b64 = base64(&bytes[..bytes.len().min(MAX_TEXT)]);
                    result(
                        format!("binary file, {size} bytes; base64 of the first {} bytes:\n{b64}", bytes.len().min(MAX_TEXT)),
                        json!({"sandbox_id": id, "path": a.path, "size": size_json, "base64": b64, "truncated": cut_off || bytes.len() > MAX_TEXT}),
                    )
                }
            })
        }
        .await)
    }

    #[tool(
        description = "Write a text file in a sandbox (default: the session's sandbox), replacing it whole; parent directories are created."
    )]
    async fn write_file(
        &self,
        Parameters(a): Parameters<WriteFileArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                absolute(&a.path)?;
                let id = self.target(a.sandbox_id, &caller).await?;
                if let Some(parent) = std::path::Path::new(&a.path)
                    .parent()
                    .filter(|p| p != &std::path::Path::new("/"))
                {
                    let req = aibox_types::api::MkdirRequest {
                        path: parent.to_string_lossy().into_owned(),
                        mode: None,
                    };
                    self.api().mkdir(&caller, &id, req).await?;
                }
                let n = a.content.len();
                self.api()
                    .write_file(&caller, &id, &a.path, a.content.into_bytes())
                    .await?;
                Ok(result(
                    format!("wrote {n} bytes to {}", a.path),
                    json!({"sandbox_id": id, "path": a.path, "bytes": n}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "List a directory in a sandbox (default: /workspace of the session's sandbox): names, kinds and sizes."
    )]
    async fn list_files(
        &self,
        Parameters(a): Parameters<ListFilesArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let path = a.path.unwrap_or_else(|| "/workspace".into());
                absolute(&path)?;
                let id = self.target(a.sandbox_id, &caller).await?;
                let entries = self
                    .api()
                    .list_files(&caller, &id, &path, a.recursive)
                    .await?
                    .entries;
                let text = if entries.is_empty() {
                    format!("{path} is empty")
                } else {
                    entries
                        .iter()
                        .map(|e| {
                            format!(
                                "{}{} ({} bytes)",
                                e.path,
                                if e.kind == aibox_types::api::FileKind::Dir {
                                    "/"
                                } else {
                                    ""
                                },
                                e.size
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Ok(result(
                    text,
                    json!({"sandbox_id": id, "path": path, "entries": entries}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Destroy a sandbox (default: the session's default sandbox) and everything in it."
    )]
    async fn destroy_sandbox(
        &self,
        Parameters(a): Parameters<SandboxArg>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let id = match a.sandbox_id {
                    Some(id) => {
                        valid_id(&id)?;
                        id
                    }
                    None => self
                        .session
                        .default
                        .lock()
                        .await
                        .clone()
                        .ok_or("this session has no default sandbox; pass sandbox_id")?,
                };
                self.api().delete_sandbox(&caller, &id).await?;
                {
                    let mut default = self.session.default.lock().await;
                    if default.as_deref() == Some(id.as_str()) {
                        *default = None;
                    }
                }
                self.session.owned().retain(|(o, _, _)| o != &id);
                Ok(result(
                    format!("destroyed sandbox {id}"),
                    json!({"sandbox_id": id}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Keep a sandbox (default: the session's default sandbox) after this MCP session ends, until its TTL runs out."
    )]
    async fn keep_sandbox(
        &self,
        Parameters(a): Parameters<SandboxArg>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let id = self.target(a.sandbox_id, &caller).await?;
                // Only a sandbox the caller can see (never a word about
                // another tenant's).
                self.api().sandbox(&caller, &id).await?;
                let mut owned = self.session.owned();
                for o in owned.iter_mut().filter(|o| o.0 == id) {
                    o.2 = true;
                }
                Ok(result(
                    format!("sandbox {id} will be kept after this session"),
                    json!({"sandbox_id": id, "kept": true}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Snapshot a sandbox's filesystem (default: the session's sandbox). Returns a snapshot_id that restore_snapshot starts new sandboxes from."
    )]
    async fn snapshot_sandbox(
        &self,
        Parameters(a): Parameters<SnapshotArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(
            async {
                let id = self.target(a.sandbox_id, &caller).await?;
                let req = aibox_types::api::SnapshotRequest { name: a.name };
                let v = self.api().snapshot(&caller, &id, req).await?;
                let sid = v.id;
                Ok(result(
                    format!("snapshot {sid} of sandbox {id} ({} bytes)", v.size_bytes),
                    json!({"snapshot_id": sid, "sandbox_id": id, "size_bytes": v.size_bytes}),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Start a new sandbox from a snapshot (its files as they were). It becomes the session's default sandbox unless make_default is false."
    )]
    async fn restore_snapshot(
        &self,
        Parameters(a): Parameters<RestoreArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(async {
            valid_id(&a.snapshot_id)?;
            let req = aibox_types::api::CreateRequest {
                labels: [("mcp".to_string(), "session".to_string())].into(),
                ..Default::default()
            };
            let wider = self.inherited(&caller, &a.snapshot_id, &req).await?;
            if !wider.is_empty() {
                self.approve(&ctx, &wider.join(" and ")).await?;
            }
            let id = self.api().restore(&caller, &a.snapshot_id, req).await?.id;
            self.own(&id, &caller, a.keep);
            let make_default = a.make_default.unwrap_or(true);
            if make_default {
                *self.session.default.lock().await = Some(id.clone());
            }
            Ok(result(
                format!("sandbox {id} restored from snapshot {}", a.snapshot_id),
                json!({"sandbox_id": id, "snapshot_id": a.snapshot_id, "default": make_default}),
            ))
        }
        .await)
    }

    #[tool(
        description = "Make a TCP port a server listens on inside a sandbox reachable over HTTP (and WebSocket): returns its URL, with the sandbox's access token unless public. Making it public (no token) asks the user first."
    )]
    async fn expose_port(
        &self,
        Parameters(a): Parameters<ExposeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Outcome {
        let caller = caller_of(&ctx);
        done(async {
            if a.port == 0 || a.port > 65535 {
                return Err(Fail(format!("port {} is not a TCP port (1-65535)", a.port)));
            }
            let id = self.target(a.sandbox_id, &caller).await?;
            let v = if a.public {
                self.approve(&ctx, &format!("make port {} of sandbox {id} public (reachable without a token)", a.port))
                    .await?;
                let patch = aibox_types::api::PortsPatch { public: Some(true), rotate_token: false };
                self.api().set_ports(&caller, &id, patch).await?
            } else {
                self.api().ports(&caller, &id).await?
            };
            let listening = v.ports.iter().find(|p| u32::from(p.port) == a.port);
            let port = a.port.to_string();
            let url = match listening.and_then(|p| p.url.as_deref()) {
                Some(u) => u.to_string(),
                None => v.url_template.as_deref().unwrap_or_default().replace("{port}", &port),
            };
            // The same port under the API's own host (no wildcard DNS needed).
            let path_url = match listening.and_then(|p| p.path_url.as_deref()) {
                Some(u) => u.to_string(),
                None => url
                    .split_once("://")
                    .and_then(|(scheme, rest)| {
                        let host = rest.split('/').next()?;
                        let host = host.split_once('.').map_or(host, |(_, h)| h);
                        Some(format!("{scheme}://{host}/v1/sandboxes/{id}/ports/{port}/"))
                    })
                    .unwrap_or_default(),
            };
            let token = (!v.public).then(|| v.token.clone());
            let with_token = |u: &str| match &token {
                Some(t) if !u.contains("aibox_token=") && !u.is_empty() => {
                    format!("{u}{}aibox_token={t}", if u.contains('?') { '&' } else { '?' })
                }
                _ => u.to_string(),
            };
            let (url, path_url) = (with_token(&url), with_token(&path_url));
            let note = if listening.is_some() { "" } else { "\n(nothing listens on it yet: start the server, then open the URL)" };
            Ok(result(
                format!("{url}\n{path_url} (the same, without wildcard DNS){note}"),
                json!({"sandbox_id": id, "port": a.port, "url": url, "path_url": path_url, "listening": listening.is_some(), "public": v.public}),
            ))
        }
        .await)
    }
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `aibox://SANDBOX/PATH` → (sandbox, /PATH).
fn parse_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("aibox://")?;
    let (id, path) = rest.split_once('/')?;
    valid_id(id).ok()?;
    Some((id.to_string(), format!("/{path}")))
}

/// A prompt: name, description, arguments (name, description, required).
type PromptSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, bool)],
);

const PROMPTS: [PromptSpec; 3] = [
    (
        "run_untrusted_snippet",
        "Run a piece of code you do not trust in a throwaway sandbox and report what it does.",
        &[
            ("language", "python, node or bash", true),
            ("code", "the code to run", true),
        ],
    ),
    (
        "fix_failing_test",
        "Reproduce a failing test in a sandbox, find the cause and fix it.",
        &[
            (
                "test_command",
                "the command that runs the failing test, e.g. `pytest tests/test_x.py`",
                true,
            ),
            (
                "project_path",
                "where the project is in the sandbox (default /workspace)",
                false,
            ),
        ],
    ),
    (
        "explore_project",
        "Look around a project in a sandbox: layout, how to build it, how to run its tests.",
        &[(
            "project_path",
            "where the project is in the sandbox (default /workspace)",
            false,
        )],
    ),
];

fn prompt_text(name: &str, args: &serde_json::Map<String, Value>) -> Option<String> {
    let arg = |k: &str, d: &str| {
        args.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or(d)
            .to_string()
    };
    Some(match name {
        "run_untrusted_snippet" => format!(
            "Run this {} code in an aibox sandbox, never on the host. Create a fresh sandbox with create_sandbox (no network), run it with run_code, then destroy the sandbox with destroy_sandbox. Report what the code printed, its exit code, and anything it tried to do that looks risky (network, files outside /workspace and /tmp, processes).\n\n```\n{}\n```",
            arg("language", "python"),
            arg("code", "")
        ),
        "fix_failing_test" => format!(
            "In the session's aibox sandbox, the project is at {}. Run `{}` with run_command and read the failure. Read the code involved with read_file and list_files, form a hypothesis, change the code with write_file, and run the test again. Repeat until it passes; then run the whole test suite to check nothing else broke, and summarise the cause and the fix.",
            arg("project_path", "/workspace"),
            arg("test_command", "")
        ),
        "explore_project" => format!(
            "Explore the project at {} in the session's aibox sandbox with list_files and read_file: what it is, its layout, its dependencies, how to build it and run its tests (try them with run_command). Summarise in a few lines.",
            arg("project_path", "/workspace")
        ),
        _ => return None,
    })
}

#[tool_handler]
impl ServerHandler for AiboxMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new("aibox", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "aibox runs commands and code in isolated Linux sandboxes. Tools without a sandbox_id act on this session's default sandbox, created on first use and destroyed when the session ends (unless kept). Files are under /workspace; there is no network unless a sandbox is created with allow_network (the user is asked).",
        )
    }

    /// Up to 2025-11-25: the revisions with sessions, which the default
    /// sandbox and elicitation rest on (a 2026-07-28 client negotiates down).
    fn supported_protocol_versions(
        &self,
    ) -> std::borrow::Cow<'static, [rmcp::model::ProtocolVersion]> {
        std::borrow::Cow::Borrowed(rmcp::model::ProtocolVersion::known_up_to(
            &rmcp::model::ProtocolVersion::V_2025_11_25,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        match self.tool_router.call(tcc).await {
            // Bad arguments are the model's to fix: a tool error it can read.
            Err(e) if e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid arguments: {}",
                    e.message
                ))])
                .into())
            }
            r => r,
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let Some(id) = self.session.default.lock().await.clone() else {
            return Ok(ListResourcesResult::default());
        };
        let caller = caller_of(&ctx);
        let entries = self
            .api()
            .list_files(&caller, &id, "/workspace", true)
            .await
            .map(|l| l.entries)
            .unwrap_or_default();
        let resources = entries
            .iter()
            .filter(|e| e.kind == aibox_types::api::FileKind::File)
            .take(500)
            .map(|e| {
                let mut r = Resource::new(format!("aibox://{id}{}", e.path), e.path.clone());
                r.size = Some(e.size);
                r
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("aibox://{sandbox_id}/{+path}", "sandbox-file")
                .with_description("A file in a sandbox: aibox://SANDBOX_ID/ABSOLUTE/PATH"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some((id, path)) = parse_uri(&request.uri) else {
            return Err(ErrorData::invalid_params(
                format!("{} is not an aibox://SANDBOX_ID/PATH URI", request.uri),
                None,
            ));
        };
        let (body, more) = self
            .api()
            .read_file(&caller_of(&ctx), &id, &path, MAX_FILE)
            .await
            .map_err(|e| ErrorData::resource_not_found(e.to_string(), None))?;
        if more {
            return Err(ErrorData::invalid_params(
                format!(
                    "{} is larger than {} bytes: read its start with read_file",
                    request.uri,
                    body.len()
                ),
                None,
            ));
        }
        let contents = match String::from_utf8(body) {
            Ok(t) => ResourceContents::text(t, request.uri.clone()),
            Err(e) => ResourceContents::blob(base64(e.as_bytes()), request.uri.clone()),
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = PROMPTS
            .iter()
            .map(|(name, desc, args)| {
                Prompt::new(
                    *name,
                    Some(*desc),
                    Some(
                        args.iter()
                            .map(|(n, d, req)| {
                                PromptArgument::new(*n)
                                    .with_description(*d)
                                    .with_required(*req)
                            })
                            .collect(),
                    ),
                )
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        if let Some((_, _, spec)) = PROMPTS.iter().find(|(n, _, _)| *n == request.name) {
            if let Some((missing, _, _)) = spec
                .iter()
                .find(|(n, _, req)| *req && !args.contains_key(*n))
            {
                return Err(ErrorData::invalid_params(
                    format!("prompt {}: argument {missing} is required", request.name),
                    None,
                ));
            }
        }
        let text = prompt_text(&request.name, &args).ok_or_else(|| {
            ErrorData::invalid_params(format!("no prompt named {:?}", request.name), None)
        })?;
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }
}

/// A fresh name part for a snippet's file in the sandbox: it only has to
/// differ between calls (the sandbox is the caller's own), so std's
/// randomly keyed hasher over the time is enough.
fn snippet_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(aibox_types::now_ms());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(
            parse_uri("aibox://0a1b/workspace/x.py"),
            Some(("0a1b".into(), "/workspace/x.py".into()))
        );
        assert_eq!(parse_uri("aibox://../etc"), None);
        assert_eq!(parse_uri("http://x/y"), None);
        let long = "é".repeat(MAX_TEXT);
        let (c, cut_) = cut(&long);
        assert!(cut_ && c.len() <= MAX_TEXT && c.is_char_boundary(c.len()));
        assert!(prompt_text("fix_failing_test", &serde_json::Map::new()).is_some());
        assert!(prompt_text("nope", &serde_json::Map::new()).is_none());
    }
}
