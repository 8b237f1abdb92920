//! One worker's pool sets of one protocol, by the database name clients use. A cluster whose
//! servers see the clients' own users (`server_login = "client"`) has one set per user: a
//! connection logged in as one user is never handed to a client of another.

use crate::config::{Cluster, Config, ServerLogin, User};
use std::collections::HashMap;
use std::sync::Arc;

/// A protocol's pool sets (`P`: its pools for one cluster and one server login).
pub struct PoolSets<P> {
    by_database: HashMap<String, Logins<P>>,
}

enum Logins<P> {
    /// Every client logs in to the servers as the cluster's `user`.
    Shared(Arc<P>),
    /// Each client as itself, by client user name.
    PerUser(HashMap<String, Arc<P>>),
}

impl<P> Default for PoolSets<P> {
    fn default() -> Self {
        PoolSets {
            by_database: HashMap::new(),
        }
    }
}

impl<P> PoolSets<P> {
    /// The set a client of `user` connected to `database` uses: `None` when no cluster
    /// serves the database, or when it logs each client in as itself and knows no such user.
    pub fn get(&self, database: &str, user: &str) -> Option<&Arc<P>> {
        match self.by_database.get(database)? {
            Logins::Shared(p) => Some(p),
            Logins::PerUser(users) => users.get(user),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_database.is_empty()
    }

    /// Whether some cluster serves `database`.
    pub fn serves(&self, database: &str) -> bool {
        self.by_database.contains_key(database)
    }

    /// The set every client of `database` shares.
    pub fn insert_shared(&mut self, database: String, pools: Arc<P>) {
        self.by_database.insert(database, Logins::Shared(pools));
    }

    /// The set of the clients of `database` that log in as `user`.
    pub fn insert_user(&mut self, database: &str, user: String, pools: Arc<P>) {
        let entry = self
            .by_database
            .entry(database.to_owned())
            .or_insert_with(|| Logins::PerUser(HashMap::new()));
        if let Logins::PerUser(users) = entry {
            users.insert(user, pools);
        } else {
            *entry = Logins::PerUser(HashMap::from([(user, pools)]));
        }
    }

    /// Add the sets of cluster `c`: one every client shares, or one per user of `cfg` (and
    /// per user of `looked_up`, users the servers were asked about, that the config does not
    /// name) where the servers see each client's own. `make(login, prev)` builds the set for
    /// `login`, given the set it replaces in `old` (whose unchanged pools it keeps).
    pub fn add_cluster(
        &mut self,
        cfg: &Config,
        c: &Cluster,
        old: Option<&PoolSets<P>>,
        looked_up: &[User],
        mut make: impl FnMut(Login<'_>, Option<&Arc<P>>) -> Arc<P>,
    ) {
        let prev = |client: &str| old.and_then(|o| o.get(&c.database, client));
        match c.server_login {
            ServerLogin::Cluster => {
                let login = Login {
                    user: &c.user,
                    password: c.password.as_deref(),
                    client: None,
                };
                self.insert_shared(c.database.clone(), make(login, prev("")));
            }
            ServerLogin::Client => {
                let unnamed = looked_up.iter().filter(|u| cfg.user(&u.name).is_none());
                for u in cfg.users.iter().chain(unnamed) {
                    let (user, password) = u.server_login();
                    let login = Login {
                        user,
                        password,
                        client: Some(u),
                    };
                    let set = make(login, prev(&u.name));
                    self.insert_user(&c.database, u.name.clone(), set);
                }
            }
        }
    }

    /// Every set of `database`'s cluster (one, or one per user).
    pub fn of_database<'a>(&'a self, database: &str) -> Box<dyn Iterator<Item = &'a Arc<P>> + 'a> {
        match self.by_database.get(database) {
            None => Box::new(std::iter::empty()),
            Some(Logins::Shared(p)) => Box::new(std::iter::once(p)),
            Some(Logins::PerUser(users)) => Box::new(users.values()),
        }
    }

    /// The sets of `database`'s cluster by client user, where it has one per user.
    pub fn users_of<'a>(&'a self, database: &str) -> Vec<(&'a str, &'a Arc<P>)> {
        match self.by_database.get(database) {
            Some(Logins::PerUser(users)) => users.iter().map(|(u, p)| (u.as_str(), p)).collect(),
            _ => Vec::new(),
        }
    }

    /// Every set of every cluster.
    pub fn all(&self) -> impl Iterator<Item = &Arc<P>> {
        self.by_database.keys().flat_map(|db| self.of_database(db))
    }
}

/// As whom a pool set logs in to its cluster's servers.
pub struct Login<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
    /// The config user whose clients the set serves (`None`: every client, as the cluster's
    /// user).
    pub client: Option<&'a User>,
}

/// One shared value per user name, kept while it stays equal to what the config makes of the
/// user: what a login teaches it (the secrets a pass-through login uses) then reaches every
/// pool of that user, of every worker and cluster, across reloads that leave the user as it
/// was.
pub struct PerUser<T>(std::sync::Mutex<HashMap<String, Arc<T>>>);

impl<T> Default for PerUser<T> {
    fn default() -> Self {
        PerUser(Default::default())
    }
}

impl<T: PartialEq> PerUser<T> {
    /// `user`'s value: the one kept if it equals `want`, else `want` (kept from now on).
    pub fn get_or_insert(&self, user: &str, want: T) -> Arc<T> {
        let mut map = self.0.lock().unwrap();
        match map.get(user) {
            Some(v) if **v == want => v.clone(),
            _ => {
                let v = Arc::new(want);
                map.insert(user.to_owned(), v.clone());
                v
            }
        }
    }

    /// `user`'s value, if one was made.
    pub fn get(&self, user: &str) -> Option<Arc<T>> {
        self.0.lock().unwrap().get(user).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_clusters_ignore_the_user_and_per_user_clusters_do_not() {
        let mut s = PoolSets::default();
        s.insert_shared("a".into(), Arc::new(1));
        s.insert_user("b", "alice".into(), Arc::new(2));
        s.insert_user("b", "bob".into(), Arc::new(3));
        assert_eq!(s.get("a", "anyone").map(|p| **p), Some(1));
        assert_eq!(s.get("b", "alice").map(|p| **p), Some(2));
        assert_eq!(s.get("b", "bob").map(|p| **p), Some(3));
        assert_eq!(s.get("b", "carol"), None);
        assert_eq!(s.get("c", "alice"), None);
        assert!(s.serves("b") && !s.serves("c"));
        let mut all: Vec<i32> = s.all().map(|p| **p).collect();
        all.sort();
        assert_eq!(all, [1, 2, 3]);
        let mut b: Vec<i32> = s.of_database("b").map(|p| **p).collect();
        b.sort();
        assert_eq!(b, [2, 3]);
        assert_eq!(s.of_database("c").count(), 0);
    }
}
