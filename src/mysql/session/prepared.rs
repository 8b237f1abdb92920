//! The binary protocol (COM_STMT_*) under transaction pooling. A client's statement ids are
//! its own (numbered by the proxy from 1); each distinct text has a proxy id per worker, and
//! each backend connection remembers which proxy ids it has prepared under which server id
//! (`MyConn::prepared`). A statement is prepared again on whichever connection runs it. Every
//! COM_STMT_EXECUTE goes out with the parameter types (the client's last ones), since the
//! server statement may have been executed by another client with other types meanwhile.
//!
//! Cursors (COM_STMT_EXECUTE with a cursor type) and long data (COM_STMT_SEND_LONG_DATA) keep
//! state on the connection: a cursor pins the client; long data holds the connection until
//! the statement's next execute.

use super::{own, Answer, Origin, Session, SessionError, INTERNAL_TIMEOUT};
use crate::mysql::codec::{self, Command};
use crate::mysql::io::{err_payload, ok_payload};
use crate::router::classify::{Class, Classifier};
use crate::router::hints;
use bytes::{Buf, BytesMut};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most statements a client may have prepared at once.
const MAX_CLIENT_STATEMENTS: usize = 10_000;

/// A statement a client prepared.
#[derive(Debug, Clone)]
pub(super) struct ClientStmt {
    /// The text's id under `context` (see [`Session::parse_context`]).
    proxy_id: u64,
    context: Arc<str>,
    /// The statement's text as the client sent it (in its character set, not always UTF-8:
    /// prepared again elsewhere byte for byte).
    sql: Arc<[u8]>,
    params: u16,
    /// The parameter types (2 bytes each) of the client's last execute that sent them.
    types: Option<Vec<u8>>,
    /// How `classifier` (the one in force when it was classified) routes it, and whether it
    /// carries a leading hint of its own: an execute routes without reading the text again,
    /// unless a reload replaced the classifier.
    class: Class,
    hinted: bool,
    classifier: Arc<Classifier>,
    /// The statement is a bare question about the client's last statement (see `own`):
    /// answered by the proxy when the client holds no connection.
    own: Option<own::OwnQuery>,
    /// The statement reads `LAST_INSERT_ID()`: the client's value is set first.
    reads_last_insert_id: bool,
    /// The statement asks for SQL_CALC_FOUND_ROWS: what it counted is read before the
    /// connection goes back.
    calcs_found_rows: bool,
    /// Its digest for the query statistics, read at its first execute while they are on
    /// (0: not yet).
    digest: u64,
}

