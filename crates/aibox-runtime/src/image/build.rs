//! Template builds: a [`Recipe`]'s steps run one by one, each RUN and COPY
//! in a real sandbox made from the layers so far, whose writable layer is
//! then committed as a new layer of the store. ENV, WORKDIR, USER, CMD and
//! ENTRYPOINT change the image's config only.
//!
//! Every step's result is kept as a hidden image (`.build/<key>`), keyed
//! by the parent's key and the step (and for COPY, the content of what it
//! copies): a later build that reaches the same key reuses it instead of
//! running the step. The hidden images are what the next step's sandbox is
//! made from, and what keeps their layers from `prune` (until
//! `prune --build-cache`).

use crate::image::layer;
use crate::image::oci::{self, ImageConfig, ImageMeta};
use crate::image::recipe::{Instr, Recipe};
use crate::{Error, Runtime, Sandbox};
use aibox_protocol::{ExecRequest, Kind};
use aibox_types::egress::{Mode, Rule};
use aibox_types::{SandboxSpec, User};
use serde::Serialize;
use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use crate::image::oci::CACHE_PREFIX;

/// What a failed step reports: which step, how it ended, and the sandbox
/// kept for inspection (with `keep_failed`).
#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub step: usize,
    pub of: usize,
    pub instruction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    pub message: String,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}/{} `{}` failed: {}",
            self.step, self.of, self.instruction, self.message
        )?;
        if let Some(id) = &self.sandbox {
            write!(
                f,
                " (its sandbox {id} is kept: `aibox shell {id}`, then `aibox rm {id}`)"
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The template to write.
    pub name: String,
    /// Where COPY sources are found.
    pub context: PathBuf,
    /// The recipe's file name, for the template's `source`.
    pub file: String,
    pub no_cache: bool,
    /// Leave a failed step's sandbox running.
    pub keep_failed: bool,
    /// Override the recipe's network for RUN steps.
    pub network: Option<(Mode, Vec<Rule>)>,
    pub memory: Option<aibox_types::ByteSize>,
    pub cpus: Option<f64>,
    pub disk: Option<aibox_types::ByteSize>,
    /// Context paths COPY never sees (see [`ignore_patterns`]).
    pub ignore: Vec<String>,
}

/// The patterns of the context's `.aiboxignore` (else `.dockerignore`):
/// one per line, `#` comments; a pattern matches a path relative to the
/// context, or any path under it, with `*` and `?` within a component.
pub fn ignore_patterns(context: &Path) -> Vec<String> {
    let text = fs::read_to_string(context.join(".aiboxignore"))
        .or_else(|_| fs::read_to_string(context.join(".dockerignore")))
        .unwrap_or_default();
    text.lines()
        .map(|l| l.trim().trim_start_matches('/').trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// Is `rel` (relative to the context) left out by `patterns`?
pub fn is_ignored(patterns: &[String], rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    patterns.iter().any(|p| {
        let pat: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        // `**` is any number of components; the pattern matches `rel`
        // itself or one of its parents.
        fn m(pat: &[&str], parts: &[&str]) -> bool {
            match pat.first() {
                None => true,
                Some(&"**") => (0..=parts.len()).any(|i| m(&pat[1..], &parts[i..])),
                Some(p) => !parts.is_empty() && glob_any(p, parts[0]) && m(&pat[1..], &parts[1..]),
            }
        }
        m(&pat, &parts)
    })
}

fn glob_any(pat: &str, name: &str) -> bool {
    glob(pat, name) || (name.starts_with('.') && pat == "*")
}

/// Progress, in order. Its JSON form is what `POST /v1/templates/build` streams.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Step {
        step: usize,
        of: usize,
        instruction: String,
        cached: bool,
    },
    Output {
        stream: &'static str,
        data: String,
    },
    Layer {
        step: usize,
        digest: String,
        bytes: u64,
        entries: u64,
        seconds: f64,
    },
    Note {
        message: String,
    },
}

/// What the caller does around a build.
pub trait Hooks {
    fn event(&mut self, e: Event);
    /// A step's sandbox is up (the server starts its egress here).
    fn started(&mut self, _sb: &Sandbox) -> Result<(), Error> {
        Ok(())
    }
    /// A step's sandbox is going away, or `kept` for inspection.
    fn finished(&mut self, _sb: &Sandbox, _kept: bool) {}
}

/// The state after a step.
struct State {
    key: String,
    image: ImageMeta,
}

fn key_of(parts: &[&str]) -> String {
    oci::sha256_hex(parts.join("\n").as_bytes())
}

fn hidden(key: &str) -> String {
    format!("{CACHE_PREFIX}{}", &key[..32])
}

impl Runtime {
    /// Build `recipe` into the template `opts.name`.
    pub fn build(
        &self,
        recipe: &Recipe,
        opts: &BuildOptions,
        hooks: &mut dyn Hooks,
    ) -> Result<ImageMeta, Error> {
        if !oci::valid_name(&opts.name) {
            return Err(Error::InvalidSpec(format!(
                "{:?} is not a valid template name",
                opts.name
            )));
        }
        let (network, rules) = opts
            .network
            .clone()
            .unwrap_or_else(|| (recipe.network, recipe.rules.clone()));
        // Limits and rules are checked before any step runs.
        SandboxSpec {
            memory: opts.memory,
            cpus: opts.cpus,
            disk: opts.disk,
            network,
            network_rules: rules.clone(),
            ..Default::default()
        }
        .validate()
        .map_err(Error::InvalidSpec)?;
        for note in &recipe.ignored {
            hooks.event(Event::Note {
                message: note.clone(),
            });
        }
        let store = self.templates();
        let of = recipe.steps.len();
        let mut state: Option<State> = None;
        for (i, step) in recipe.steps.iter().enumerate() {
            let n = i + 1;
            let failure = |message: String| StepFailure {
                step: n,
                of,
                instruction: step.text.clone(),
                exit_code: None,
                sandbox: None,
                message,
            };
            let fail = |e: Error| -> Error {
                match e {
                    Error::Build(b) => Error::Build(b),
                    e => Error::Build(Box::new(failure(e.to_string()))),
                }
            };
            let parent = match (&step.instr, state.take()) {
                (Instr::From { image }, None) => {
                    state = Some(self.from(image, n, of, &step.text, opts, hooks).map_err(
                        |e| {
                            // A missing template stays template_not_found.
                            match e {
                                Error::Template(_) => e,
                                e => fail(e),
                            }
                        },
                    )?);
                    continue;
                }
                (_, Some(s)) => s,
                (_, None) => {
                    return Err(Error::InvalidSpec("a recipe starts with FROM".into()));
                }
            };
            let workdir = parent
                .image
                .config
                .workdir
                .clone()
                .unwrap_or_else(|| "/".into());
            let copy = match &step.instr {
                Instr::Copy { src, dest } => Some(
                    copy_plan(&opts.context, src, dest, &workdir, &opts.ignore)
                        .map_err(|m| Error::Build(Box::new(failure(m))))?,
                ),
                _ => None,
            };
            let json = serde_json::to_string(&step.instr).unwrap_or_default();
            let key = key_of(&[
                &parent.key,
                &json,
                copy.as_ref().map_or("", |c| c.digest.as_str()),
            ]);
            if !opts.no_cache {
                if let Some(image) = self.cached(&key) {
                    hooks.event(Event::Step {
                        step: n,
                        of,
                        instruction: step.text.clone(),
                        cached: true,
                    });
                    state = Some(State { key, image });
                    continue;
                }
            }
            hooks.event(Event::Step {
                step: n,
                of,
                instruction: step.text.clone(),
                cached: false,
            });
            let mut image = parent.image.clone();
            image.name = hidden(&key);
            let c = &mut image.config;
            match &step.instr {
                Instr::From { .. } => {
                    return Err(fail(Error::InvalidSpec(
                        "multi-stage builds are not supported".into(),
                    )))
                }
                Instr::Env { vars } => {
                    for (k, v) in vars {
                        let prefix = format!("{k}=");
                        c.env.retain(|e| !e.starts_with(&prefix));
                        c.env.push(format!("{k}={v}"));
                    }
                }
                Instr::Workdir { path } => {
                    c.workdir = Some(join_path(&workdir, path));
                }
                Instr::User { user } => {
                    // Checked now, so a bad name fails at its own step.
                    let (_, dirs) = store
                        .lowers(&parent.image.name)
                        .map_err(|e| fail(e.into()))?;
                    crate::image::template::image_user(user, &dirs).map_err(fail)?;
                    c.user = Some(user.clone());
                }
                Instr::Cmd { argv } => c.cmd = argv.clone(),
                Instr::Entrypoint { argv } => c.entrypoint = argv.clone(),
                Instr::Run { .. } | Instr::Copy { .. } => {
                    let spec = self.step_spec(&parent.image, &step.instr, network, &rules, opts);
                    let layer = self.run_step(
                        &parent.image,
                        &spec,
                        &step.instr,
                        copy.as_ref(),
                        opts,
                        hooks,
                        &failure,
                    )?;
                    if let Some(l) = layer {
                        if image.layers.len() >= oci::MAX_LAYERS {
                            return Err(fail(Error::InvalidSpec(format!(
                                "the template would have more than {} layers",
                                oci::MAX_LAYERS
                            ))));
                        }
                        image.layers.push(l);
                    }
                }
            }
            image.created_ms = crate::now_ms();
            store.save(&image).map_err(|e| fail(e.into()))?;
            state = Some(State { key, image });
        }
        let last = state.ok_or_else(|| Error::InvalidSpec("the recipe has no FROM".into()))?;
        let mut image = last.image;
        image.name = opts.name.clone();
        image.digest = format!("sha256:{}", last.key);
        image.created_ms = crate::now_ms();
        image.source = format!("build of {}", opts.file);
        store.save(&image)?;
        Ok(image)
    }

    /// A cache entry whose layers are all still in the store.
    fn cached(&self, key: &str) -> Option<ImageMeta> {
        let store = self.templates();
        let image = store.get(&hidden(key))?;
        image
            .layers
            .iter()
            .all(|l| store.present_layer(&l.digest).is_some())
            .then_some(image)
    }

    fn from(
        &self,
        image: &str,
        n: usize,
        of: usize,
        text: &str,
        opts: &BuildOptions,
        hooks: &mut dyn Hooks,
    ) -> Result<State, Error> {
        let store = self.templates();
        let step = |cached| Event::Step {
            step: n,
            of,
            instruction: text.to_string(),
            cached,
        };
        let base = |key: String, layers, config, base: Option<String>| {
            let image = ImageMeta {
                name: hidden(&key),
                digest: String::new(),
                layers,
                config,
                created_ms: crate::now_ms(),
                source: image.to_string(),
                base,
            };
            (key, image)
        };
        let (key, meta) = if image == "scratch" {
            base(key_of(&["scratch"]), vec![], ImageConfig::default(), None)
        } else if image == "host" {
            let key = key_of(&["host", &crate::image::template::host_key()]);
            base(key, vec![], ImageConfig::default(), Some("host".into()))
        } else if let Some(suite) = image.strip_prefix("debootstrap:") {
            let mirror = debian_mirror();
            let key = key_of(&["debootstrap", suite, "minbase", &mirror]);
            if !opts.no_cache {
                if let Some(image) = self.cached(&key) {
                    hooks.event(step(true));
                    return Ok(State { key, image });
                }
            }
            hooks.event(step(false));
            let layer = self.debootstrap(suite, &mirror, hooks)?;
            let config = ImageConfig {
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                cmd: vec!["bash".into()],
                ..Default::default()
            };
            let (key, meta) = base(key, vec![layer], config, None);
            store.save(&meta)?;
            return Ok(State { key, image: meta });
        } else {
            let m = store
                .get(image)
                .filter(|_| !image.starts_with(CACHE_PREFIX))
                .ok_or_else(|| {
                    Error::Template(crate::image::template::TemplateError::NotFound(
                        image.to_string(),
                    ))
                })?;
            let digests: Vec<&str> = m.layers.iter().map(|l| l.digest.as_str()).collect();
            let config = serde_json::to_string(&m.config).unwrap_or_default();
            let key = key_of(&[
                "image",
                &m.digest,
                &digests.join(","),
                &config,
                m.base.as_deref().unwrap_or(""),
            ]);
            base(key, m.layers, m.config, m.base)
        };
        hooks.event(step(false));
        store.save(&meta)?;
        Ok(State { key, image: meta })
    }

    /// `FROM debootstrap:SUITE`: a minimal Debian, by the host's debootstrap.
    fn debootstrap(
        &self,
        suite: &str,
        mirror: &str,
        hooks: &mut dyn Hooks,
    ) -> Result<oci::LayerMeta, Error> {
        if suite.is_empty() || !suite.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(Error::InvalidSpec(format!(
                "debootstrap:{suite}: name a Debian suite, e.g. debootstrap:bookworm"
            )));
        }
        if aibox_sys::geteuid() != 0 {
            return Err(Error::Unsupported(
                "FROM debootstrap: needs root (debootstrap creates files as root); build as root or start from an image".into(),
            ));
        }
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("debootstrap").is_file()));
        if !found {
            return Err(Error::Unsupported(
                "FROM debootstrap: needs debootstrap installed on the host (apt-get install debootstrap)".into(),
            ));
        }
        let work = self
            .build_dir()?
            .join(format!(".debootstrap-{}", crate::random_id()));
        let _cleanup = RemoveOnDrop(work.clone());
        let rootfs = work.join("rootfs");
        hooks.event(Event::Note {
            message: format!("debootstrap --variant=minbase {suite} from {mirror}"),
        });
        let mut child = std::process::Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(suite)
            .arg(&rootfs)
            .arg(mirror)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Helper(format!("cannot start debootstrap: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<(&'static str, String)>();
        let mut readers = Vec::new();
        for (name, pipe) in [
            (
                "stdout",
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
            (
                "stderr",
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
            ),
        ] {
            let (Some(pipe), tx) = (pipe, tx.clone()) else {
                continue;
            };
            readers.push(std::thread::spawn(move || {
                for line in io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send((name, line + "\n"));
                }
            }));
        }
        drop(tx);
        let mut tail = Vec::new();
        for (stream, data) in rx {
            tail.push(data.clone());
            if tail.len() > 5 {
                tail.remove(0);
            }
            hooks.event(Event::Output { stream, data });
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child
            .wait()
            .map_err(|e| Error::Helper(format!("debootstrap: {e}")))?;
        if !status.success() {
            return Err(Error::Helper(format!(
                "debootstrap {suite} failed ({status}): {}",
                tail.concat().trim()
            )));
        }
        // What a container never uses: downloaded packages and device nodes.
        for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            if let Ok(rd) = fs::read_dir(rootfs.join(d)) {
                for e in rd.flatten() {
                    if e.path().is_file() {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
        let started = Instant::now();
        let store = self.templates();
        let _lock = store.lock_shared()?;
        let l = store.add_tree(&rootfs)?;
        hooks.event(Event::Layer {
            step: 1,
            digest: l.digest.clone(),
            bytes: l.unpacked_bytes,
            entries: l.entries,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(l)
    }

    fn build_dir(&self) -> Result<PathBuf, Error> {
        let d = self.dirs().data.join("builds");
        crate::sandbox::dirs::ensure_dir(&d, 0o700)?;
        Ok(d)
    }

    /// The sandbox a RUN or COPY step runs in.
    fn step_spec(
        &self,
        parent: &ImageMeta,
        instr: &Instr,
        network: Mode,
        rules: &[Rule],
        opts: &BuildOptions,
    ) -> SandboxSpec {
        let run = matches!(instr, Instr::Run { .. });
        SandboxSpec {
            template: parent.name.clone(),
            // Steps run as root unless USER said otherwise (then the
            // image default applies); files are copied in as root.
            user: if run && parent.config.user.is_some() {
                User::User
            } else {
                User::Root
            },
            workdir: parent.config.workdir.clone().unwrap_or_else(|| "/".into()),
            network: if run { network } else { Mode::None },
            network_rules: if run && network != Mode::None {
                rules.to_vec()
            } else {
                vec![]
            },
            memory: opts.memory,
            cpus: opts.cpus,
            disk: opts.disk,
            hostname: Some("aibox-build".into()),
            build_caps: true,
            ..Default::default()
        }
    }

    /// Run a RUN or COPY step in a sandbox and commit what it wrote.
    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        parent: &ImageMeta,
        spec: &SandboxSpec,
        instr: &Instr,
        copy: Option<&CopyPlan>,
        opts: &BuildOptions,
        hooks: &mut dyn Hooks,
        failure: &dyn Fn(String) -> StepFailure,
    ) -> Result<Option<oci::LayerMeta>, Error> {
        let started = Instant::now();
        let wrap = |e: Error| match e {
            Error::Build(b) => Error::Build(b),
            e => Error::Build(Box::new(failure(e.to_string()))),
        };
        let sb = self.create(spec).map_err(wrap)?;
        let id = sb.id().to_string();
        let outcome = (|| -> Result<(), Error> {
            hooks.started(&sb)?;
            let client = sb.client();
            match instr {
                Instr::Run { shell, argv } => {
                    let req = ExecRequest {
                        argv: argv.clone(),
                        shell: shell.clone(),
                        ..Default::default()
                    };
                    let (mut s, _, _) = client.exec_start(req)?;
                    let exit = crate::sandbox::client::pump(&mut s, |k, d| {
                        hooks.event(Event::Output {
                            stream: if k == Kind::Stderr {
                                "stderr"
                            } else {
                                "stdout"
                            },
                            data: String::from_utf8_lossy(d).into_owned(),
                        })
                    })?;
                    let code = exit.status();
                    if code != 0 {
                        let mut f = failure(match exit.signal {
                            Some(sig) => format!("killed by signal {sig} (exit code {code})"),
                            None => format!("exit code {code}"),
                        });
                        f.exit_code = Some(code);
                        return Err(Error::Build(Box::new(f)));
                    }
                }
                Instr::Copy { .. } => {
                    let plan = copy.ok_or_else(|| Error::Helper("no copy plan".into()))?;
                    let mut tar = plan.tar().map_err(|e| {
                        Error::Build(Box::new(failure(format!("reading the build context: {e}"))))
                    })?;
                    client.tar_upload("/", &mut tar, Some(User::Root))?;
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            let e = wrap(e);
            if opts.keep_failed {
                hooks.finished(&sb, true);
                return Err(match e {
                    Error::Build(mut b) => {
                        b.sandbox = Some(id);
                        Error::Build(b)
                    }
                    e => e,
                });
            }
            hooks.finished(&sb, false);
            let _ = sb.destroy();
            return Err(e);
        }
        let committed = self.commit(&sb, parent);
        hooks.finished(&sb, false);
        let _ = sb.destroy();
        let layer = committed.map_err(wrap)?;
        if let Some(l) = &layer {
            hooks.event(Event::Layer {
                step: failure(String::new()).step,
                digest: l.digest.clone(),
                bytes: l.unpacked_bytes,
                entries: l.entries,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(layer)
    }

    /// The sandbox's writable layer as a layer of the store (none when
    /// the step changed nothing).
    fn commit(&self, sb: &Sandbox, _parent: &ImageMeta) -> Result<Option<oci::LayerMeta>, Error> {
        let rec = sb.record();
        let Some(fd) = rec.scratch_fd else {
            return Err(Error::Unsupported(
                "this sandbox cannot be committed".into(),
            ));
        };
        let tmp = self
            .build_dir()?
            .join(format!(".layer-{}", crate::random_id()));
        let _cleanup = RemoveOnDrop(tmp.clone());
        // Whatever the step left running stands still while it is copied.
        let froze = rec.cgroup.set_frozen(true).is_ok();
        let stats = self.copy_upper(rec, fd, &tmp);
        if froze {
            let _ = rec.cgroup.set_frozen(false);
        }
        let stats = stats?;
        if is_empty_dir(&tmp) || stats.entries == 0 {
            return Ok(None);
        }
        let store = self.templates();
        let _lock = store.lock_shared()?;
        Ok(Some(store.add_tree(&tmp)?))
    }
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.0).is_ok() {
            let _ = layer::remove_tree(&self.0);
        }
    }
}

/// The Debian mirror for `FROM debootstrap:`: `AIBOX_DEBIAN_MIRROR`, else
/// the host's own apt source, else deb.debian.org.
fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("AIBOX_DEBIAN_MIRROR") {
        if !m.is_empty() {
            return m;
        }
    }
    let mut texts: Vec<String> = fs::read_to_string("/etc/apt/sources.list")
        .into_iter()
        .collect();
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    for t in &texts {
        for line in t.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let url = match words.as_slice() {
                ["deb", url, ..] if !url.starts_with('[') => Some(*url),
                ["URIs:", url, ..] => Some(*url),
                _ => None,
            };
            if let Some(u) = url.filter(|u| u.trim_end_matches('/').ends_with("/debian")) {
                return u.trim_end_matches('/').to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// `path` against the working directory `cwd`, normalised (never above `/`).
fn join_path(cwd: &str, path: &str) -> String {
    let full = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(cwd).join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in full.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// What a COPY step copies: files of the context and where each goes.
pub struct CopyPlan {
    entries: Vec<(PathBuf, String)>,
    /// sha256 of the destinations, types, modes and contents.
    pub digest: String,
}

/// Sources relative to the context (no `..` out of it, no symlinked
/// directories on the way), `*` and `?` in their last component; `dest`
/// against `workdir`. A directory source copies its contents.
fn copy_plan(
    context: &Path,
    srcs: &[String],
    dest: &str,
    workdir: &str,
    ignore: &[String],
) -> Result<CopyPlan, String> {
    let ctx = fs::canonicalize(context)
        .map_err(|e| format!("the build context {}: {e}", context.display()))?;
    let dest_abs = join_path(workdir, dest);
    let mut matched: Vec<PathBuf> = Vec::new();
    for s in srcs {
        let rel = normalise_rel(s)
            .ok_or_else(|| format!("COPY source {s:?} is outside the build context"))?;
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
        let parent = ctx.join(rel.parent().unwrap_or(Path::new("")));
        let hits: Vec<PathBuf> = match &name {
            Some(n) if n.contains(['*', '?']) => {
                let mut v: Vec<PathBuf> = fs::read_dir(&parent)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| glob(n, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect();
                v.sort();
                v
            }
            _ => {
                let p = ctx.join(&rel);
                if fs::symlink_metadata(&p).is_ok() {
                    vec![p]
                } else {
                    vec![]
                }
            }
        };
        if hits.is_empty() {
            return Err(format!("COPY {s}: no such file in the build context"));
        }
        for h in &hits {
            // A symlink on the way could lead out of the context.
            let real_parent = h.parent().and_then(|p| fs::canonicalize(p).ok());
            if !real_parent.is_some_and(|p| p.starts_with(&ctx)) {
                return Err(format!("COPY {s}: leads outside the build context"));
            }
        }
        matched.extend(hits);
    }
    let to_dir = dest.ends_with('/') || matched.len() > 1;
    let mut entries = Vec::new();
    for m in &matched {
        let md = fs::symlink_metadata(m).map_err(|e| format!("{}: {e}", m.display()))?;
        if md.is_dir() {
            let mut all = Vec::new();
            walk(m, &dest_abs, &mut all)?;
            entries.extend(all.into_iter().filter(|(src, _)| {
                let rel = src.strip_prefix(&ctx).unwrap_or(src);
                rel.as_os_str().is_empty() || !is_ignored(ignore, &rel.to_string_lossy())
            }));
        } else {
            let target = if to_dir {
                format!(
                    "{}/{}",
                    dest_abs.trim_end_matches('/'),
                    m.file_name().unwrap_or_default().to_string_lossy()
                )
            } else {
                dest_abs.clone()
            };
            entries.push((m.clone(), target));
        }
    }
    if entries.iter().any(|(_, d)| d == "/") {
        return Err("COPY cannot replace the root directory with a file".into());
    }
    let mut h = sha2::Sha256::default();
    use sha2::Digest;
    for (src, dst) in &entries {
        let md = fs::symlink_metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
        use std::os::unix::fs::MetadataExt;
        h.update(dst.as_bytes());
        h.update(format!("\0{:o}\0", md.mode()).as_bytes());
        if md.is_file() {
            let mut f = fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| format!("{}: {e}", src.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        } else if md.file_type().is_symlink() {
            let t = fs::read_link(src).map_err(|e| format!("{}: {e}", src.display()))?;
            h.update(t.to_string_lossy().as_bytes());
        }
        h.update(b"\n");
    }
    let digest = oci::hex(&h.finalize());
    Ok(CopyPlan { entries, digest })
}

/// Every entry under `dir` (the directory itself as `dest`).
fn walk(dir: &Path, dest: &str, out: &mut Vec<(PathBuf, String)>) -> Result<(), String> {
    out.push((dir.to_path_buf(), dest.to_string()));
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    children.sort_by_key(|e| e.file_name());
    for c in children {
        let d = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            c.file_name().to_string_lossy()
        );
        let md =
            fs::symlink_metadata(c.path()).map_err(|e| format!("{}: {e}", c.path().display()))?;
        if md.is_dir() {
            walk(&c.path(), &d, out)?;
        } else if md.is_file() || md.file_type().is_symlink() {
            out.push((c.path(), d));
        }
        // Sockets, fifos and devices of the context are not copied.
    }
    Ok(())
}

/// `a/./b/` → `a/b`; `None` when `..` would leave the context.
fn normalise_rel(s: &str) -> Option<PathBuf> {
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.iter().collect())
}

/// Shell-style `*` and `?` matching.
fn glob(pat: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    // Hidden files match only a pattern that names the dot.
    (!name.starts_with('.') || pat.starts_with('.')) && m(pat.as_bytes(), name.as_bytes())
}

impl CopyPlan {
    /// The entries as a tar rooted at `/`, owned by root.
    fn tar(&self) -> io::Result<io::Cursor<Vec<u8>>> {
        use std::os::unix::fs::MetadataExt;
        let mut b = tar::Builder::new(Vec::new());
        for (src, dst) in &self.entries {
            let md = fs::symlink_metadata(src)?;
            let mut h = tar::Header::new_gnu();
            h.set_mode(md.mode() & 0o7777 & !0o6000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(md.mtime().max(0) as u64);
            let name = dst.trim_start_matches('/');
            if md.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, format!("{name}/"), io::empty())?;
            } else if md.file_type().is_symlink() {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, fs::read_link(src)?)?;
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                b.append_data(&mut h, name, fs::File::open(src)?)?;
            }
        }
        Ok(io::Cursor::new(b.into_inner()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_globs() {
        assert_eq!(join_path("/app", "src"), "/app/src");
        assert_eq!(join_path("/app", "/etc/../opt"), "/opt");
        assert_eq!(join_path("/", "../../x"), "/x");
        assert_eq!(normalise_rel("./a/../b/"), Some(PathBuf::from("b")));
        assert_eq!(normalise_rel("../x"), None);
        assert_eq!(normalise_rel("a/../../x"), None);
        assert!(glob("*.py", "main.py"));
        assert!(!glob("*.py", ".hidden.py"));
        assert!(glob("a?c", "abc"));
        let pats: Vec<String> = ["target", "*.log", "docs/**/draft*", ".git"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(is_ignored(&pats, "target"));
        assert!(is_ignored(&pats, "target/debug/x"));
        assert!(is_ignored(&pats, "build.log"));
        assert!(is_ignored(&pats, ".git/config"));
        assert!(is_ignored(&pats, "docs/a/b/draft1.md"));
        assert!(!is_ignored(&pats, "src/target.rs"));
        assert!(!is_ignored(&pats, "docs/final.md"));
        assert!(!glob("a?c", "abbc"));
    }

    #[test]
    fn copy_plans_stay_in_the_context_and_hash_content() {
        let t = std::env::temp_dir().join(format!("aibox-copy-{}", crate::random_id()));
        let ctx = t.join("ctx");
        fs::create_dir_all(ctx.join("src/sub")).unwrap();
        fs::write(ctx.join("src/a.py"), "a").unwrap();
        fs::write(ctx.join("src/sub/b.py"), "b").unwrap();
        fs::write(ctx.join("top.txt"), "top").unwrap();
        fs::create_dir_all(t.join("outside")).unwrap();
        fs::write(t.join("outside/secret"), "s").unwrap();
        std::os::unix::fs::symlink(t.join("outside"), ctx.join("link")).unwrap();

        let p = copy_plan(&ctx, &["src".into()], "/app", "/", &[]).unwrap();
        let dsts: Vec<&str> = p.entries.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(dsts, ["/app", "/app/a.py", "/app/sub", "/app/sub/b.py"]);
        let p2 = copy_plan(&ctx, &["top.txt".into()], "rel/", "/w", &[]).unwrap();
        assert_eq!(p2.entries[0].1, "/w/rel/top.txt");
        let p3 = copy_plan(&ctx, &["src/*.py".into(), "top.txt".into()], "/d", "/", &[]).unwrap();
        assert_eq!(p3.entries.len(), 2);
        assert_eq!(p3.entries[1].1, "/d/top.txt");

        // The same content hashes the same; a change does not.
        let again = copy_plan(&ctx, &["src".into()], "/app", "/", &[]).unwrap();
        assert_eq!(p.digest, again.digest);
        fs::write(ctx.join("src/a.py"), "changed").unwrap();
        let changed = copy_plan(&ctx, &["src".into()], "/app", "/", &[]).unwrap();
        assert_ne!(p.digest, changed.digest);

        for (src, what) in [
            ("../outside/secret", "outside the build context"),
            ("link/secret", "leads outside"),
            ("missing", "no such file"),
            ("src/*.rs", "no such file"),
        ] {
            let e = copy_plan(&ctx, &[src.into()], "/x", "/", &[])
                .err()
                .unwrap();
            assert!(e.contains(what), "{src}: {e}");
        }
        // A symlink itself is copied as a link (not followed).
        let l = copy_plan(&ctx, &["link".into()], "/l", "/", &[]).unwrap();
        let tar = l.tar().unwrap().into_inner();
        let mut ar = tar::Archive::new(&tar[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
        fs::remove_dir_all(&t).unwrap();
    }
}
