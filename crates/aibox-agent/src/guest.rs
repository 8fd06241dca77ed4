//! PID 1 of a microVM: the aibox binary is the initramfs's `/init`. It
//! mounts the kernel filesystems, loads the kernel modules the initramfs
//! lists in `/etc/aibox/modules` (in dependency order, fixed when the
//! initramfs was built), and says on the console that the guest is ready:
//! `aibox-guest: ready uptime=SECONDS modules=N`. With `aibox.probe` on the
//! kernel command line it then powers off (the boot probe of
//! `aibox vm probe`).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

/// The file listing the modules to load, one initramfs path per line.
pub const MODULE_LIST: &str = "etc/aibox/modules";
/// What the guest prints once it is ready.
pub const READY: &str = "aibox-guest: ready";

/// Whether this process is a microVM's init (PID 1 started as `/init`).
pub fn is_guest_init() -> bool {
    aibox_sys::getpid() == 1 && std::env::args_os().next().is_some_and(|a| a == "/init")
}

fn say(line: &str) {
    // The kernel gives init /dev/console as its stdio; write there too in
    // case stdio was closed.
    let _ = writeln!(std::io::stdout(), "{line}");
    let _ = std::io::stdout().flush();
}

fn mount(src: &str, target: &str, fstype: &str) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    aibox_sys::mount(
        Some(Path::new(src)),
        Path::new(target),
        Some(fstype),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        None,
    )
    .map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

/// Load the listed modules: (loaded, errors). A module already in the
/// kernel (`EEXIST`) counts as loaded.
fn load_modules(list: &str) -> (usize, Vec<String>) {
    let mut loaded = 0;
    let mut errors = Vec::new();
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let r = std::fs::File::open(path).and_then(|f| aibox_sys::finit_module(f.as_fd()));
        match r {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => loaded += 1,
            Err(e) => errors.push(format!("{path}: {e}")),
        }
    }
    (loaded, errors)
}

/// Run as the guest's init; never returns.
pub fn main() -> ! {
    let mut problems = Vec::new();
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        if let Err(e) = mount(src, target, fstype) {
            problems.push(e);
        }
    }
    let list = std::fs::read_to_string(Path::new("/").join(MODULE_LIST)).unwrap_or_default();
    let (loaded, errors) = load_modules(&list);
    problems.extend(errors);
    for p in &problems {
        say(&format!("aibox-guest: {p}"));
    }
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    say(&format!("{READY} uptime={uptime} modules={loaded}"));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !cmdline.split_whitespace().any(|w| w == "aibox.probe") {
        // The agent does not serve a VM transport yet: nothing to wait for.
        say("aibox-guest: no host transport in this build; powering off");
    }
    let e = aibox_sys::power_off();
    say(&format!("aibox-guest: power off failed: {e}"));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
