//! `aibox exec`: run a command in a persistent sandbox, through the server
//! or (`--local`) its agent; the relay of a local one's streams.

use super::target::Run;
use crate::args::ExecArgs;

pub fn exec(a: ExecArgs) -> anyhow::Result<u8> {
    if a.command.is_empty() {
        anyhow::bail!(aibox_runtime::Error::InvalidSpec(
            "missing command: usage is `aibox exec ID -- CMD [ARGS...]`".into()
        ));
    }
    let run = Run {
        argv: a.command.clone(),
        env: super::parse_env(&a.env)?,
        cwd: a.workdir.clone(),
        user: a.user,
        timeout_ms: a.timeout.map(|t| t.as_millis() as u64),
        max_output: a.max_output.map(|m| m.0),
        stdin: a.interactive,
        tty: a.tty,
        detach: a.detach,
    };
    super::target::open(&a.target)?.exec(&a.id, &run)
}
