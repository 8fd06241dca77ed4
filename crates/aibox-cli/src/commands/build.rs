//! `aibox template build`: through the server (which gives RUN steps
//! their network and keeps a failed step's sandbox as one of yours), or
//! with `--local` in this process (no network).

use crate::args::BuildArgs;
use aibox_runtime::image::build::{self, BuildOptions, Event, Hooks};
use aibox_runtime::Runtime;
use aibox_types::egress::{Mode, Rule};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn build(a: BuildArgs) -> anyhow::Result<u8> {
    let invalid = |m: String| anyhow::Error::new(aibox_runtime::Error::InvalidSpec(m));
    if !a.context.is_dir() {
        return Err(invalid(format!(
            "the build context {} is not a directory",
            a.context.display()
        )));
    }
    let file = match &a.file {
        Some(f) => f.clone(),
        None if a.context.join("aibox.toml").is_file() => a.context.join("aibox.toml"),
        None => a.context.join("Dockerfile"),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        invalid(format!(
            "cannot read the recipe {} ({e}): write an aibox.toml or a Dockerfile, or name one with -f",
            file.display()
        ))
    })?;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let recipe = aibox_runtime::image::recipe::parse(&file_name, &text)
        .map_err(|e| invalid(e.to_string()))?;
    let name = a
        .name
        .clone()
        .or_else(|| recipe.name.clone())
        .ok_or_else(|| {
            invalid("name the template: -t NAME (or `name` in the aibox.toml)".into())
        })?;
    let network = Mode::from_options(a.network.as_deref(), !a.allow.is_empty()).map_err(invalid)?;
    let mut printer = Printer { json: a.json };
    if a.target.is_local() {
        if network.unwrap_or(recipe.network) != Mode::None {
            return Err(invalid(
                "network in a build needs the aibox server (it runs the egress proxy): drop --local, or build without network".into(),
            ));
        }
        let opts = BuildOptions {
            name,
            context: a.context.clone(),
            file: file.display().to_string(),
            no_cache: a.no_cache,
            keep_failed: a.keep_failed,
            network: None,
            memory: a.memory,
            cpus: a.cpus,
            disk: a.disk,
            ignore: build::ignore_patterns(&a.context),
        };
        return match Runtime::new().build(&recipe, &opts, &mut printer) {
            Ok(meta) => {
                printer.done(
                    &serde_json::to_value(&meta).unwrap_or(Value::Null),
                    meta.size(),
                );
                Ok(0)
            }
            Err(e) => {
                if a.json {
                    let mut v = serde_json::json!({"type": "error", "code": e.code().as_str(), "message": e.to_string()});
                    if let aibox_runtime::Error::Build(f) = &e {
                        v["step"] = serde_json::json!(f.step);
                        v["exit_code"] = serde_json::json!(f.exit_code);
                        v["sandbox"] = serde_json::json!(f.sandbox);
                    }
                    println!("{v}");
                    return Ok(1);
                }
                let mut msg = e.to_string();
                if let aibox_runtime::Error::Build(f) = &e {
                    if let Some(id) = &f.sandbox {
                        msg = msg.replace(
                            &format!("`aibox shell {id}`"),
                            &format!("`aibox shell --local {id}`"),
                        );
                        msg = msg.replace(
                            &format!("`aibox rm {id}`"),
                            &format!("`aibox rm --local {id}`"),
                        );
                    }
                }
                eprintln!("aibox: {msg}");
                Ok(1)
            }
        };
    }
    // Through the server: the context goes as a tar (minus ignored paths,
    // plus the recipe wherever it is).
    let rules: Vec<String> = a
        .allow
        .iter()
        .map(|r| {
            r.parse::<Rule>()
                .map(|_| r.clone())
                .map_err(|e| invalid(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let tar = pack_context(&a.context, &file)?;
    let mut query = vec![
        format!("name={}", aibox_client::query_escape(&name)),
        format!(
            "file={}",
            aibox_client::query_escape(&recipe_path_in_context(&a.context, &file))
        ),
    ];
    if a.no_cache {
        query.push("no_cache=true".into());
    }
    if a.keep_failed {
        query.push("keep_failed=true".into());
    }
    if let Some(m) = network {
        query.push(format!("network={m}"));
    }
    if !rules.is_empty() {
        query.push(format!(
            "allow={}",
            aibox_client::query_escape(&rules.join(","))
        ));
    }
    if let Some(m) = a.memory {
        query.push(format!("memory={}", m.0));
    }
    if let Some(c) = a.cpus {
        query.push(format!("cpus={c}"));
    }
    if let Some(d) = a.disk {
        query.push(format!("disk={}", d.0));
    }
    let client = super::remote::client()?;
    let mut pending = Vec::new();
    let mut outcome: Option<Value> = None;
    client
        .send_streaming(
            aibox_client::Method::POST,
            &format!("/v1/templates/build?{}", query.join("&")),
            aibox_client::Body::Raw(tar),
            &[],
            &mut |chunk| {
                pending.extend_from_slice(chunk);
                while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if a.json {
                        println!("{v}");
                        let _ = std::io::stdout().flush();
                    }
                    match v["type"].as_str() {
                        Some("done") | Some("error") => outcome = Some(v),
                        _ if !a.json => printer.value(&v),
                        _ => {}
                    }
                }
            },
        )
        .and_then(aibox_client::check)?;
    match outcome {
        Some(v) if v["type"] == "done" => {
            if !a.json {
                let t = &v["template"];
                printer.done(t, t["size"].as_u64().unwrap_or(0));
            }
            Ok(0)
        }
        Some(v) => {
            if !a.json {
                eprintln!(
                    "aibox: {}",
                    v["message"].as_str().unwrap_or("the build failed")
                );
            }
            Ok(1)
        }
        None => {
            eprintln!("aibox: the server ended the build without a result");
            Ok(1)
        }
    }
}

/// Where the recipe is in the tar sent: its path in the context, or
/// (outside it) a name of its own at the top.
fn recipe_path_in_context(context: &Path, file: &Path) -> String {
    let (Ok(c), Ok(f)) = (context.canonicalize(), file.canonicalize()) else {
        return ".aibox-recipe".into();
    };
    match f.strip_prefix(&c) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => format!(
            ".aibox-recipe{}",
            if f.extension().is_some_and(|e| e == "toml") {
                ".toml"
            } else {
                ""
            }
        ),
    }
}

fn pack_context(context: &Path, file: &Path) -> anyhow::Result<Vec<u8>> {
    let ignore = build::ignore_patterns(context);
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    fn walk(
        b: &mut tar::Builder<Vec<u8>>,
        root: &Path,
        dir: &Path,
        ignore: &[String],
    ) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel: PathBuf = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if build::is_ignored(ignore, &rel.to_string_lossy()) {
                continue;
            }
            let md = std::fs::symlink_metadata(&p)?;
            if md.is_dir() {
                b.append_dir(&rel, &p)?;
                walk(b, root, &p, ignore)?;
            } else if md.is_file() || md.file_type().is_symlink() {
                b.append_path_with_name(&p, &rel)?;
            }
        }
        Ok(())
    }
    walk(&mut b, context, context, &ignore)?;
    let inside = recipe_path_in_context(context, file);
    if inside.starts_with(".aibox-recipe") || build::is_ignored(&ignore, &inside) {
        b.append_path_with_name(file, &inside)?;
    }
    Ok(b.into_inner()?)
}

