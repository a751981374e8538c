//! Which agents a rollout targets: all, a host list, tags, or a filter on
//! inventory fields. Pure: matching takes an agent's facts, never the store.
//!
//! Guarantees:
//! - A target that names something unknown (a filter field, a tag no
//!   agent carries, an empty list) is refused by [`check`] with the reason.
//! - `all`, tag and filter targets are *dynamic* ([`is_dynamic`]): an agent
//!   that matches later (enrolls, is tagged, reports new inventory) joins.
//!   Host lists are fixed at creation.
//! - Patterns match the whole value; `*` is any run of characters and `?`
//!   any one character. Nothing else is special. `os` and `arch` ignore
//!   case, and `os` also matches any word of the OS name (`os=linux`
//!   matches `Debian GNU/Linux`).

use flotte_protocol::AgentId;
use flotte_protocol::api::{Condition, Target};

/// Filter fields, as written on the command line.
pub const FIELDS: &[&str] = &["os", "arch", "hostname", "id", "tag"];

/// What a target can be matched against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub id: &'a AgentId,
    pub hostname: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub tags: &'a [String],
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the target names no agents, tags or conditions")]
    Empty,
    #[error("unknown filter field {0:?}; use one of os, arch, hostname, id, tag")]
    UnknownField(String),
    #[error("no agent is tagged {0:?}")]
    UnknownTag(String),
}

/// Whether agents that appear later can join a rollout to `target`.
pub fn is_dynamic(target: &Target) -> bool {
    !matches!(target, Target::Agents(_))
}

/// Checks a tag or filter target against the known tags. Host lists are
/// checked by resolving them (every name must be an enrolled agent).
pub fn check(target: &Target, known_tags: &[String]) -> Result<(), TargetError> {
    let tag_known = |t: &String| known_tags.contains(t);
    match target {
        Target::All => Ok(()),
        Target::Agents(names) if names.is_empty() => Err(TargetError::Empty),
        Target::Agents(_) => Ok(()),
        Target::Tags(tags) => match tags.iter().find(|t| !tag_known(t)) {
            _ if tags.is_empty() => Err(TargetError::Empty),
            Some(t) => Err(TargetError::UnknownTag(t.clone())),
            None => Ok(()),
        },
        Target::Filter(conditions) => {
            if conditions.is_empty() {
                return Err(TargetError::Empty);
            }
            for c in conditions {
                if !FIELDS.contains(&c.field.as_str()) {
                    return Err(TargetError::UnknownField(c.field.clone()));
                }
                let literal = !c.pattern.contains(['*', '?']);
                if c.field == "tag" && literal && !tag_known(&c.pattern) {
                    return Err(TargetError::UnknownTag(c.pattern.clone()));
                }
            }
            Ok(())
        }
    }
}

/// Whether an agent with `facts` is targeted.
pub fn matches(target: &Target, facts: &Facts<'_>) -> bool {
    match target {
        Target::All => true,
        Target::Agents(names) => names.iter().any(|n| *n == facts.id.0 || n == facts.hostname),
        Target::Tags(tags) => tags.iter().any(|t| facts.tags.contains(t)),
        Target::Filter(conditions) => conditions.iter().all(|c| condition(c, facts)),
    }
}

fn condition(c: &Condition, facts: &Facts<'_>) -> bool {
    let p = c.pattern.as_str();
    match c.field.as_str() {
        "os" => os_matches(p, facts.os),
        "arch" => glob(&p.to_lowercase(), &facts.arch.to_lowercase()),
        "hostname" => glob(p, facts.hostname),
        "id" => glob(p, &facts.id.0),
        "tag" => facts.tags.iter().any(|t| glob(p, t)),
        _ => false,
    }
}

/// Agents report their OS by name (`Debian GNU/Linux`, `Ubuntu`, `macOS`):
/// `os=PATTERN` matches, ignoring case, the whole name or any word of it,
/// so `os=linux`, `os=debian` and `os="debian gnu/*"` all match Debian.
fn os_matches(pattern: &str, os: &str) -> bool {
    let (pattern, os) = (pattern.to_lowercase(), os.to_lowercase());
    glob(&pattern, &os) || os.split(|c: char| !c.is_alphanumeric()).any(|word| glob(&pattern, word))
}

