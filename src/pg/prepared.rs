//! Protocol-level prepared statements in transaction mode.
//!
//! Clients name statements however they like; backend connections are shared, so the proxy
//! prepares each distinct (query, parameter types) under its own name `sy_<id>` and rewrites
//! the client's names in Bind, Describe and Close. A backend connection remembers which ids it
//! has; a Bind on a connection without the statement gets a Parse injected in front of it.

use std::collections::HashMap;

/// Hash of the maps a statement's path looks up by client-chosen names and texts (once or more
/// per Bind): foldhash, randomly seeded, its quality variant (std's SipHash cost about 300
/// instructions per pgbench transaction; callgrind, benches/README.md).
pub type NameHash = foldhash::quality::RandomState;
use std::sync::{Arc, Mutex};

/// The statement name a Bind or Describe of a stale statement goes to the server under: no
/// connection has it (proxy statements are `sy_<id>`), so the server refuses the message
/// (26000) where it would refuse a stale statement of its own, with what that does to the
/// rest of the batch and the transaction, and the proxy gives the client the server's words
/// for a stale statement instead.
pub const STALE_NAME: &str = "sy_stale";

/// A server's message when a prepared statement's result type changed (SQLSTATE 0A000).
pub const STALE_MESSAGE: &str = "cached plan must not change result type";

/// One distinct statement as the proxy prepares it.
#[derive(Debug)]
pub struct StmtDef {
    pub id: u64,
    pub query: Box<[u8]>,
    /// Int16 count and Int32 OIDs, as in the Parse message.
    pub param_types: Box<[u8]>,
    /// Set once some server accepted this Parse from a session without temporary tables
    /// (whose statements may name them); such a statement can be answered
    /// ParseComplete without a server (see `Session`), which keeps a client that prepares
    /// synchronously while others hold every connection from deadlocking the pool.
    pub validated: std::sync::atomic::AtomicBool,
    /// It calls a function outside `pg_catalog` (see `router::session_state`): a connection
    /// that runs it is reset before reuse.
    pub unknown_calls: bool,
    /// How it uses the session's sequence state (`currval()`, `lastval()`; see
    /// `session::sequences`), read once.
    pub seq_use: crate::pg::session::SeqUse,
    /// It is one plain `SET` the proxy may carry (see `session::carried`), read once.
    pub plain_set: bool,
    /// What a server said of it when the proxy first prepared it (a Describe sent with that
    /// Parse, its answer kept from the client). A session in a failed transaction whose
    /// connection lacks the statement answers a Bind or Describe of it from this as the
    /// server would (the Parse that would bring it there is refused in that state).
    pub shape: std::sync::OnceLock<Shape>,
    /// A server, preparing it on another connection, gave it another result type than
    /// `shape` (a table it reads changed since): it is stale, as on a server of its own a
    /// statement prepared before such a change is, and a client that binds or describes it
    /// is refused (0A000) until it prepares the text again (then a new statement: it is
    /// retired from the registry too).
    pub stale: std::sync::atomic::AtomicBool,
    /// Its digest for the query statistics, read when first needed.
    digest: std::sync::OnceLock<u64>,
}

/// A statement's parameters and whether it returns rows, as a server described it.
#[derive(Debug)]
pub struct Shape {
    /// The server's whole ParameterDescription message.
    pub param_desc: Box<[u8]>,
    /// Its parameter count.
    pub params: u16,
    /// The server gave a RowDescription (not NoData).
    pub rows: bool,
    /// Its result type (`codec::row_type` of the RowDescription), when it returns rows.
    pub row_type: Option<Box<[u8]>>,
}

impl StmtDef {
    /// The name this statement has on backend connections (NUL-free ASCII).
    pub fn backend_name(&self) -> BackendName {
        BackendName::new(self.id)
    }