/// What an execute needs of its statement once it is stored back.
struct Exec {
    proxy_id: u64,
    sql: Arc<[u8]>,
    class: Class,
    hinted: bool,
    own: Option<own::OwnQuery>,
    reads_last_insert_id: bool,
    calcs_found_rows: bool,
    /// Its digest for the query statistics (0: not read).
    digest: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn com_stmt_prepare(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let raw: Arc<[u8]> = payload[1..].into();
        let sql = String::from_utf8_lossy(&raw);
        if self.stmts.len() >= MAX_CLIENT_STATEMENTS {
            let err = err_payload(
                1461,
                b"42000",
                "Can't create more than max_prepared_stmt_count statements (switchyard)",
            );
            return self.send(1, &err).await;
        }
        let classifier = self.w.shared.classifier_mysql.load_full();
        let class = classifier.classify(&sql);
        let hinted = hints::leading_hint(&sql).is_some();
        self.note_pins(&sql, class);
        let fresh = match self.hold_for(class, hinted).await? {
            Held::Already => None,
            Held::Taken(want) => Some(want),
            Held::Refused => return Ok(()),
        };
        let context = self.parse_context();
        let proxy_id = self.w.stmts.intern(&context, &raw);
        let passed = self.bytes_down;
        let prepared = match self.prepare_on_backend(payload).await {
            Err(e) => {
                // On a replica that failed before answering: on another one, once.
                if !self.retry_read(e, fresh, passed).await? {
                    return Ok(());
                }
                self.prepare_on_backend(payload).await?
            }
            Ok(p) => p,
        };
        match prepared {
            Prepared::Ok {
                server_id,
                params,
                mut packets,
            } => {
                let conn = self.backend.as_mut().expect("held");
                let old = conn.prepared.insert(proxy_id, server_id);
                if let Some(old) = old.filter(|_| self.pinned != Some("cursor")) {
                    // The text's statement prepared before on this connection (by this
                    // client or another) is replaced: closed, or every prepare of a
                    // statement already there (Go's database/sql prepares and closes per
                    // query) would leave one more on the server, up to its
                    // max_prepared_stmt_count, past which it refuses every prepare. (With a
                    // cursor open the connection is the client's until it is reset.)
                    self.close_on_backend(old).await?;
                }
                self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
                let client_id = self.next_stmt;
                self.last_prepared = Some(client_id);
                self.stmts.insert(
                    client_id,
                    ClientStmt {
                        proxy_id,
                        context,
                        sql: raw.clone(),
                        params,
                        types: None,
                        class,
                        hinted,
                        classifier,
                        own: own::own_query(&sql),
                        reads_last_insert_id: own::mentions_last_insert_id(&sql),
                        calcs_found_rows: own::calcs_found_rows(&sql),
                        digest: 0,
                    },
                );
                // The client sees its own id in COM_STMT_PREPARE_OK.
                if let Some((_, first)) = packets.first_mut() {
                    if first.len() >= 5 {
                        first[1..5].copy_from_slice(&client_id.to_le_bytes());
                    }
                }
                for (seq, p) in packets {
                    codec::write_packet(&mut self.cout, seq, &p);
                }
                self.flush().await
            }
            Prepared::Err(packet) => {
                self.last_prepared = None;
                self.note_err_packet(&packet);
                self.cout.extend_from_slice(&packet);
                self.flush().await
            }
        }
    }

    pub(super) async fn com_stmt_execute(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let Some(client_id) = self
            .client_id(payload)
            .filter(|id| self.stmts.contains_key(id))
        else {
            return self.unknown_statement(payload).await;
        };
        let exec = match codec::parse_stmt_execute(payload) {
            Ok(e) => e,
            Err(e) => {
                let err = err_payload(1210, b"HY000", &format!("malformed COM_STMT_EXECUTE: {e}"));
                return self.send(1, &err).await;
            }
        };
        // Cursors stay on the connection (COM_STMT_FETCH reads them later).
        if exec.flags & 0x07 != 0 && self.pinned.is_none() {
            self.pinned = Some("cursor");
        }
        let mut rebuilt = Ok(Cow::Borrowed(&[][..]));
        let Some(stmt) = self.update_stmt(client_id, |stmt| {
            rebuilt = with_types(payload, stmt.params, &mut stmt.types);
        }) else {
            return self.unknown_statement(payload).await;
        };
        let rebuilt = match rebuilt {
            Ok(p) => p,
            Err(msg) => return self.send(1, &err_payload(1210, b"HY000", msg)).await,
        };
        if let Some(q) = &stmt.own {
            let local = self.backend.is_none() || self.own.answers_while_held(q);
            if local && exec.flags & 0x07 == 0 {
                return self.answer_own(q, true).await;
            }
        }
        // As for a text statement: FOUND_ROWS() after it is what it counted.
        self.own.calc_found_rows = stmt.calcs_found_rows;
        // What kind of statement it is, for the session changes its executes report.
        self.origin = Origin::of(stmt.class.reason);
        if self.refuse_write_on_replica(stmt.class).await? {
            return Ok(());
        }
        let fresh = match self.hold_for(stmt.class, stmt.hinted).await? {
            Held::Already => None,
            Held::Taken(want) => Some(want),
            Held::Refused => return Ok(()),
        };
        let passed = self.bytes_down;
        let ran = match self.run_execute(&stmt, &rebuilt).await {
            Err(e) => {
                // A read whose replica failed before answering goes to another one, once
                // (prepared there first).
                if !self.retry_read(e, fresh, passed).await? {
                    return Ok(());
                }
                self.run_execute(&stmt, &rebuilt).await?
            }
            Ok(ran) => ran,
        };
        if ran {
            self.after_statement(&stmt.sql);
        }
        Ok(())
    }

