//! `aibox serve`: the REST API server.

use crate::args::ServeArgs;
use aibox_server::config::Raw;
use aibox_server::engine::RuntimeEngine;
use std::sync::Arc;

pub fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    // A server logs by default (to stderr; AIBOX_LOG sets the level).
    let level = std::env::var("AIBOX_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .try_init();
    let env = Raw::from_env(|k| std::env::var(k).ok())?;
    let flags = Raw {
        listen: a.listen,
        socket: a.socket,
        data_dir: a.data_dir,
        max_sandboxes: a.max_sandboxes,
        memory_budget: a.memory_budget,
        default_ttl: a.default_ttl,
        ..Raw::default()
    };
    // Where the data dir is decides where the default config file is.
    let data_dir = flags.data_dir.clone().or(env.data_dir.clone());
    let file = match (&a.config, data_dir) {
        (Some(p), _) => Raw::from_toml_file(p)?,
        (None, Some(d)) if std::path::Path::new(&d).join("config.toml").exists() => {
            Raw::from_toml_file(&std::path::Path::new(&d).join("config.toml"))?
        }
        _ => Raw::default(),
    };
    let config = file
        .merge(env)
        .merge(flags)
        .resolve("config file, environment and flags")?;
    let dirs = aibox_runtime::Dirs {
        run: config.run_dir.clone(),
        data: config.data_dir.clone(),
    };
    dirs.ensure()?;
    let engine = Arc::new(RuntimeEngine::new(aibox_runtime::Runtime::with(
        dirs,
        std::path::PathBuf::new(),
    )));
    aibox_sys::malloc_for_server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = rt.block_on(aibox_server::serve(config, engine));
    // A request still working in a blocking thread (an agent call, a
    // stream) must not hold the exit: dropping the runtime would wait for
    // it without end. Sandboxes keep running after the server.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    served?;
    Ok(0)
}