    /// Its digest for the query statistics (`router::digest`).
    pub fn digest(&self) -> u64 {
        *self.digest.get_or_init(|| {
            let text = String::from_utf8_lossy(&self.query);
            crate::router::digest::digest(&text, crate::router::classify::Dialect::Postgres)
        })
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `text` (a server's error message) with each quoted proxy statement name (`"sy_<id>"`)
/// replaced by the client's `name`, or None when it has none.
pub fn with_client_name(text: &str, name: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    let mut found = false;
    while let Some(at) = rest.find("\"sy_") {
        let digits = rest[at + 4..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = at + 4 + digits;
        if digits == 0 || !rest[end..].starts_with('"') {
            out.push_str(&rest[..at + 4]);
            rest = &rest[at + 4..];
            continue;
        }
        found = true;
        out.push_str(&rest[..at + 1]);
        out.push_str(&String::from_utf8_lossy(name));
        rest = &rest[end..];
    }
    out.push_str(rest);
    found.then_some(out)
}

/// The statement name of `DEALLOCATE [PREPARE] name` (nothing else but a `;`), as the server
/// reads it: folded to lower case unless quoted. `ALL` is not a name.
pub fn deallocate_target(sql: &str) -> Option<String> {
    let t = sql.trim();
    let t = t.strip_suffix(';').unwrap_or(t).trim_end();
    let rest = t
        .get(..10)?
        .eq_ignore_ascii_case("deallocate")
        .then(|| &t[10..])?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let mut rest = rest.trim_start();
    // (Bytes: the seventh may fall inside a character of a name.)
    let b = rest.as_bytes();
    if b.len() > 8 && b[..7].eq_ignore_ascii_case(b"prepare") && b[7].is_ascii_whitespace() {
        rest = rest[7..].trim_start();
    }
    if let Some(quoted) = rest.strip_prefix('"') {
        let inner = quoted.strip_suffix('"')?;
        let name = inner.replace("\"\"", "\"");
        // A lone quote inside is not one name.
        return (!inner.replace("\"\"", "").contains('"') && !name.is_empty()).then_some(name);
    }
    // The server's identifiers: letters, `_`, any character past ASCII, then digits and `$`
    // too; only ASCII letters are folded.
    let ok = rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii());
    (ok && !rest.eq_ignore_ascii_case("all")).then(|| rest.to_ascii_lowercase())
}

/// `sy_<id>` without allocating.
pub struct BackendName {
    buf: [u8; 24],
    len: usize,
}

impl BackendName {
    fn new(id: u64) -> Self {
        let mut buf = [0u8; 24];
        buf[..3].copy_from_slice(b"sy_");
        let mut digits = [0u8; 20];
        let mut n = id;
        let mut k = 0;
        loop {
            digits[k] = b'0' + (n % 10) as u8;
            k += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..k {
            buf[3 + i] = digits[k - 1 - i];
        }
        BackendName { buf, len: 3 + k }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Most distinct statements remembered per worker before the registry starts over (ids keep
/// increasing, so backend connections never confuse an old id with a new statement).
const REGISTRY_LIMIT: usize = 50_000;

/// Per-worker map from statement content to its definition.
#[derive(Debug, Default)]
pub struct StmtRegistry {
    inner: Mutex<RegistryInner>,
}

/// (query text, parameter-type section)
type StmtKey = (Box<[u8]>, Box<[u8]>);

#[derive(Debug, Default)]
struct RegistryInner {
    by_content: HashMap<StmtKey, Arc<StmtDef>, NameHash>,
    next_id: u64,
}

impl StmtRegistry {
    /// The statement of this content, if the registry has it.
    pub fn find(&self, query: &[u8], param_types: &[u8]) -> Option<Arc<StmtDef>> {
        let key: StmtKey = (query.into(), param_types.into());
        self.inner.lock().unwrap().by_content.get(&key).cloned()
    }

    pub fn intern(&self, query: &[u8], param_types: &[u8]) -> Arc<StmtDef> {
        let mut g = self.inner.lock().unwrap();
        // Look up without allocating a key: HashMap needs an owned tuple, so probe by scanning
        // only on miss would be slow; the allocation happens once per client Parse, which is
        // once per statement per session, not per execution.
        let key: StmtKey = (query.into(), param_types.into());
        if let Some(d) = g.by_content.get(&key) {
            return d.clone();
        }
        if g.by_content.len() >= REGISTRY_LIMIT {
            g.by_content.clear();
        }
        g.next_id += 1;
        let def = Arc::new(StmtDef {
            id: g.next_id,
            query: key.0.clone(),
            param_types: key.1.clone(),
            validated: Default::default(),
            shape: Default::default(),
            stale: Default::default(),
            unknown_calls: std::str::from_utf8(query)
                .map_or(true, |q| crate::router::session_state::effect(q).unknown),
            seq_use: crate::pg::session::seq_use(query),
            plain_set: crate::pg::session::one_plain_set(query),
            digest: Default::default(),
        });
        g.by_content.insert(key, def.clone());
        def
    }
}

impl StmtRegistry {
    /// The server found `def`'s statement stale (its result type changed): the next Parse
    /// of its content gets a new statement, under a new name. Clients that hold `def` keep it,
    /// as they would keep a stale statement on a server of their own.
    pub fn retire(&self, def: &Arc<StmtDef>) {
        let mut g = self.inner.lock().unwrap();
        let key: StmtKey = (def.query.clone(), def.param_types.clone());
        if g.by_content.get(&key).is_some_and(|d| Arc::ptr_eq(d, def)) {
            g.by_content.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_same_id() {
        let r = StmtRegistry::default();
        let a = r.intern(b"select 1", &[0, 0]);
        let b = r.intern(b"select 1", &[0, 0]);
        let c = r.intern(b"select 1", &[0, 1, 0, 0, 0, 23]);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(
            a.backend_name().as_bytes(),
            format!("sy_{}", a.id).as_bytes()
        );
        assert_eq!(BackendName::new(0).as_bytes(), b"sy_0");
        assert_eq!(
            BackendName::new(u64::MAX).as_bytes(),
            format!("sy_{}", u64::MAX).as_bytes()
        );
    }

    #[test]
    fn a_retired_statement_is_not_found_again_but_its_holders_keep_it() {
        let r = StmtRegistry::default();
        let old = r.intern(b"select * from t", &[0, 0]);
        r.retire(&old);
        let new = r.intern(b"select * from t", &[0, 0]);
        assert_ne!(old.id, new.id);
        assert_eq!(&*old.query, b"select * from t");
        // Retiring the old one again (another session saw it stale) leaves the new one.
        r.retire(&old);
        assert_eq!(r.intern(b"select * from t", &[0, 0]).id, new.id);
    }

    #[test]
    fn proxy_names_in_errors_become_the_clients() {
        assert_eq!(
            with_client_name(
                "bind message supplies 1 parameters, but prepared statement \"sy_12\" requires 0",
                b"s1"
            )
            .as_deref(),
            Some("bind message supplies 1 parameters, but prepared statement \"s1\" requires 0")
        );
        assert_eq!(
            with_client_name("relation \"sy_t\" does not exist", b"x"),
            None
        );
        assert_eq!(with_client_name("\"sy_3 x\" and \"sy_", b"x"), None);
        assert_eq!(with_client_name("no names here", b"x"), None);
    }
    #[test]
    fn deallocate_targets_are_read_as_the_server_reads_them() {
        assert_eq!(
            deallocate_target("DEALLOCATE _pg3_0").as_deref(),
            Some("_pg3_0")
        );
        assert_eq!(
            deallocate_target(" deallocate prepare S1 ;").as_deref(),
            Some("s1")
        );
        assert_eq!(
            deallocate_target("DEALLOCATE \"S 1\"").as_deref(),
            Some("S 1")
        );
        assert_eq!(
            deallocate_target("DEALLOCATE \"a\"\"b\"").as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            deallocate_target("DEALLOCATE prepare").as_deref(),
            Some("prepare")
        );
        assert_eq!(deallocate_target("DEALLOCATE ALL"), None);
        assert_eq!(deallocate_target("DEALLOCATE PREPARE ALL"), None);
        assert_eq!(deallocate_target("DEALLOCATE a; SELECT 1"), None);
        // Names whose seventh byte is inside a character (found by fuzzing: a panic).
        assert_eq!(
            deallocate_target("DEALLOCATE Stmt_D\u{c9}j\u{e0}").as_deref(),
            Some("stmt_d\u{c9}j\u{e0}")
        );
        assert_eq!(
            deallocate_target("DEALLOCATE PREPARE \u{e9}t\u{e9}").as_deref(),
            Some("\u{e9}t\u{e9}")
        );
        assert_eq!(deallocate_target("DEALLOCATE U$$DR]\u{61e}s1"), None);
        assert_eq!(deallocate_target("DEALLOCATE \"a\"b\""), None);
        assert_eq!(deallocate_target("DEALLOCATEa"), None);
        assert_eq!(deallocate_target("DEALLOCATE"), None);
    }
}