    /// Run the client's execute (`rebuilt`, with the client's statement id) of `stmt` on the
    /// held connection, preparing it there first if needed; false when the server refused to
    /// prepare it (the client got the ERR).
    async fn run_execute(&mut self, stmt: &Exec, rebuilt: &[u8]) -> Result<bool, SessionError> {
        let Some(server_id) = self.ensure_prepared(stmt.proxy_id, &stmt.sql).await? else {
            return Ok(false);
        };
        if stmt.reads_last_insert_id {
            self.sync_last_insert_id().await?;
        }
        self.long_data = false;
        self.long_data_fresh.clear();
        let t0 = self.stats_start();
        let r = self
            .forward_as(rebuilt, Some(server_id), Answer::Query)
            .await;
        let failed = r.is_err() || self.answered.1.is_some();
        self.count_statement(t0, stmt.digest, &stmt.sql, failed);
        r?;
        Ok(true)
    }

    pub(super) async fn com_stmt_send_long_data(
        &mut self,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        // No answer, also not on error.
        let Some(stmt) = self
            .client_id(payload)
            .and_then(|id| self.update_stmt(id, |_| ()))
        else {
            return Ok(());
        };
        if matches!(self.hold_for(stmt.class, stmt.hinted).await?, Held::Refused) {
            return Ok(());
        }
        if !self.long_data_fresh.contains(&stmt.proxy_id) {
            // The first piece for this statement's next execute. A server statement that
            // ran before (for this client or another: they are shared) is closed and
            // prepared anew: MariaDB 10.11 stores bytes of its own memory, not the data, in
            // a parameter sent as long data after an execute bound it as a number
            // (COM_STMT_RESET does not help).
            let conn = self.backend.as_mut().expect("held");
            if let Some(old) = conn.prepared.remove(&stmt.proxy_id) {
                self.close_on_backend(old).await?;
            }
            self.long_data_fresh.push(stmt.proxy_id);
        }
        let Some(server_id) = self.ensure_prepared(stmt.proxy_id, &stmt.sql).await? else {
            return Ok(());
        };
        let mut out = payload.to_vec();
        let _ = codec::set_stmt_id(&mut out, server_id);
        self.long_data = true;
        self.write_backend(&out).await
    }

    pub(super) async fn com_stmt_close(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        // No answer. The server statement stays on its connections for the next client that
        // prepares the same text.
        if let Some(id) = self.client_id(payload) {
            self.stmts.remove(&id);
            if self.last_prepared == Some(id) {
                self.last_prepared = None;
            }
        }
        Ok(())
    }

    pub(super) async fn com_stmt_reset(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let Some(stmt) = self.client_stmt(payload) else {
            return self.unknown_statement(payload).await;
        };
        let server_id = self
            .backend
            .as_ref()
            .and_then(|c| c.prepared.get(&stmt.proxy_id).copied());
        self.long_data = false;
        self.long_data_fresh.clear();
        match server_id {
            Some(id) => self.forward_as(payload, Some(id), Answer::Command).await,
            // Nothing of it is on any connection the client holds: nothing to reset.
            None => self.send(1, &ok_payload(self.caps, self.status)).await,
        }
    }

    pub(super) async fn com_stmt_fetch(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let Some(stmt) = self.client_stmt(payload) else {
            return self.unknown_statement(payload).await;
        };
        let server_id = self
            .backend
            .as_ref()
            .and_then(|c| c.prepared.get(&stmt.proxy_id).copied());
        let Some(id) = server_id else {
            let client_id = codec::stmt_id(payload).unwrap_or(0);
            let msg = format!("The statement ({client_id}) has no open cursor");
            let err = err_payload(1421, b"HY000", &msg);
            return self.send(1, &err).await;
        };
        self.forward_as(payload, Some(id), Answer::Fetch).await
    }

