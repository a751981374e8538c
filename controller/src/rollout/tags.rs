//! Agent tags in the store: labels admins put on agents
//! (`flottectl agents tag`) so that rollouts can target them.
//!
//! Guarantees: a tag is 1–64 characters of `a-z 0-9 . _ -`; a bad tag is
//! refused and changes nothing; adding a tag twice or removing one that
//! is not there is not an error.

use crate::error::ControllerError;
use crate::store::Store;
use flotte_protocol::AgentId;
use rusqlite::params;
use std::collections::BTreeMap;

/// Why a tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid tag; use 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
pub struct BadTag(pub String);

/// Checks a tag's spelling.
pub fn check_tag(tag: &str) -> Result<(), BadTag> {
    let ok = (1..=64).contains(&tag.len())
        && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(BadTag(tag.to_string())) }
}

impl Store {
    /// Adds and removes tags of `agent` in one transaction; returns its tags.
    pub fn change_tags(
        &self,
        agent: &AgentId,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>, ControllerError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for tag in add {
            tx.execute("INSERT OR IGNORE INTO agent_tags (agent_id, tag) VALUES (?1, ?2)", params![agent.0, tag])?;
        }
        for tag in remove {
            tx.execute("DELETE FROM agent_tags WHERE agent_id = ?1 AND tag = ?2", params![agent.0, tag])?;
        }
        tx.commit()?;
        drop(conn);
        self.tags_of(agent)
    }

    /// One agent's tags, sorted.
    pub fn tags_of(&self, agent: &AgentId) -> Result<Vec<String>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT tag FROM agent_tags WHERE agent_id = ?1 ORDER BY tag")?;
        let tags = stmt.query_map(params![agent.0], |r| r.get::<_, String>(0))?;
        Ok(tags.collect::<Result<_, _>>()?)
    }

    /// Every agent's tags, sorted.
    pub fn all_tags(&self) -> Result<BTreeMap<AgentId, Vec<String>>, ControllerError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT agent_id, tag FROM agent_tags ORDER BY agent_id, tag")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut tags: BTreeMap<AgentId, Vec<String>> = BTreeMap::new();
        for row in rows {
            let (agent, tag) = row?;
            tags.entry(AgentId(agent)).or_default().push(tag);
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_lowercase_words() {
        for good in ["pilot", "ring-1", "lab.eu_west", "a"] {
            assert_eq!(check_tag(good), Ok(()), "{good}");
        }
        for bad in ["", "Pilot", "two words", "tag:x", &"x".repeat(65)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
