//! No leaks: many create → exec → destroy cycles (and one-shot runs) leave
//! no mounts, cgroups, processes, sockets or files behind. Alone in its own
//! test binary so nothing else runs concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use aibox_protocol::ExecRequest;
use aibox_types::SandboxSpec;
use common::Env;
use std::collections::BTreeSet;

/// Host processes running as a sandbox uid (root mode) or in our process
/// tree named like our agent (rootless).
fn sandbox_processes() -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let uid: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        // Zombies hold no resources; the host's init reaps them on its own schedule.
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
        {
            continue;
        }
        let nspid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|v| v.split_whitespace().count())
            .unwrap_or(1);
        if uid >= aibox_runtime::sandbox::state::SLOT_BASE as u64
            || (nspid > 1 && pid != std::process::id() as i32)
        {
            out.insert(pid);
        }
    }
    out
}

fn entries(p: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    require_sandboxes!();
    let env = Env::new("leaks");
    let rt = env.runtime();
    // Warm up (builds the template) before taking the baseline.
    rt.create(&SandboxSpec::default())
        .unwrap()
        .destroy()
        .unwrap();
    let mounts = common::host_mounts();
    let cgroups = common::aibox_cgroups();
    let procs = sandbox_processes();
    let slots_before = aibox_runtime::sandbox::state::held_slots(&rt.dirs().slots());
    let cycles = std::env::var("AIBOX_LEAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let t = std::time::Instant::now();
    for i in 0..cycles {
        let sb = rt.create(&SandboxSpec::default()).unwrap();
        let o = sb
            .client()
            .exec(
                ExecRequest {
                    shell: Some(format!("echo {i} > /tmp/x; cat /tmp/x")),
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), i.to_string());
        sb.destroy().unwrap();
    }
    for _ in 0..20 {
        let o = env.run(&["run", "--", "true"]);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    eprintln!(
        "{cycles} create/exec/destroy cycles + 20 runs in {:?}",
        t.elapsed()
    );
    assert_eq!(common::host_mounts(), mounts, "host mount table changed");
    // One-shot runs keep an idle `aibox-run.<slot>` cgroup for the next
    // run in their slot; gc removes idle ones.
    let kept: Vec<_> = common::aibox_cgroups()
        .into_iter()
        .filter(|c| !cgroups.contains(c))
        .collect();
    assert!(
        kept.iter().all(|c| c
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("aibox-run."))),
        "cgroups left behind: {kept:?}"
    );
    rt.gc();
    let is_run = |c: &std::path::PathBuf| {
        c.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("aibox-run."))
    };
    let after = common::aibox_cgroups();
    assert!(
        !after.iter().any(is_run),
        "gc left idle run cgroups: {after:?}"
    );
    let before: Vec<_> = cgroups.iter().filter(|c| !is_run(c)).cloned().collect();
    assert_eq!(after, before, "cgroups left behind after gc");
    // Exited sandboxes' processes may take a moment to be reaped by init.
    let mut left = sandbox_processes();
    for _ in 0..50 {
        if left.is_subset(&procs) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = sandbox_processes();
    }
    assert!(
        left.is_subset(&procs),
        "processes left: {:?}",
        left.difference(&procs).collect::<Vec<_>>()
    );
    assert_eq!(
        entries(&rt.dirs().sandboxes()),
        Vec::<String>::new(),
        "records or sockets left"
    );
    let slots_after = aibox_runtime::sandbox::state::held_slots(&rt.dirs().slots());
    assert_eq!(slots_after, slots_before, "uid slots left claimed");
    let mut staging = entries(&rt.dirs().staging());
    staging.sort();
    assert!(
        staging
            .iter()
            .all(|e| ["lower", "snap", "scratch", "t0", "t1", "t2"].contains(&e.as_str())),
        "{staging:?}"
    );
    drop(env);
    if common::is_root() {
        gc_cleans_what_a_killed_creator_left();
    } else {
        eprintln!("SKIP gc_cleans_what_a_killed_creator_left: needs root (slots and cgroups)");
    }
}

/// Part of the test above: tests in one binary run concurrently, and both
/// look at host-wide state.
fn gc_cleans_what_a_killed_creator_left() {
    let env = Env::new("gc");
    // A one-shot run whose CLI is SIGKILLed mid-command.
    let mut child = env.aibox(&["run", "--", "sleep", "30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let slots_during = entries(&env.runtime().dirs().slots()).len();
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cleaned = env.runtime().gc();
    assert!(
        !cleaned.is_empty(),
        "gc found nothing (slots during run: {slots_during})"
    );
    assert!(common::aibox_cgroups()
        .iter()
        .all(|c| !cleaned.iter().any(|id| c.ends_with(format!("aibox-{id}")))));
}
