//! `aibox workspace create|ls|inspect|rm|snapshot`: through the server,
//! which keeps a workspace's history (there is no `--local`).

use crate::args::WorkspaceCmd;
use aibox_client::Client;
use aibox_types::api::{Size, WorkspaceRequest, WorkspaceSnapshotRequest};

pub fn workspace(cmd: WorkspaceCmd) -> anyhow::Result<u8> {
    let client = Client::from_env()?;
    let api = client.async_client();
    match cmd {
        WorkspaceCmd::Create {
            name,
            size,
            env,
            labels,
            json,
        } => {
            let req = WorkspaceRequest {
                name,
                size: size.map(Size::from),
                env: super::parse_env(&env)?.into_iter().collect(),
                labels: super::parse_labels(&labels)?,
            };
            let w = client.wait(api.create_workspace(&req))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&w)?);
            } else {
                println!("{}", w.name);
            }
        }
        WorkspaceCmd::Ls { json } => {
            let all = client.wait(api.workspaces())?.workspaces;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            println!(
                "{:<24} {:>9} {:>9} {:<8} SANDBOXES",
                "NAME", "USED", "QUOTA", "EVENTS"
            );
            for w in &all {
                println!(
                    "{:<24} {:>9} {:>9} {:<8} {}",
                    w.name,
                    super::human(w.files.used_bytes),
                    super::human(w.files.quota.bytes),
                    w.history.len(),
                    if w.sandboxes.is_empty() {
                        "-".to_string()
                    } else {
                        w.sandboxes.join(",")
                    }
                );
            }
        }
        WorkspaceCmd::Inspect { name } => {
            let w = client.wait(api.workspace(&name))?;
            println!("{}", serde_json::to_string_pretty(&w)?);
        }
        WorkspaceCmd::Rm { names } => {
            if names.is_empty() {
                anyhow::bail!(aibox_runtime::Error::InvalidSpec(
                    "give at least one workspace name".into()
                ));
            }
            let mut failed = 0u8;
            for n in names {
                match client.wait(api.delete_workspace(&n)) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("aibox: {n}: {e}");
                        failed = 1;
                    }
                }
            }
            return Ok(failed);
        }
        WorkspaceCmd::Snapshot { name, snapshot } => {
            let req = WorkspaceSnapshotRequest {
                name: snapshot.clone(),
            };
            client.wait(api.snapshot_workspace(&name, &req))?;
            println!("{name}@{snapshot}");
        }
    }
    Ok(0)
}
