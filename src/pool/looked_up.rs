//! Client users that are not in the config, looked up in a cluster's servers
//! (`[[cluster]] auth_query`, as PgBouncer's; MaxScale reads its users from the servers too),
//! whatever the protocol: what each lookup found, kept per cluster and user name. The
//! protocols ask the servers and say what a stored secret makes of a user; this keeps the
//! answers.
//!
//! An answer is used for [`FRESH`], so that a pool of clients connecting at once costs the
//! primary one query, and kept after that for the workers' pools (a user once looked up keeps
//! its pools across reloads, as a config user does). A failed login marks the user's entry
//! stale, so a changed password is seen by the next attempt; a lookup that cannot reach the
//! servers uses the entry it has, so users already seen keep logging in while they cannot be
//! asked.

use crate::config::User;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a lookup's answer is used without asking the servers again.
pub const FRESH: Duration = Duration::from_secs(2);
/// Most lookups running at once (each opens a connection to the primary); more wait.
const AT_ONCE: usize = 8;

/// What a protocol makes of a looked-up user: at least a config user with the secret the
/// servers store.
pub trait AsUser {
    fn as_user(&self) -> &User;
}

impl AsUser for User {
    fn as_user(&self) -> &User {
        self
    }
}

struct Entry<T> {
    found: Arc<T>,
    /// When the servers last said so (`None`: stale, asked again at the next login).
    at: Option<Instant>,
}

/// Per cluster and user name, the lock the logins asking about that user take in turn.
type Turns = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;

/// A login's place among those asking the servers about one user: the user's entry in
/// `asking` goes when the last of them is done (or gave up), so names nobody uses again (an
/// unknown user's, tried once) leave nothing behind.
struct Asking<'a> {
    map: &'a Turns,
    key: (String, String),
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap();
        // Clones are taken under this lock: two left are this one's and the map's.
        if Arc::strong_count(&self.turn) <= 2 {
            map.remove(&self.key);
        }
    }
}

/// The users looked up so far, by cluster name and user name; shared by every worker.
pub struct LookedUp<T> {
    entries: Mutex<HashMap<(String, String), Entry<T>>>,
    /// One lookup at a time per user: logins that need one while it runs wait for its answer.
    asking: Turns,
    /// At most [`AT_ONCE`] lookups run at a time (a flood of logins with made-up names is a
    /// flood of questions to the primary, each its own login there).
    at_once: tokio::sync::Semaphore,
    /// Moves whenever a user is added or its secret changes: workers whose pools were built
    /// before rebuild them.
    version: AtomicU64,
}

impl<T> Default for LookedUp<T> {
    fn default() -> Self {
        LookedUp {
            entries: Default::default(),
            asking: Default::default(),
            at_once: tokio::sync::Semaphore::new(AT_ONCE),
            version: Default::default(),
        }
    }
}

