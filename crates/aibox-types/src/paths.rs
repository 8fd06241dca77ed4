//! Where aibox keeps its state by default, as a pure function of the
//! caller's uid and environment (the runtime makes and checks the
//! directories; the REST client only looks for the local server in them).
//!
//! * run dir (volatile: sockets, records of live sandboxes, uid slots,
//!   staging mount points): `$AIBOX_RUN_DIR`, else `/run/aibox` for root,
//!   else `$XDG_RUNTIME_DIR/aibox`, else `/tmp/aibox-$UID`.
//! * data dir (templates, the database, the admin key, the server's
//!   socket): `$AIBOX_DATA_DIR`, else `/var/lib/aibox` for root, else
//!   `$XDG_DATA_HOME/aibox`, else `~/.local/share/aibox`.

use std::path::PathBuf;

/// The run and data directories for `uid`, reading variables through `env`
/// (an empty value counts as unset).
pub fn default_dirs(uid: u32, env: impl Fn(&str) -> Option<String>) -> (PathBuf, PathBuf) {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let run = var("AIBOX_RUN_DIR").unwrap_or_else(|| {
        if uid == 0 {
            "/run/aibox".into()
        } else if let Some(x) = var("XDG_RUNTIME_DIR") {
            x.join("aibox")
        } else {
            format!("/tmp/aibox-{uid}").into()
        }
    });
    let data = var("AIBOX_DATA_DIR").unwrap_or_else(|| {
        if uid == 0 {
            "/var/lib/aibox".into()
        } else if let Some(x) = var("XDG_DATA_HOME") {
            x.join("aibox")
        } else if let Some(h) = var("HOME") {
            h.join(".local/share/aibox")
        } else {
            format!("/tmp/aibox-{uid}/data").into()
        }
    });
    (run, data)
}

#[cfg(test)]
mod tests {
    use super::default_dirs;
    use std::path::Path;

    #[test]
    fn root_and_users_get_their_own_places_and_variables_win() {
        let none = |_: &str| None;
        let (run, data) = default_dirs(0, none);
        assert_eq!(
            (run.as_path(), data.as_path()),
            (Path::new("/run/aibox"), Path::new("/var/lib/aibox"))
        );
        let home = |k: &str| (k == "HOME").then(|| "/home/a".to_string());
        let (run, data) = default_dirs(1000, home);
        assert_eq!(run, Path::new("/tmp/aibox-1000"));
        assert_eq!(data, Path::new("/home/a/.local/share/aibox"));
        let set = |k: &str| match k {
            "AIBOX_DATA_DIR" => Some("/d".to_string()),
            "AIBOX_RUN_DIR" => Some(String::new()),
            _ => None,
        };
        let (run, data) = default_dirs(0, set);
        assert_eq!(
            (run.as_path(), data.as_path()),
            (Path::new("/run/aibox"), Path::new("/d"))
        );
    }
}
