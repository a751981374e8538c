//! Desktop notifications for the people logged in to this host: what will
//! change and when, before an install they did not ask for.
//!
//! Best effort, and never the only channel (`flotte status` always shows
//! the same notice):
//! - A graphical session is recognised by its D-Bus session bus,
//!   `/run/user/<uid>/bus`, owned by that uid.
//! - For each, `notify-send` runs as that user (uid and gid of the bus'
//!   owner, no supplementary groups), with a cleared environment that names
//!   only the bus, so nothing of the agent's leaks into the user's session.
//! - The agent never waits for it; a missing `notify-send` or a failure is
//!   logged at debug level.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Where systemd-logind puts the users' runtime directories.
pub const RUN_USER: &str = "/run/user";

/// One user's graphical session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub uid: u32,
    pub gid: u32,
    pub bus: PathBuf,
}

/// The sessions with a D-Bus session bus under `run_user`.
pub fn sessions(run_user: &Path) -> Vec<Session> {
    let Ok(dirs) = std::fs::read_dir(run_user) else { return Vec::new() };
    let mut found: Vec<Session> = dirs
        .filter_map(|d| {
            let dir = d.ok()?.path();
            let uid: u32 = dir.file_name()?.to_str()?.parse().ok()?;
            let bus = dir.join("bus");
            let meta = std::fs::symlink_metadata(&bus).ok()?;
            // Only a socket its own user owns: never trust a bus planted by another.
            (meta.file_type().is_socket() && meta.uid() == uid).then(|| Session { uid, gid: meta.gid(), bus })
        })
        .collect();
    found.sort_by_key(|s| s.uid);
    found
}

/// The `notify-send` command for `session`.
pub fn command(session: &Session, summary: &str, body: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("notify-send");
    c.arg("--app-name=Flotte")
        .arg("--")
        .arg(summary)
        .arg(body)
        .env_clear()
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", session.bus.display()))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .uid(session.uid)
        .gid(session.gid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Notifies every graphical session on the host.
pub fn desktop(summary: &str, body: &str) {
    for session in sessions(Path::new(RUN_USER)) {
        match command(&session, summary, body).spawn() {
            Ok(_child) => tracing::info!(uid = session.uid, "desktop notification sent"),
            Err(e) => tracing::debug!(uid = session.uid, error = %e, "no desktop notification"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_buses_owned_by_their_user_count_as_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::fs::metadata(dir.path()).unwrap().uid();
        // Ours: a real socket, owned by us, under our uid.
        std::fs::create_dir(dir.path().join(me.to_string())).unwrap();
        let _bus = std::os::unix::net::UnixListener::bind(dir.path().join(me.to_string()).join("bus")).unwrap();
        // A plain file is no bus; a directory that is no uid is ignored.
        std::fs::create_dir(dir.path().join("4242")).unwrap();
        std::fs::write(dir.path().join("4242/bus"), "").unwrap();
        std::fs::create_dir(dir.path().join("not-a-uid")).unwrap();
        // Under another uid, a bus we own is someone else's plant.
        let other = me.wrapping_add(1);
        std::fs::create_dir(dir.path().join(other.to_string())).unwrap();
        let _planted = std::os::unix::net::UnixListener::bind(dir.path().join(other.to_string()).join("bus")).unwrap();

        let found = sessions(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].uid, me);
        let cmd = command(&found[0], "Software update", "hello 1.0 will be installed");
        let std = cmd.as_std();
        let envs: Vec<_> = std.get_envs().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert_eq!(envs, ["DBUS_SESSION_BUS_ADDRESS", "PATH"], "only the bus and a PATH");
        assert_eq!(std.get_args().last().unwrap(), "hello 1.0 will be installed");
    }
}