impl<T: AsUser> LookedUp<T> {
    /// `user` of cluster `cluster`: from a fresh entry, else what `ask` gets from the servers
    /// (the stored secret, `None` when they know no such user or it has none) made into a
    /// user by `make` (`None`: a secret that logs nobody in). `Ok(None)` when there is no
    /// such user; `Err` when the servers could not be asked and no entry is kept. A failure
    /// to ask is counted in `metrics` (when given) whether or not an entry serves.
    pub async fn lookup(
        &self,
        metrics: Option<&crate::metrics::Metrics>,
        cluster: &str,
        user: &str,
        ask: impl Future<Output = Result<Option<String>, String>>,
        make: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<Arc<T>>, String> {
        let key = (cluster.to_owned(), user.to_owned());
        let kept = || {
            self.entries.lock().unwrap().get(&key).map(|e| {
                let fresh = e.at.is_some_and(|at| at.elapsed() < FRESH);
                (e.found.clone(), fresh)
            })
        };
        if let Some((found, true)) = kept() {
            return Ok(Some(found));
        }
        let asking = Asking {
            turn: self
                .asking
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone(),
            map: &self.asking,
            key: key.clone(),
        };
        let _turn = asking.turn.lock().await;
        // Another login asked meanwhile.
        let kept = kept();
        if let Some((found, true)) = &kept {
            return Ok(Some(found.clone()));
        }
        let permit = self.at_once.acquire().await;
        let asked = ask.await;
        drop(permit);
        if let (Err(_), Some(m)) = (&asked, metrics) {
            m.error(cluster, crate::metrics::kind::AUTH_QUERY);
        }
        let secret = match asked {
            Ok(secret) => secret,
            Err(e) => {
                return match kept {
                    Some((found, _)) => {
                        tracing::warn!(cluster, user, error = %e,
                            "auth_query failed; the user's last secret is used");
                        Ok(Some(found))
                    }
                    None => Err(e),
                }
            }
        };
        let mut entries = self.entries.lock().unwrap();
        let Some(found) = secret.as_deref().and_then(make) else {
            entries.remove(&key);
            return Ok(None);
        };
        let secrets = |u: &User| {
            (
                u.scram_verifier.clone(),
                u.md5_hash.clone(),
                u.mysql_native_hash.clone(),
            )
        };
        let found = match entries.get(&key) {
            Some(e) if secrets(e.found.as_user()) == secrets(found.as_user()) => e.found.clone(),
            _ => {
                self.version.fetch_add(1, Ordering::Release);
                Arc::new(found)
            }
        };
        entries.insert(
            key,
            Entry {
                found: found.clone(),
                at: Some(Instant::now()),
            },
        );
        Ok(Some(found))
    }

    /// A login of `user` failed: its entry is asked for again next time.
    pub fn stale(&self, cluster: &str, user: &str) {
        let key = (cluster.to_owned(), user.to_owned());
        if let Some(e) = self.entries.lock().unwrap().get_mut(&key) {
            e.at = None;
        }
    }

    /// The users looked up in cluster `cluster`, as config users (for its per-user pools).
    pub fn users_of(&self, cluster: &str) -> Vec<User> {
        let entries = self.entries.lock().unwrap();
        let mut users: Vec<User> = entries
            .iter()
            .filter(|((c, _), _)| c == cluster)
            .map(|(_, e)| e.found.as_user().clone())
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    /// Moves when [`LookedUp::users_of`] may say something new.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(name: &str, hash: &str) -> Option<User> {
        Some(User {
            mysql_native_hash: Some(hash.to_owned()),
            ..User::named(name)
        })
    }

    #[tokio::test]
    async fn answers_are_kept_fresh_then_asked_again_and_used_when_asking_fails() {
        let l = LookedUp::<User>::default();
        let asks = std::sync::atomic::AtomicUsize::new(0);
        let ask = |answer: Result<Option<String>, String>| {
            asks.fetch_add(1, Ordering::Relaxed);
            std::future::ready(answer)
        };
        let got = l
            .lookup(None, "c", "alice", ask(Ok(Some("*A".into()))), |s| {
                with_hash("alice", s)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.mysql_native_hash.as_deref(), Some("*A"));
        let v1 = l.version();
        assert!(v1 > 0);
        // Fresh: not asked again (the answer given is not awaited).
        let again = l
            .lookup(None, "c", "alice", async { unreachable!() }, |s| {
                with_hash("alice", s)
            })
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&got, &again));
        // Stale after a failed login: asked again; the same secret moves nothing.
        l.stale("c", "alice");
        l.lookup(None, "c", "alice", ask(Ok(Some("*A".into()))), |s| {
            with_hash("alice", s)
        })
        .await
        .unwrap();
        assert_eq!(l.version(), v1);
        // A new secret does.
        l.stale("c", "alice");
        let changed = l
            .lookup(None, "c", "alice", ask(Ok(Some("*B".into()))), |s| {
                with_hash("alice", s)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.mysql_native_hash.as_deref(), Some("*B"));
        assert!(l.version() > v1);
        // The servers cannot be asked: the last answer serves; a user never seen fails.
        l.stale("c", "alice");
        let kept = l
            .lookup(None, "c", "alice", ask(Err("down".into())), |s| {
                with_hash("alice", s)
            })
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&kept, &changed));
        let e = l
            .lookup(None, "c", "bob", ask(Err("down".into())), |s| {
                with_hash("bob", s)
            })
            .await;
        assert_eq!(e.err().as_deref(), Some("down"));
        // Per cluster; a user the servers no longer know is forgotten.
        assert_eq!(l.users_of("c").len(), 1);
        assert!(l.users_of("d").is_empty());
        l.stale("c", "alice");
        let gone = l.lookup(None, "c", "alice", ask(Ok(None)), |s| with_hash("alice", s));
        assert!(gone.await.unwrap().is_none());
        assert!(l.users_of("c").is_empty());
        // A secret that makes nobody is no user.
        let none = l.lookup(None, "c", "carol", ask(Ok(Some("x".into()))), |_| None);
        assert!(none.await.unwrap().is_none());
        assert_eq!(asks.load(Ordering::Relaxed), 7);
    }

    #[tokio::test]
    async fn logins_at_once_cost_one_question() {
        let l = Arc::new(LookedUp::<User>::default());
        let asks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (l, asks) = (l.clone(), asks.clone());
            tasks.push(tokio::spawn(async move {
                let ask = async {
                    asks.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some("*A".to_owned()))
                };
                l.lookup(None, "c", "alice", ask, |s| with_hash("alice", s))
                    .await
                    .unwrap()
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().mysql_native_hash.as_deref(), Some("*A"));
        }
        assert_eq!(asks.load(Ordering::Relaxed), 1);
        assert!(l.asking.lock().unwrap().is_empty());
        // Names tried once leave nothing behind either.
        for i in 0..10 {
            let name = format!("nobody{i}");
            let gone = l.lookup(None, "c", &name, async { Ok(None) }, |_| None::<User>);
            assert!(gone.await.unwrap().is_none());
        }
        assert!(l.asking.lock().unwrap().is_empty());
        assert_eq!(l.users_of("c").len(), 1);
    }
}
