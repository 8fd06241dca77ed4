//! What the server needs from the sandbox runtime, as a trait: the real
//! implementation drives `aibox_runtime::Runtime`; API tests use a fake.
//! All calls block, so handlers run them on the blocking pool.

use crate::error::ApiError;
use aibox_protocol::ExecRequest;
use aibox_runtime::{AgentClient, Output, Runtime, SnapshotMeta};
use aibox_types::{IsolationReport, SandboxSpec};

pub struct Created {
    pub id: String,
    pub isolation: IsolationReport,
}

pub trait Engine: Send + Sync + 'static {
    fn create(&self, spec: &SandboxSpec) -> Result<Created, ApiError>;
    fn destroy(&self, id: &str) -> Result<(), ApiError>;
    /// Freeze (true) or thaw (false) every process of the sandbox.
    fn pause(&self, id: &str, pause: bool) -> Result<(), ApiError>;
    /// Ids of the sandboxes that are running now.
    fn running(&self) -> Vec<String>;
    /// Clean what crashed creators left (records, cgroups, slots).
    fn gc(&self);
    fn exec(&self, id: &str, req: ExecRequest, stdin: Option<&[u8]>) -> Result<Output, ApiError>;
    /// Stream a file into `out`, calling `on_size` before the first byte.
    fn read_file_to(
        &self,
        id: &str,
        path: &str,
        on_size: &mut dyn FnMut(u64),
        out: &mut dyn std::io::Write,
    ) -> Result<(), ApiError>;
    /// Write a file from `data`, streamed (the agent writes a temporary
    /// file and renames it: a failed upload leaves the old file).
    fn write_file(
        &self,
        id: &str,
        path: &str,
        data: &mut dyn std::io::Read,
        mode: Option<u32>,
    ) -> Result<(), ApiError>;
    /// The sandbox's agent, for every other operation.
    fn agent(&self, id: &str) -> Result<AgentClient, ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::Internal,
            format!("no agent for sandbox {id} in this engine"),
        ))
    }
    /// Live usage (CPU, memory, pids), when the engine can measure it.
    fn stats(&self, _id: &str) -> Option<serde_json::Value> {
        None
    }
    /// The OCI templates, and the store's (layers, bytes).
    fn templates(
        &self,
    ) -> Result<(Vec<aibox_runtime::image::oci::ImageMeta>, (u64, u64)), ApiError> {
        Ok((Vec::new(), (0, 0)))
    }
    fn remove_template(&self, name: &str) -> Result<(), ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::TemplateNotFound,
            format!("no template named {name:?}"),
        ))
    }
    fn prune_templates(&self, _build_cache: bool) -> Result<(u64, u64), ApiError> {
        Ok((0, 0))
    }
    /// Build a template (see `aibox_runtime::image::build`).
    fn build_template(
        &self,
        _recipe: &aibox_runtime::image::recipe::Recipe,
        _opts: &aibox_runtime::image::build::BuildOptions,
        _hooks: &mut dyn aibox_runtime::image::build::Hooks,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, aibox_runtime::Error> {
        Err(aibox_runtime::Error::Unsupported(
            "this engine cannot build templates".into(),
        ))
    }
    /// Import an image archive as a template.
    fn import_template(
        &self,
        _archive: &std::path::Path,
        _name: Option<&str>,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::InvalidArgument,
            "this engine has no template store",
        ))
    }
    /// Make a snapshot a template.
    fn promote_snapshot(
        &self,
        _snapshot: &str,
        _name: &str,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::InvalidArgument,
            "this engine has no template store",
        ))
    }
    /// Pull an image from a registry as template `name`.
    fn pull_template(
        &self,
        _reference: aibox_runtime::image::registry::Reference,
        _name: &str,
        _insecure: bool,
        _progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::InvalidArgument,
            "this engine has no template store",
        ))
    }
    /// The host pid of the sandbox's PID 1.
    fn pid(&self, _id: &str) -> Option<i32> {
        None
    }
    /// The TCP ports processes in the sandbox listen on.
    fn listeners(
        &self,
        _id: &str,
    ) -> Result<Vec<aibox_runtime::sandbox::listening::Listener>, ApiError> {
        Ok(Vec::new())
    }
    /// Snapshot sandbox `id`'s filesystem.
    /// The volume store (volumes are files on the host, kept by the
    /// runtime that mounts them).
    fn volumes(&self) -> Result<&Runtime, ApiError> {
        Err(ApiError::new(
            aibox_types::ErrorCode::Unavailable,
            "this engine has no volumes",
        ))
    }
    fn snapshot(&self, id: &str, name: Option<&str>) -> Result<SnapshotMeta, ApiError>;
    /// Delete a snapshot (a conflict while a sandbox restored from it runs).
    fn delete_snapshot(&self, snapshot: &str) -> Result<(), ApiError>;
    /// Ids of the snapshots on disk.
    fn snapshot_ids(&self) -> Vec<String>;
    /// Where the egress proxy of a sandbox with network listens, and the
    /// uid that must own that socket (root mode). None: no egress.
    fn egress_socket(&self, _id: &str) -> Option<(std::path::PathBuf, Option<u32>)> {
        None
    }
}

/// The namespace runtime, with its run dir owned by this server.
pub struct RuntimeEngine {
    rt: Runtime,
}