    /// What a server fixes when it prepares a statement, beyond its text: the default schema
    /// (which its table names resolve in), `sql_mode` (how it parses: ANSI_QUOTES,
    /// PIPES_AS_CONCAT, NO_BACKSLASH_ESCAPES, ...) and the character set and collation of its
    /// literals. A statement a connection prepared for one client is reused for another only
    /// when both agree on all of it.
    pub(super) fn parse_context(&self) -> Arc<str> {
        self.context_parts()
            .collect::<Vec<_>>()
            .join("\u{1}")
            .into()
    }

    /// The parts of [`Self::parse_context`].
    fn context_parts(&self) -> impl Iterator<Item = &str> {
        let var = |name: &str| {
            self.vars
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        [
            self.schema.as_deref().unwrap_or(""),
            var("sql_mode"),
            var("character_set_client"),
            var("character_set_connection"),
            var("collation_connection"),
        ]
        .into_iter()
    }

    /// Re-keys `stmt` when the client's parse context changed since it was prepared: it is
    /// prepared again, in the context now applied, on the connections it runs on.
    fn in_current_context(&mut self, stmt: &mut ClientStmt) {
        // Compared part by part: no allocation for an execute in the same context.
        if same_context(&stmt.context, self.context_parts()) {
            return;
        }
        let context = self.parse_context();
        stmt.proxy_id = self.w.stmts.intern(&context, &stmt.sql);
        stmt.context = context;
    }

    /// For a command that runs the client's statement `id`: the statement, after `f`
    /// updated it, brought to the current parse context and classified by the classifier in
    /// force, and stored back (the map keeps it whatever happens to the command). None when
    /// the client has no such statement.
    fn update_stmt(&mut self, id: u32, f: impl FnOnce(&mut ClientStmt)) -> Option<Exec> {
        let mut stmt = self.stmts.remove(&id)?;
        f(&mut stmt);
        self.in_current_context(&mut stmt);
        let classifier = self.w.shared.classifier_mysql.load();
        if !Arc::ptr_eq(&classifier, &stmt.classifier) {
            let sql = String::from_utf8_lossy(&stmt.sql);
            stmt.class = classifier.classify(&sql);
            stmt.hinted = hints::leading_hint(&sql).is_some();
            stmt.classifier = arc_swap::Guard::into_inner(classifier);
        }
        if stmt.digest == 0 && self.w.shared.metrics.queries.enabled() {
            let sql = String::from_utf8_lossy(&stmt.sql);
            stmt.digest =
                crate::router::digest::digest(&sql, crate::router::classify::Dialect::MySql);
        }
        let exec = Exec {
            digest: stmt.digest,
            proxy_id: stmt.proxy_id,
            sql: stmt.sql.clone(),
            class: stmt.class,
            hinted: stmt.hinted,
            own: stmt.own.clone(),
            reads_last_insert_id: stmt.reads_last_insert_id,
            calcs_found_rows: stmt.calcs_found_rows,
        };
        self.stmts.insert(id, stmt);
        Some(exec)
    }

    /// The client's statement id in `payload`, MariaDB's "last prepared" id resolved.
    pub(super) fn client_id(&self, payload: &[u8]) -> Option<u32> {
        match codec::stmt_id(payload)? {
            codec::MARIADB_LAST_PREPARED_STMT_ID => self.last_prepared,
            id => Some(id),
        }
    }

    fn client_stmt(&self, payload: &[u8]) -> Option<ClientStmt> {
        let id = self.client_id(payload)?;
        self.stmts.get(&id).cloned()
    }

    async fn unknown_statement(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let id = codec::stmt_id(payload).unwrap_or(0);
        // The server names the function of the command that named the statement.
        let function = match payload.first() {
            Some(&b) if b == Command::StmtFetch.byte() => "mysqld_stmt_fetch",
            Some(&b) if b == Command::StmtReset.byte() => "mysqld_stmt_reset",
            _ => "mysqld_stmt_execute",
        };
        let msg = format!("Unknown prepared statement handler ({id}) given to {function}");
        self.send(1, &err_payload(1243, b"HY000", &msg)).await
    }

    /// Hold a connection where a statement classified as `class` may run (`hinted`: it has
    /// a leading hint of its own). False when none could be had (the client has been told
    /// why).
    async fn hold_for(&mut self, class: Class, hinted: bool) -> Result<Held, SessionError> {
        if self.backend.is_some() {
            return Ok(Held::Already);
        }
        let want = match self.want_for_class(class, hinted) {
            Ok(w) => w,
            Err(e) => {
                let err = err_payload(1290, b"HY000", &format!("switchyard: {e}"));
                self.send(1, &err).await?;
                return Ok(Held::Refused);
            }
        };
        Ok(if self.acquire_or_tell(want).await? {
            Held::Taken(want)
        } else {
            Held::Refused
        })
    }

    /// The held connection's server id for `stmt`, preparing it there first if needed. None
    /// when the server refused (the client got the ERR as its command's answer).
    async fn ensure_prepared(
        &mut self,
        proxy_id: u64,
        sql: &[u8],
    ) -> Result<Option<u32>, SessionError> {
        if let Some(id) = self
            .backend
            .as_ref()
            .and_then(|c| c.prepared.get(&proxy_id).copied())
        {
            return Ok(Some(id));
        }
        // Boxed, as are the session's other rare waits (see [`Session::acquire`]).
        let prepare = Box::pin(self.prepare_here(proxy_id, sql));
        prepare.await
    }

    /// [`Self::ensure_prepared`] for a statement the held connection does not have yet.
    async fn prepare_here(
        &mut self,
        proxy_id: u64,
        sql: &[u8],
    ) -> Result<Option<u32>, SessionError> {
        let mut p = vec![Command::StmtPrepare.byte()];
        p.extend_from_slice(sql);
        match self.prepare_on_backend(&p).await? {
            Prepared::Ok { server_id, .. } => {
                let conn = self.backend.as_mut().expect("held");
                conn.prepared.insert(proxy_id, server_id);
                Ok(Some(server_id))
            }
            Prepared::Err(packet) => {
                self.note_err_packet(&packet);
                self.cout.extend_from_slice(&packet);
                self.flush().await?;
                Ok(None)
            }
        }
    }

    /// Send COM_STMT_PREPARE on the held connection and read its whole answer.
    async fn prepare_on_backend(&mut self, payload: &[u8]) -> Result<Prepared, SessionError> {
        self.write_backend(payload).await?;
        let (seq, first) = self.read_backend_payload().await?;
        if first.first() == Some(&codec::ERR_HEADER) {
            let mut p = BytesMut::new();
            codec::write_packet(&mut p, seq, &first);
            return Ok(Prepared::Err(p.to_vec()));
        }
        let ok = codec::parse_stmt_prepare_ok(&first)
            .map_err(|e| SessionError::Backend(format!("COM_STMT_PREPARE answer: {e}")))?;
        let mut packets = vec![(seq, first)];
        // Parameter and column definitions, each group ended by an EOF (the servers run
        // without CLIENT_DEPRECATE_EOF).
        let groups = [ok.params, ok.columns];
        for n in groups {
            if n == 0 {
                continue;
            }
            for _ in 0..=n {
                packets.push(self.read_backend_payload().await?);
            }
        }
        Ok(Prepared::Ok {
            server_id: ok.statement_id,
            params: ok.params,
            packets,
        })
    }

    /// A server's ERR (framed) answered a prepare: the client's last statement result.
    fn note_err_packet(&mut self, packet: &[u8]) {
        if let Some(e) = packet.get(4..).and_then(|p| codec::parse_err(p).ok()) {
            self.own.error(e.code, e.message);
        }
    }

    /// The held connection's status flags, asked with a COM_PING (after an ERR, which
    /// carries none, when the transaction state may have changed).
    /// (Boxed: see [`Session::acquire`].)
    pub(super) fn refresh_status(
        &mut self,
    ) -> Pin<Box<impl Future<Output = Result<(), SessionError>> + '_>> {
        Box::pin(self.ask_status())
    }

