//! Who may do what on the local socket. Pure: the caller's identity comes
//! in (from peer credentials), a decision comes out.
//!
//! The policy (the `[pull]` section of agent.toml):
//! - Anyone who can reach the socket may read: `list`, `status`, and the
//!   progress of an install. The catalog says what the admin offers this
//!   host; nothing in it is secret from the host's users.
//! - Installing, removing and deferring change the host (or when it
//!   changes), so only root, the users in `install_users` and the members of
//!   `install_groups` may. Root always
//!   may: it could edit agent.toml anyway.
//! - By default both lists are empty: only root may install. An admin opens
//!   pull to a host's users by naming them or a group (e.g. `sudo`,
//!   `staff`).

use super::wire::Request;
use serde::Deserialize;

/// Who is on the other end of the socket, as the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The user name, if the uid has one.
    pub user: Option<String>,
    /// Names of the primary and supplementary groups of the user.
    pub groups: Vec<String>,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `name (uid N)` for logs and refusals.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(user) => format!("{user} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// The `[pull]` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullPolicy {
    /// Users who may install and remove pull software.
    #[serde(default)]
    pub install_users: Vec<String>,
    /// Members of these groups may install and remove pull software.
    #[serde(default)]
    pub install_groups: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{caller} may not {verb} software on this host; ask an administrator to add the user to `install_users` \
     or one of its groups to `install_groups` in the [pull] section of the agent config"
)]
pub struct Refusal {
    pub caller: String,
    pub verb: &'static str,
}

impl PullPolicy {
    /// Whether `caller` may make `request`.
    pub fn check(&self, caller: &Caller, request: &Request) -> Result<(), Refusal> {
        let verb = match request {
            Request::Install { .. } => "install",
            Request::Remove { .. } => "remove",
            Request::Defer { .. } => "defer",
            Request::List | Request::Status | Request::Job { .. } => return Ok(()),
        };
        if caller.is_root() || self.may_change(caller) {
            return Ok(());
        }
        Err(Refusal { caller: caller.describe(), verb })
    }

    fn may_change(&self, caller: &Caller) -> bool {
        let by_name = caller.user.as_ref().is_some_and(|u| self.install_users.contains(u));
        let by_group = caller.groups.iter().any(|g| self.install_groups.contains(g));
        by_name || by_group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, user: &str, groups: &[&str]) -> Caller {
        Caller {
            uid,
            user: (!user.is_empty()).then(|| user.to_string()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn the_policy_reads_like_this() {
        let policy = PullPolicy { install_users: vec!["alice".into()], install_groups: vec!["staff".into()] };
        let install = Request::Install { name: "app".into() };
        let remove = Request::Remove { name: "app".into() };
        // (who, request, allowed)
        let table: &[(Caller, &Request, bool)] = &[
            (caller(0, "root", &["root"]), &install, true),
            (caller(1000, "alice", &["alice"]), &install, true),
            (caller(1000, "alice", &["alice"]), &remove, true),
            (caller(1001, "bob", &["bob", "staff"]), &install, true),
            (caller(1002, "carol", &["carol", "users"]), &install, false),
            (caller(1002, "carol", &["carol", "users"]), &remove, false),
            (caller(1001, "bob", &["staff"]), &Request::Defer { name: "app".into() }, true),
            (caller(1002, "carol", &["users"]), &Request::Defer { name: "app".into() }, false),
            (caller(1003, "", &[]), &install, false),
            // Reading is open to everyone who can reach the socket.
            (caller(1002, "carol", &[]), &Request::List, true),
            (caller(1003, "", &[]), &Request::Status, true),
            (caller(1003, "", &[]), &Request::Job { assignment: 1 }, true),
        ];
        for (who, request, allowed) in table {
            assert_eq!(policy.check(who, request).is_ok(), *allowed, "{} {request:?}", who.describe());
        }
    }

    #[test]
    fn by_default_only_root_may_change_the_host() {
        let policy = PullPolicy::default();
        let install = Request::Install { name: "app".into() };
        assert!(policy.check(&caller(0, "root", &[]), &install).is_ok());
        let refusal = policy.check(&caller(1000, "alice", &["sudo"]), &install).unwrap_err();
        assert_eq!(refusal.verb, "install");
        assert!(refusal.to_string().contains("alice (uid 1000) may not install"), "{refusal}");
        assert!(refusal.to_string().contains("install_users"), "the refusal says how to fix it");
    }
}
