//! The operator's routing rules (`[[routing.rule]]`), as ProxySQL's query rules: each a
//! regular expression searched for in a statement's text and where what it matches goes.
//! The first rule that matches decides; a statement with a leading hint of its own keeps
//! it. A rule routes as the hint of the same name would, so a rule can never send a write
//! or a transaction to a replica. Compiled once per classifier into one `RegexSet`, searched
//! only when there are rules.

use super::hints::Hint;
use regex::RegexSet;

/// The rules of one dialect's classifier.
#[derive(Debug)]
pub struct Rules {
    set: RegexSet,
    routes: Vec<Hint>,
}

impl Rules {
    /// `rules`: (pattern, route), in the config's order; `None` when there are none. The
    /// patterns were checked when the config was (an invalid one is reported there).
    pub fn new(rules: &[(String, Hint)]) -> Option<Rules> {
        if rules.is_empty() {
            return None;
        }
        let set = RegexSet::new(rules.iter().map(|(p, _)| p))
            .map_err(|e| tracing::error!(error = %e, "routing rules did not compile; none apply"))
            .ok()?;
        Some(Rules {
            set,
            routes: rules.iter().map(|(_, h)| *h).collect(),
        })
    }

    /// Where the first rule that matches `sql` sends it, if one does.
    pub fn route(&self, sql: &str) -> Option<Hint> {
        self.set.matches(sql).iter().next().map(|i| self.routes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_that_matches_decides() {
        let r = Rules::new(&[
            ("(?i)from\\s+reports\\.".into(), Hint::Replica),
            ("(?i)^select".into(), Hint::Primary),
        ])
        .unwrap();
        assert_eq!(r.route("SELECT * FROM reports.daily"), Some(Hint::Replica));
        assert_eq!(r.route("select 1"), Some(Hint::Primary));
        assert_eq!(r.route("UPDATE t SET a = 1"), None);
        assert!(Rules::new(&[]).is_none());
    }
}