    async fn ask_status(&mut self) -> Result<(), SessionError> {
        self.status_stale = false;
        self.capture_own_results().await;
        self.write_backend(&[Command::Ping.byte()]).await?;
        let (_, p) = self.read_backend_payload().await?;
        let caps = self.backend.as_ref().map_or(0, |c| c.capabilities);
        let ok = codec::parse_ok(&p, caps)
            .map_err(|e| SessionError::Backend(format!("COM_PING answer: {e}")))?;
        self.note_status(ok.status);
        // The ping made the server's ROW_COUNT() 0.
        self.own.stale |= own::STALE_ROW_COUNT;
        Ok(())
    }

    /// COM_STMT_CLOSE of server statement `id` on the held connection (no answer).
    async fn close_on_backend(&mut self, id: u32) -> Result<(), SessionError> {
        let mut close = [0u8; 5];
        close[0] = Command::StmtClose.byte();
        close[1..].copy_from_slice(&id.to_le_bytes());
        self.write_backend(&close).await
    }

    async fn write_backend(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let conn = self.backend.as_mut().expect("a connection is held");
        let mut out = BytesMut::with_capacity(payload.len() + 4);
        codec::write_packet(&mut out, 0, payload);
        self.bytes_up += out.len() as u64;
        let r = tokio::time::timeout(INTERNAL_TIMEOUT * 6, conn.stream.write_all(&out)).await;
        match r {
            Ok(Ok(())) => Ok(()),
            _ => {
                conn.broken = true;
                conn.clean = false;
                Err(SessionError::Backend("writing to the server failed".into()))
            }
        }
    }