impl RuntimeEngine {
    pub fn new(rt: Runtime) -> RuntimeEngine {
        RuntimeEngine { rt }
    }
}

impl Engine for RuntimeEngine {
    fn create(&self, spec: &SandboxSpec) -> Result<Created, ApiError> {
        let sb = self.rt.create(spec)?;
        Ok(Created {
            id: sb.id().to_string(),
            isolation: sb.isolation().clone(),
        })
    }

    fn destroy(&self, id: &str) -> Result<(), ApiError> {
        match self.rt.get(id) {
            Ok(sb) => Ok(sb.destroy()?),
            Err(aibox_runtime::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn pause(&self, id: &str, pause: bool) -> Result<(), ApiError> {
        let sb = self.rt.get(id)?;
        if pause {
            sb.pause()?;
        } else {
            sb.resume()?;
        }
        Ok(())
    }

    fn agent(&self, id: &str) -> Result<AgentClient, ApiError> {
        Ok(self.rt.agent_client(id)?)
    }

    fn stats(&self, id: &str) -> Option<serde_json::Value> {
        let sb = self.rt.get(id).ok()?;
        serde_json::to_value(sb.stats()).ok()
    }

    fn templates(
        &self,
    ) -> Result<(Vec<aibox_runtime::image::oci::ImageMeta>, (u64, u64)), ApiError> {
        let store = self.rt.templates();
        Ok((store.images(), store.usage()))
    }

    fn remove_template(&self, name: &str) -> Result<(), ApiError> {
        Ok(self.rt.remove_template(name)?)
    }

    fn prune_templates(&self, build_cache: bool) -> Result<(u64, u64), ApiError> {
        Ok(self
            .rt
            .templates()
            .prune(build_cache)
            .map_err(aibox_runtime::Error::from)?)
    }

    fn build_template(
        &self,
        recipe: &aibox_runtime::image::recipe::Recipe,
        opts: &aibox_runtime::image::build::BuildOptions,
        hooks: &mut dyn aibox_runtime::image::build::Hooks,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, aibox_runtime::Error> {
        self.rt.build(recipe, opts, hooks)
    }

    fn import_template(
        &self,
        archive: &std::path::Path,
        name: Option<&str>,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Ok(self
            .rt
            .templates()
            .import_archive(archive, name, &mut |_, _, _| {})
            .map_err(aibox_runtime::Error::from)?)
    }

    fn promote_snapshot(
        &self,
        snapshot: &str,
        name: &str,
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Ok(self.rt.promote_snapshot(snapshot, name)?)
    }

    fn pull_template(
        &self,
        reference: aibox_runtime::image::registry::Reference,
        name: &str,
        insecure: bool,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<aibox_runtime::image::oci::ImageMeta, ApiError> {
        Ok(
            aibox_runtime::image::registry::Client::new(reference, insecure)
                .pull(&self.rt.templates(), name, progress)
                .map_err(aibox_runtime::Error::from)?,
        )
    }

    fn pid(&self, id: &str) -> Option<i32> {
        self.rt.get(id).ok().map(|sb| sb.record().pid)
    }

    fn listeners(
        &self,
        id: &str,
    ) -> Result<Vec<aibox_runtime::sandbox::listening::Listener>, ApiError> {
        Ok(self.rt.get(id)?.listeners()?)
    }

    fn running(&self) -> Vec<String> {
        self.rt.list().into_iter().map(|r| r.id).collect()
    }

    fn gc(&self) {
        let _ = self.rt.gc();
        let _ = self.rt.gc_snapshots();
        let _ = self.rt.gc_volumes();
    }

    fn volumes(&self) -> Result<&Runtime, ApiError> {
        Ok(&self.rt)
    }

    fn snapshot(&self, id: &str, name: Option<&str>) -> Result<SnapshotMeta, ApiError> {
        Ok(self.rt.snapshot(id, name)?)
    }

    fn delete_snapshot(&self, snapshot: &str) -> Result<(), ApiError> {
        Ok(self.rt.delete_snapshot(snapshot)?)
    }

    fn snapshot_ids(&self) -> Vec<String> {
        self.rt.snapshots().into_iter().map(|m| m.id).collect()
    }

    fn egress_socket(&self, id: &str) -> Option<(std::path::PathBuf, Option<u32>)> {
        let sb = self.rt.get(id).ok()?;
        let rec = sb.record();
        (rec.spec.network != aibox_types::NetworkMode::None).then(|| {
            (
                self.rt.dirs().sandbox(id).join("egress.sock"),
                rec.uid_base(),
            )
        })
    }

    fn exec(&self, id: &str, req: ExecRequest, stdin: Option<&[u8]>) -> Result<Output, ApiError> {
        Ok(self.rt.agent_client(id)?.exec(req, stdin)?)
    }

    fn read_file_to(
        &self,
        id: &str,
        path: &str,
        on_size: &mut dyn FnMut(u64),
        out: &mut dyn std::io::Write,
    ) -> Result<(), ApiError> {
        Ok(self
            .rt
            .agent_client(id)?
            .read_file_to(path, None, &mut |st| on_size(st.size), out)?)
    }

    fn write_file(
        &self,
        id: &str,
        path: &str,
        data: &mut dyn std::io::Read,
        mode: Option<u32>,
    ) -> Result<(), ApiError> {
        self.rt
            .agent_client(id)?
            .write_file(path, data, mode, None, true)?;
        Ok(())
    }
}
