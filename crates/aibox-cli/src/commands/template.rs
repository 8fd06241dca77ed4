//! `aibox template import|ls|inspect|rm|prune|export`: the template store
//! of this host's runtime (OCI images as read-only layers).

use super::progress::Progress;
use crate::args::TemplateCmd;
use aibox_runtime::Runtime;
use std::io::IsTerminal;
use std::path::Path;

pub fn template(cmd: TemplateCmd) -> anyhow::Result<u8> {
    let rt = Runtime::new();
    let store = rt.templates();
    match cmd {
        TemplateCmd::Pull {
            reference,
            name,
            insecure,
        } => {
            let r = aibox_runtime::image::registry::Reference::parse(&reference)?;
            let name =
                name.unwrap_or_else(|| aibox_runtime::image::registry::default_name(&reference));
            let tty = std::io::stderr().is_terminal();
            let mut last = String::new();
            let mut progress = |what: &str, done: u64, total: u64| {
                if tty {
                    eprint!(
                        "\r\x1b[K{what} {}/{}",
                        super::human(done),
                        super::human(total)
                    );
                } else if what != last {
                    eprintln!("{what} ({})", super::human(total));
                    last = what.to_string();
                }
            };
            let meta = aibox_runtime::image::registry::Client::new(r, insecure)
                .pull(&store, &name, &mut progress)
                .map_err(aibox_runtime::Error::from)?;
            if tty {
                eprint!("\r\x1b[K");
            }
            println!(
                "{} ({} layers, {}) {}",
                meta.name,
                meta.layers.len(),
                super::human(meta.size()),
                meta.digest
            );
            Ok(0)
        }
        TemplateCmd::Import { source, name } => {
            let (path, tag) = split_source(&source);
            let mut shown = String::new();
            let tty = std::io::stderr().is_terminal();
            let mut progress = |what: &str, done: u64, total: u64| {
                if tty && what != shown {
                    eprint!("\r\x1b[K{what} {}", super::human(total));
                    shown = what.to_string();
                }
                let _ = done;
            };
            let meta = if path.is_dir() {
                let name = name.ok_or_else(|| {
                    aibox_runtime::Error::InvalidSpec(
                        "name the template: aibox template import DIR --name NAME".into(),
                    )
                })?;
                store
                    .import_layout(path, tag, &name, &mut progress)
                    .map_err(aibox_runtime::Error::from)?
            } else {
                let _p = Progress::start(format!("importing {}", path.display()));
                store
                    .import_archive(path, name.as_deref(), &mut progress)
                    .map_err(aibox_runtime::Error::from)?
            };
            if tty {
                eprint!("\r\x1b[K");
            }
            println!(
                "{} ({} layers, {})",
                meta.name,
                meta.layers.len(),
                super::human(meta.size())
            );
            Ok(0)
        }
        TemplateCmd::Ls { json } => {
            let images = store.images();
            if json {
                let (layers, bytes) = store.usage();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "templates": images,
                        "store": {"layers": layers, "bytes": bytes}
                    }))?
                );
                return Ok(0);
            }
            println!("{:<40} {:>6} {:>10}  DIGEST", "NAME", "LAYERS", "SIZE");
            println!("{:<40} {:>6} {:>10}  (built in)", "host", "-", "-");
            for m in &images {
                println!(
                    "{:<40} {:>6} {:>10}  {}",
                    m.name,
                    m.layers.len(),
                    super::human(m.size()).to_string(),
                    &m.digest[..19.min(m.digest.len())]
                );
            }
            let (layers, bytes) = store.usage();
            println!("store: {layers} layers, {}", super::human(bytes));
            Ok(0)
        }
        TemplateCmd::Inspect { name } => {
            let m = store.get(&name).ok_or_else(|| {
                aibox_runtime::Error::from(aibox_runtime::image::oci::OciError::NotFound(
                    name.clone(),
                ))
            })?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(0)
        }
        TemplateCmd::Rm { names } => {
            if names.is_empty() {
                anyhow::bail!(aibox_runtime::Error::InvalidSpec(
                    "give at least one template name".into()
                ));
            }
            let mut code = 0;
            for n in names {
                match rt.remove_template(&n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("aibox: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        TemplateCmd::Build(a) => super::build::build(a),
        TemplateCmd::Prune { build_cache } => {
            let (n, bytes) = store
                .prune(build_cache)
                .map_err(aibox_runtime::Error::from)?;
            println!("removed {n} layers, {}", super::human(bytes));
            Ok(0)
        }
        TemplateCmd::Promote { snapshot, name } => {
            let _p = Progress::start(format!("promoting {snapshot}"));
            let meta = rt.promote_snapshot(&snapshot, &name)?;
            println!(
                "{} ({} layers{})",
                meta.name,
                meta.layers.len(),
                meta.base
                    .as_deref()
                    .map(|b| format!(" on {b}"))
                    .unwrap_or_default()
            );
            Ok(0)
        }
        TemplateCmd::Export { name, dir } => {
            let _p = Progress::start(format!("exporting {name}"));
            let digest = store
                .export_layout(&name, &dir)
                .map_err(aibox_runtime::Error::from)?;
            println!("{digest}");
            Ok(0)
        }
    }
}

/// `DIR:TAG` names a tag inside an OCI layout; anything else is a path.
fn split_source(s: &str) -> (&Path, Option<&str>) {
    if let Some((dir, tag)) = s.rsplit_once(':') {
        if Path::new(dir).is_dir() && !tag.is_empty() && !tag.contains('/') {
            return (Path::new(dir), Some(tag));
        }
    }
    (Path::new(s), None)
}