    /// One whole packet from the held connection: (sequence id, payload).
    async fn read_backend_payload(&mut self) -> Result<(u8, Vec<u8>), SessionError> {
        loop {
            if self.bin.len() >= 4 {
                let len = u32::from_le_bytes([self.bin[0], self.bin[1], self.bin[2], 0]) as usize;
                if self.bin.len() >= 4 + len {
                    let seq = self.bin[3];
                    let p = self.bin[4..4 + len].to_vec();
                    self.bin.advance(4 + len);
                    return Ok((seq, p));
                }
            }
            let conn = self.backend.as_mut().expect("a connection is held");
            crate::net::bufs::reserve(&mut self.bin, 8192);
            let n = tokio::time::timeout(INTERNAL_TIMEOUT * 6, conn.stream.read_buf(&mut self.bin))
                .await
                .map_err(|_| SessionError::Backend("no answer to COM_STMT_PREPARE".into()))?
                .map_err(|e| SessionError::Backend(e.to_string()))?;
            if n == 0 {
                return Err(SessionError::Backend("server closed the connection".into()));
            }
        }
    }
}

/// The answer to a COM_STMT_PREPARE.
/// Whether the session holds a connection for a statement (see `hold_for`).
enum Held {
    /// It held one before.
    Already,
    /// One was taken for this statement, for a read or a write.
    Taken(crate::cluster::Want),
    /// None could be had, and the client was told why.
    Refused,
}

enum Prepared {
    /// COM_STMT_PREPARE_OK and the definitions after it: (sequence id, payload) each.
    Ok {
        server_id: u32,
        params: u16,
        packets: Vec<(u8, Vec<u8>)>,
    },
    /// The server's ERR, framed.
    Err(Vec<u8>),
}

