//! MySQL users that are not in the config, looked up in the servers (`[[cluster]]
//! auth_query`; MaxScale reads its users from the servers the same way): the query runs on
//! the cluster's primary and returns the user's `mysql_native_password` hash as `mysql.user`
//! stores it; the client then logs in against it as against a config user's
//! `mysql_native_hash`, and where the servers see each client's own user its connections log
//! in with what that login revealed (see [`super::backend::PassThrough`]). What was found is
//! kept by [`crate::pool::LookedUp`].

use super::auth::NativePasswordHash;
use super::backend::{MyConn, MyTarget};
use crate::cluster::ClusterState;
use crate::config::{Cluster, Config, User};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed for the query itself (the connection has `pool.connect_timeout`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The users looked up so far, shared by every worker.
pub type AuthQuery = crate::pool::LookedUp<User>;

/// `user` of cluster `c`, from what `looked_up` keeps or from `c`'s servers (a failure to
/// ask them counted in `metrics`).
pub async fn lookup(
    looked_up: &AuthQuery,
    metrics: &crate::metrics::Metrics,
    cfg: &Config,
    c: &Cluster,
    state: &ClusterState,
    user: &str,
) -> Result<Option<Arc<User>>, String> {
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
    let target = MyTarget {
        addr: state.backends[idx].addr,
        user: auth_user,
        password: auth_password,
        database: c.auth_database.clone(),
        ..super::worker::backend_target(cfg, c)
    };
    let mut conn = MyConn::connect(&target)
        .await
        .map_err(|e| format!("auth_query connection to {}: {e}", target.addr))?;
    let sql = query.replace("$1", &literal(user));
    let result = conn
        .query(&sql, QUERY_TIMEOUT)
        .await
        .map_err(|e| format!("auth_query on {}: {e}", target.addr))?;
    Ok(result
        .rows()
        .first()
        .and_then(|row| row.last().cloned().flatten()))
}

/// `s` as an SQL string that reads the same whatever the session's `sql_mode` and
/// character set are: its UTF-8 bytes as a hex literal.
fn literal(s: &str) -> String {
    let hex: String = s.bytes().map(|b| format!("{b:02X}")).collect();
    format!("CONVERT(X'{hex}' USING utf8mb4)")
}

/// The user the stored `secret` makes: a `mysql_native_password` hash; anything else (another
/// plugin's secret, an account without a password) logs nobody in.
fn found(name: &str, secret: &str) -> Option<User> {
    NativePasswordHash::parse(secret).ok()?;
    Some(User {
        mysql_native_hash: Some(secret.to_owned()),
        ..User::named(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_hex_and_only_native_hashes_make_users() {
        assert_eq!(literal("a'b"), "CONVERT(X'612762' USING utf8mb4)");
        assert_eq!(literal(""), "CONVERT(X'' USING utf8mb4)");
        let h = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";
        let u = found("web", h).unwrap();
        assert_eq!(u.mysql_native_hash.as_deref(), Some(h));
        assert!(super::super::backend::PassThrough::of(&u).is_some());
        for bad in ["", "secret", "*2470", "invalid", "$A$005$salt"] {
            assert!(found("web", bad).is_none(), "{bad:?}");
        }
    }
}