/// Prints events for people.
struct Printer {
    json: bool,
}

impl Printer {
    fn value(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("step") => {
                let cached = if v["cached"] == true {
                    "  (cached)"
                } else {
                    ""
                };
                eprintln!(
                    "[{}/{}] {}{cached}",
                    v["step"],
                    v["of"],
                    v["instruction"].as_str().unwrap_or_default()
                );
            }
            Some("output") => {
                let data = v["data"].as_str().unwrap_or_default();
                if v["stream"] == "stderr" {
                    eprint!("{data}");
                } else {
                    print!("{data}");
                    let _ = std::io::stdout().flush();
                }
            }
            Some("layer") => eprintln!(
                "  -> layer {} ({}, {} entries) in {:.2}s",
                &v["digest"].as_str().unwrap_or_default()
                    [..19.min(v["digest"].as_str().unwrap_or_default().len())],
                super::human(v["bytes"].as_u64().unwrap_or(0)),
                v["entries"],
                v["seconds"].as_f64().unwrap_or(0.0)
            ),
            Some("note") => eprintln!("note: {}", v["message"].as_str().unwrap_or_default()),
            _ => {}
        }
    }

    fn done(&mut self, t: &Value, size: u64) {
        if self.json {
            println!("{}", serde_json::json!({"type": "done", "template": t}));
            return;
        }
        println!(
            "{} ({} layers, {}) {}",
            t["name"].as_str().unwrap_or_default(),
            t["layers"].as_array().map_or(0, |l| l.len()),
            super::human(size),
            t["digest"].as_str().unwrap_or_default()
        );
    }
}

impl Hooks for Printer {
    fn event(&mut self, e: Event) {
        let v = serde_json::to_value(&e).unwrap_or(Value::Null);
        if self.json {
            println!("{v}");
            let _ = std::io::stdout().flush();
        } else {
            self.value(&v);
        }
    }
}