/// Whether `context` is `parts` joined by U+0001 (as [`Session::parse_context`] makes it).
fn same_context<'a>(context: &str, parts: impl Iterator<Item = &'a str>) -> bool {
    let mut rest = context.as_bytes();
    for (i, part) in parts.enumerate() {
        if i > 0 {
            match rest.split_first() {
                Some((1, r)) => rest = r,
                _ => return false,
            }
        }
        match rest.strip_prefix(part.as_bytes()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// What a server says of a COM_STMT_EXECUTE it cannot read (too short, or without
/// parameter types and none bound before): ER_WRONG_ARGUMENTS, 1210.
const WRONG_EXECUTE: &str = "Incorrect arguments to mysqld_stmt_execute";

/// A COM_STMT_EXECUTE payload that carries parameter types: the client's own if it sent them
/// (remembered in `types`), else the ones it sent last.
fn with_types<'p>(
    payload: &'p [u8],
    params: u16,
    types: &mut Option<Vec<u8>>,
) -> Result<Cow<'p, [u8]>, &'static str> {
    if params == 0 {
        return Ok(Cow::Borrowed(payload));
    }
    let n = usize::from(params);
    // command (1), id (4), flags (1), iteration count (4), null bitmap.
    let bitmap_end = 10 + n.div_ceil(8);
    let bound_at = bitmap_end;
    let Some(&bound) = payload.get(bound_at) else {
        return Err(WRONG_EXECUTE);
    };
    if bound == 1 {
        let t = payload
            .get(bound_at + 1..bound_at + 1 + 2 * n)
            .ok_or(WRONG_EXECUTE)?;
        if types.as_deref() != Some(t) {
            *types = Some(t.to_vec());
        }
        return Ok(Cow::Borrowed(payload));
    }
    let Some(t) = types.as_ref() else {
        // None sent yet for this statement: a server takes values that are all NULL (they
        // need no type) and refuses anything else. (Not left to the server: the statement
        // there may be shared with a client whose execute bound types.)
        let bitmap = &payload[10..bitmap_end];
        let all_null = (0..n).all(|i| bitmap[i / 8] & (1 << (i % 8)) != 0);
        return if all_null {
            Ok(Cow::Borrowed(payload))
        } else {
            Err(WRONG_EXECUTE)
        };
    };
    let mut out = Vec::with_capacity(payload.len() + t.len());
    out.extend_from_slice(&payload[..bound_at]);
    out.push(1);
    out.extend_from_slice(t);
    out.extend_from_slice(&payload[bound_at + 1..]);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_compare_part_by_part() {
        let parts = [
            "shop",
            "STRICT_TRANS_TABLES",
            "utf8mb4",
            "",
            "utf8mb4_general_ci",
        ];
        let joined = parts.join("\u{1}");
        assert!(same_context(&joined, parts.into_iter()));
        assert!(same_context("", [""].into_iter()));
        for other in [
            "shop\u{1}STRICT_TRANS_TABLES\u{1}utf8mb4\u{1}\u{1}utf8mb4_general_c",
            "shop\u{1}STRICT_TRANS_TABLES\u{1}utf8mb4\u{1}\u{1}utf8mb4_general_ci\u{1}",
            "shop\u{1}STRICT_TRANS_TABLES\u{1}utf8mb4\u{1}x\u{1}utf8mb4_general_ci",
            "shopSTRICT_TRANS_TABLES\u{1}utf8mb4\u{1}\u{1}utf8mb4_general_ci",
        ] {
            assert!(!same_context(other, parts.into_iter()), "{other:?}");
        }
    }

    #[test]
    fn executes_carry_the_last_types() {
        // id 5, no flags, iteration 1, 2 params: bitmap (1 byte), bound = 1, types, values.
        let mut first = vec![0x17, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 254, 0];
        first.extend_from_slice(&[7, 0, 0, 0, 1, b'x']);
        let mut types = None;
        assert_eq!(with_types(&first, 2, &mut types).unwrap(), first);
        assert_eq!(types.as_deref(), Some(&[3, 0, 254, 0][..]));
        let mut second = vec![0x17, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        second.extend_from_slice(&[8, 0, 0, 0, 1, b'y']);
        let rebuilt = with_types(&second, 2, &mut types).unwrap();
        let mut want = vec![0x17, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 254, 0];
        want.extend_from_slice(&[8, 0, 0, 0, 1, b'y']);
        assert_eq!(rebuilt, want);
        // No types known: refused as a server refuses it, unless every value is NULL.
        let mut none = None;
        assert_eq!(with_types(&second, 2, &mut none), Err(WRONG_EXECUTE));
        let mut nulls = second.clone();
        nulls[10] = 0b11;
        assert_eq!(with_types(&nulls, 2, &mut none).unwrap(), &nulls[..]);
        assert!(with_types(&[0x17, 5], 2, &mut none).is_err());
    }
}