/// Whole-string match with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic backtracking over the last star: linear in practice.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Parses `--to`: `all`; `tag:a,tag:b` (any of the tags); `field=pattern,…`
/// (all conditions); otherwise a comma-separated host list.
pub fn parse(to: &str) -> Target {
    let parts: Vec<&str> = to.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if to.trim() == "all" {
        Target::All
    } else if !parts.is_empty() && parts.iter().all(|p| p.starts_with("tag:")) {
        Target::Tags(parts.iter().map(|p| p["tag:".len()..].to_string()).collect())
    } else if !parts.is_empty() && parts.iter().all(|p| p.contains('=')) {
        Target::Filter(
            parts
                .iter()
                .filter_map(|p| p.split_once('='))
                .map(|(f, v)| Condition { field: f.trim().into(), pattern: v.trim().into() })
                .collect(),
        )
    } else {
        Target::Agents(parts.iter().map(|s| s.to_string()).collect())
    }
}

/// A short human form of a target, for the audit log and tables.
pub fn describe(target: &Target) -> String {
    match target {
        Target::All => "all".into(),
        Target::Agents(names) => names.join(","),
        Target::Tags(tags) => tags.iter().map(|t| format!("tag:{t}")).collect::<Vec<_>>().join(","),
        Target::Filter(c) => c.iter().map(|c| format!("{}={}", c.field, c.pattern)).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(id: &'a AgentId, hostname: &'a str, os: &'a str, arch: &'a str, tags: &'a [String]) -> Facts<'a> {
        Facts { id, hostname, os, arch, tags }
    }

    #[test]
    fn targets_match_agents_by_what_the_admin_wrote() {
        let id = AgentId("a1".into());
        let pilot = vec!["pilot".to_string()];
        let ws = facts(&id, "ws-12", "Debian GNU/Linux", "x86_64", &pilot);
        // (--to, matches ws-12 on Debian GNU/Linux x86_64 tagged pilot)
        let table: &[(&str, bool)] = &[
            ("all", true),
            ("ws-12", true),
            ("a1", true),
            ("ws-13,ws-14", false),
            ("tag:pilot", true),
            ("tag:lab,tag:pilot", true),
            ("tag:lab", false),
            ("os=linux", true),
            ("os=debian", true),
            ("os=debian gnu/*", true),
            ("os=ubuntu", false),
            ("arch=X86_64", true),
            ("os=linux,arch=x86_64,hostname=ws-*", true),
            ("os=linux,arch=aarch64", false),
            ("hostname=ws-1?", true),
            ("hostname=ws-1", false),
            ("tag=pil*", true),
            ("os=macos", false),
        ];
        for (to, expected) in table {
            assert_eq!(matches(&parse(to), &ws), *expected, "{to}");
        }
    }

    #[test]
    fn unknown_fields_and_tags_are_refused() {
        let known = vec!["pilot".to_string()];
        assert_eq!(check(&parse("tag:pilot"), &known), Ok(()));
        assert_eq!(check(&parse("tag:nobody"), &known), Err(TargetError::UnknownTag("nobody".into())));
        assert_eq!(check(&parse("color=red"), &known), Err(TargetError::UnknownField("color".into())));
        assert_eq!(check(&parse("tag=nobody"), &known), Err(TargetError::UnknownTag("nobody".into())));
        assert_eq!(check(&parse("tag=pil*"), &known), Ok(()));
        assert_eq!(check(&parse(""), &known), Err(TargetError::Empty));
        assert!(is_dynamic(&parse("os=linux")) && is_dynamic(&parse("all")) && !is_dynamic(&parse("ws-1")));
    }

    #[test]
    fn globs_match_whole_values() {
        let table: &[(&str, &str, bool)] = &[
            ("ws-*", "ws-12", true),
            ("ws-*", "lab-ws-12", false),
            ("*", "", true),
            ("a*b*c", "aXXbYc", true),
            ("a*b*c", "aXXbY", false),
            ("?", "", false),
            ("linux", "Linux", false),
        ];
        for (p, t, expected) in table {
            assert_eq!(glob(p, t), *expected, "{p} ~ {t}");
        }
    }
}
