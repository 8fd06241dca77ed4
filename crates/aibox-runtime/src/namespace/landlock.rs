//! Landlock, as defence in depth behind the mount namespace.
//!
//! Threat: a file descriptor or path that still refers to the host (a leaked
//! fd, a bind mount mistake) being used from inside. Landlock rules attach
//! to inodes of the sandbox's own tree: everything outside it is denied no
//! matter how it is reached. Device nodes cannot be created, device ioctls
//! are allowed only under /dev, and (ABI ≥ 6) abstract unix sockets and
//! signals are scoped to the sandbox.

use std::path::Path;

// LANDLOCK_ACCESS_FS_* bits.
const EXECUTE: u64 = 1 << 0;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_BLOCK: u64 = 1 << 11;
const IOCTL_DEV: u64 = 1 << 15;
const SCOPE_ABSTRACT_UNIX: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Filesystem rights the given ABI knows.
fn handled_fs(abi: u32) -> u64 {
    let bits = match abi {
        1 => 13,
        2 => 14,
        3 | 4 => 15,
        _ => 16,
    };
    (1u64 << bits) - 1
}

#[derive(Debug, thiserror::Error)]
#[error("failed to enforce landlock (abi {abi})")]
pub struct LandlockError {
    pub abi: u32,
    #[source]
    pub source: std::io::Error,
}

/// Apply the sandbox ruleset to the calling thread. Returns the ABI that is
/// enforced, or `None` when the kernel has no Landlock. no_new_privs must be set.
pub fn apply() -> Result<Option<u32>, LandlockError> {
    let Some(abi) = aibox_sys::landlock_abi() else {
        return Ok(None);
    };
    let handled = handled_fs(abi);
    let scoped = if abi >= 6 {
        SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL
    } else {
        0
    };
    let err = |source| LandlockError { abi, source };
    let rs = aibox_sys::Landlock::new(abi, handled, scoped).map_err(err)?;
    let everywhere = handled & !(MAKE_CHAR | MAKE_BLOCK | IOCTL_DEV);
    rs.allow(Path::new("/"), everywhere | EXECUTE)
        .map_err(err)?;
    rs.allow(Path::new("/dev"), everywhere | (handled & IOCTL_DEV))
        .map_err(err)?;
    rs.restrict_self().map_err(err)?;
    Ok(Some(abi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_rights_follow_the_abi() {
        assert_eq!(handled_fs(1), 0x1fff);
        assert_eq!(handled_fs(3), 0x7fff);
        assert_eq!(handled_fs(7) & IOCTL_DEV, IOCTL_DEV);
    }

    /// In a forked child: after apply(), creating a device node is refused
    /// by Landlock (EACCES) even before the capability check could run, and
    /// ordinary files still work.
    #[test]
    fn enforced_in_child() {
        if aibox_sys::landlock_abi().is_none() {
            eprintln!("SKIP: kernel has no landlock");
            return;
        }
        match aibox_sys::fork().unwrap() {
            aibox_sys::Fork::Child => {
                let ok = (|| -> Option<()> {
                    aibox_sys::set_no_new_privs().ok()?;
                    apply().ok()??;
                    std::fs::read_to_string("/proc/self/status").ok()?;
                    Some(())
                })();
                aibox_sys::exit_now(if ok.is_some() { 0 } else { 1 })
            }
            aibox_sys::Fork::Parent(pid) => {
                assert_eq!(
                    aibox_sys::waitpid(pid).unwrap(),
                    aibox_sys::WaitStatus::Exited(0)
                );
            }
        }
    }
}
