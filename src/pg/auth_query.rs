//! PostgreSQL users that are not in the config, looked up in the servers (`[[cluster]]
//! auth_query`, as PgBouncer's): the query runs on the cluster's primary and returns the
//! user's verifier as `pg_authid` stores it; the client then logs in against it as against a
//! config user's, and where the servers see each client's own user its connections log in
//! with what that login proved (see [`super::backend::PassThrough`]). What was found is kept
//! by [`crate::pool::LookedUp`].

use super::auth::ScramVerifier;
use super::backend::{BackendConn, BackendTarget};
use crate::cluster::ClusterState;
use crate::config::{Cluster, Config, User};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for the query itself (the connection has `pool.connect_timeout`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A user the servers know: as a config user with the verifier they store.
#[derive(Debug, Clone)]
pub struct Found {
    pub user: User,
    /// Its SCRAM verifier, parsed (`None` for an md5 hash).
    pub verifier: Option<Arc<ScramVerifier>>,
}

impl crate::pool::AsUser for Found {
    fn as_user(&self) -> &User {
        &self.user
    }
}

/// The users looked up so far, shared by every worker.
pub type AuthQuery = crate::pool::LookedUp<Found>;

/// `user` of cluster `c`, from what `looked_up` keeps or from `c`'s servers (a failure to
/// ask them counted in `metrics`).
pub async fn lookup(
    looked_up: &AuthQuery,
    metrics: &crate::metrics::Metrics,
    cfg: &Config,
    c: &Cluster,
    state: &ClusterState,
    user: &str,
) -> Result<Option<Arc<Found>>, String> {
    let ask = ask(cfg, c, state, user);
    looked_up
        .lookup(Some(metrics), &c.name, user, ask, |secret| {
            found(user, secret)
        })
        .await
}

/// Run `c`'s auth_query for `user` on its primary, as its auth user: the last column of the
/// first row, if there is one and it is not NULL.
async fn ask(
    cfg: &Config,
    c: &Cluster,
    state: &ClusterState,
    user: &str,
) -> Result<Option<String>, String> {
    let query = c.auth_query.as_deref().ok_or("no auth_query")?;
    let idx = state.primary().map_err(|e| e.to_string())?;
    let (auth_user, auth_password) = c.auth_login();
    let target = BackendTarget {
        addr: state.backends[idx].addr,
        user: auth_user,
        password: auth_password,
        database: c
            .auth_database
            .clone()
            .unwrap_or_else(|| c.backend_database().to_owned()),
        application_name: "switchyard auth_query",
        ..super::worker::backend_target(cfg, c)
    };
    let mut conn = BackendConn::connect(&target)
        .await
        .map_err(|e| format!("auth_query connection to {}: {e}", target.addr))?;
    let sql = query.replace("$1", &literal(user));
    let row = conn
        .simple_query(&sql, QUERY_TIMEOUT)
        .await
        .map_err(|e| format!("auth_query on {}: {e}", target.addr))?;
    Ok(row.and_then(|row| row.last().cloned().flatten()))
}

/// `s` as an SQL string literal that reads the same whatever `standard_conforming_strings`
/// is (an escape string: quotes and backslashes doubled).
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The user the stored `secret` makes: a SCRAM verifier or an md5 hash; anything else (a
/// password stored in the clear by a very old server, an empty one) logs nobody in.
fn found(name: &str, secret: &str) -> Option<Found> {
    let mut user = User::named(name);
    let mut verifier = None;
    if secret.starts_with("SCRAM-SHA-256$") {
        verifier = Some(Arc::new(ScramVerifier::parse(secret).ok()?));
        user.scram_verifier = Some(secret.to_owned());
    } else if secret.len() == 35
        && secret.starts_with("md5")
        && secret[3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        user.md5_hash = Some(secret.to_owned());
    } else {
        return None;
    }
    Some(Found { user, verifier })
}

/// A verifier no password matches, for a SCRAM exchange with a client whose user does not
/// exist: it fails as a wrong password does, after the same messages (as PostgreSQL's).
pub fn mock_verifier() -> ScramVerifier {
    use rand::RngCore;
    let mut salt = vec![0u8; 16];
    let (mut stored_key, mut server_key) = ([0u8; 32], [0u8; 32]);
    let mut rng = rand::thread_rng();
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut stored_key);
    rng.fill_bytes(&mut server_key);
    ScramVerifier {
        iterations: 4096,
        salt,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_the_same_with_quotes_and_backslashes() {
        assert_eq!(literal("alice"), "E'alice'");
        assert_eq!(literal("o'brien"), "E'o''brien'");
        assert_eq!(literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }

    #[test]
    fn verifiers_and_md5_hashes_make_users_and_nothing_else_does() {
        let v = ScramVerifier::from_password("pw").to_text();
        let f = found("alice", &v).unwrap();
        assert_eq!(f.user.scram_verifier.as_deref(), Some(v.as_str()));
        assert!(f.verifier.is_some());
        assert_eq!(
            f.user.effective_auth(),
            Some(crate::config::AuthMethod::ScramSha256)
        );
        let h = crate::pg::auth::md5_stored_hash("bob", "pw");
        let f = found("bob", &h).unwrap();
        assert_eq!(f.user.md5_hash.as_deref(), Some(h.as_str()));
        assert_eq!(
            f.user.effective_auth(),
            Some(crate::config::AuthMethod::Md5)
        );
        for bad in [
            "",
            "pw",
            "md5xyz",
            "SCRAM-SHA-256$nonsense",
            "md5 not hex at all 0123456789ab",
        ] {
            assert!(found("carol", bad).is_none(), "{bad:?}");
        }
        // Neither has a password for the servers: their logins pass through.
        assert!(crate::pg::backend::PassThrough::of(&found("bob", &h).unwrap().user).is_some());
    }
}
