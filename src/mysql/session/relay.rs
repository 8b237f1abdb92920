//! A command's answer on its way from the server to the client: streamed packet by packet,
//! never decoded row by row, with the status flags, session changes and own-statement
//! results it carries noted on the way, and the client watched meanwhile.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Send `payload` (a command) to the held connection and stream the answer back.
    pub(super) async fn forward(
        &mut self,
        payload: &[u8],
        answer: Answer,
    ) -> Result<(), SessionError> {
        self.forward_as(payload, None, answer).await
    }

    /// [`Self::forward`] of a COM_STMT_* command, with the server's statement id `stmt` in
    /// place of the client's when given.
    pub(super) async fn forward_as(
        &mut self,
        payload: &[u8],
        stmt: Option<u32>,
        answer: Answer,
    ) -> Result<(), SessionError> {
        // The server's errors name its statement id; the client knows its own.
        self.err_ids = stmt.and_then(|id| self.client_id(payload).map(|client| (id, client)));
        let conn = self.backend.as_mut().expect("a connection is held");
        // (Empty: it is cleared after each write.)
        let mut out = std::mem::take(&mut self.bout);
        codec::write_packet(&mut out, 0, payload);
        if let Some(id) = stmt {
            // The packet header is 4 bytes; a command of 16 MiB or more carries the id in
            // its first piece all the same.
            let _ = codec::set_stmt_id(&mut out[4..], id);
        }
        self.bytes_up += out.len() as u64;
        let written = conn.stream.write_all(&out).await;
        // Emptied: a session waiting for its client gives its empty buffers back
        // (`net::bufs`), and one that still held this command kept 16 KiB per idle client.
        out.clear();
        if out.capacity() <= 64 * 1024 {
            self.bout = out;
        }
        if let Err(e) = written {
            conn.clean = false;
            conn.broken = true;
            self.pass_back_refusal().await;
            return Err(SessionError::Backend(e.to_string()));
        }
        // `[pool] query_timeout`: the sweep stops a statement whose clock runs too long.
        let timed = self
            .w
            .shared
            .statement_start()
            .map(|now| self.slot.clock.start(now));
        let relayed = self.relay(answer).await;
        if timed.is_some() && self.slot.clock.stop() {
            self.cluster
                .metrics
                .error(crate::metrics::kind::QUERY_TIMEOUT);
        }
        let relayed = match relayed {
            Ok(()) if self.status_stale => self.refresh_status().await,
            r => r,
        };
        match relayed {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(c) = self.backend.as_mut() {
                    c.broken = true;
                    c.clean = false;
                }
                Err(e)
            }
        }
    }

    /// Stream one command's answer from the backend to the client, tracking status flags and
    /// session changes.
    pub(super) async fn relay(&mut self, answer: Answer) -> Result<(), SessionError> {
        let mut at = if answer == Answer::Fetch {
            At::Rows
        } else {
            At::First
        };
        let mut continued = false;
        let mut rows = 0u64;
        self.answered = (0, None);
        loop {
            let (header_len, payload_len, first) = self.next_backend_packet().await?;
            let wire = header_len + payload_len;
            // The rest of a packet of 16 MiB or more: passed on, never read as a new packet.
            let continues = payload_len == codec::MAX_PACKET_PAYLOAD;
            if std::mem::replace(&mut continued, continues) {
                self.pass(wire);
                continue;
            }
            let ended = match (at, answer) {
                (_, Answer::Single) => {
                    self.pass(wire);
                    true
                }
                (At::First, _) | (At::Next, _) => match first {
                    Some(codec::OK_HEADER) if answer != Answer::FieldList => {
                        let more = self.on_ok(wire, answer != Answer::Command)?;
                        self.result_ended();
                        at = At::Next;
                        !more
                    }
                    Some(codec::ERR_HEADER) => {
                        if self.killed_by_another(wire) {
                            return Ok(());
                        }
                        self.on_err(wire);
                        true
                    }
                    Some(codec::EOF_HEADER) if answer == Answer::FieldList && payload_len < 9 => {
                        // Column definitions are a result of sorts: ROW_COUNT() is -1 after.
                        self.own.row_count = -1;
                        self.on_eof(wire);
                        true
                    }
                    Some(codec::LOCAL_INFILE_HEADER) if answer == Answer::Query => {
                        // The servers are never told the client may send files; if one asks
                        // anyway, it gets an empty file.
                        self.pass_back_local_infile(wire).await?;
                        at = At::Next;
                        false
                    }
                    _ if answer == Answer::FieldList => {
                        self.pass(wire);
                        false
                    }
                    _ => {
                        // A result set: a column count.
                        let n = self.column_count(header_len, payload_len);
                        self.pass(wire);
                        at = At::Columns(n);
                        false
                    }
                },
                (At::Columns(n), _) => {
                    self.pass(wire);
                    at = if n <= 1 {
                        At::ColumnsEof
                    } else {
                        At::Columns(n - 1)
                    };
                    false
                }
                (At::ColumnsEof, _) => {
                    // The EOF after the column definitions (the servers run without
                    // CLIENT_DEPRECATE_EOF). An execute that opened a cursor ends here: its
                    // rows come with COM_STMT_FETCH.
                    let cursor = self
                        .eof_at_head(wire)
                        .is_some_and(|e| e.status & SERVER_STATUS_CURSOR_EXISTS != 0);
                    if cursor {
                        // No rows yet: as far as the server says, a result of none.
                        let warnings = self.eof_at_head(wire).map_or(0, |e| e.warnings);
                        self.own.result_set(0, warnings);
                        self.result_ended();
                        self.on_eof(wire);
                        true
                    } else {
                        self.pass(wire);
                        at = At::Rows;
                        false
                    }
                }
                (At::Rows, _) => match first {
                    Some(codec::EOF_HEADER) if payload_len < 9 => {
                        let warnings = self.eof_at_head(wire).map_or(0, |e| e.warnings);
                        self.own.result_set(std::mem::take(&mut rows), warnings);
                        self.result_ended();
                        let more = self.on_eof(wire);
                        at = At::Next;
                        !more
                    }
                    Some(codec::ERR_HEADER) => {
                        if self.killed_by_another(wire) {
                            return Ok(());
                        }
                        self.on_err(wire);
                        true
                    }
                    _ => {
                        rows += self.pass_rows(wire);
                        false
                    }
                },
            };
            if ended {
                return self.flush().await;
            }
            if self.cout.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
    }

    /// A statement of the command in flight completed (its OK, or its result set's EOF).
    fn result_ended(&mut self) {
        self.answered.0 += 1;
        if let Some(ends) = &mut self.result_ends {
            ends.push(std::time::Instant::now());
        }
    }

    /// Whether the ERR at the head of the backend buffer ends a statement stopped by another
    /// client's `KILL CONNECTION` (COM_PROCESS_KILL): then, as from a server, the client gets
    /// no answer, only the end of its connection (the session ends at its next command);
    /// the ERR is dropped.
    fn killed_by_another(&mut self, wire: usize) -> bool {
        if !self.slot.end.is_ended() {
            return false;
        }
        self.bin.advance(wire);
        if let Some(c) = self.backend.as_mut() {
            c.broken = true;
            c.clean = false;
        }
        true
    }

    /// After a write to the server failed: a server that refuses a command before reading
    /// all of it (a packet over its `max_allowed_packet`: 1153) answers ERR and closes, and
    /// that ERR, still readable after the reset, is the client's answer. Waits a second at
    /// most.
    async fn pass_back_refusal(&mut self) {
        let Some(conn) = self.backend.as_mut() else {
            return;
        };
        let read_err = async {
            loop {
                if self.bin.len() >= 4 {
                    let len = u32::from_le_bytes([self.bin[0], self.bin[1], self.bin[2], 0]);
                    let wire = 4 + len as usize;
                    if self.bin.len() >= wire {
                        return (self.bin.get(4) == Some(&codec::ERR_HEADER)).then_some(wire);
                    }
                }
                crate::net::bufs::reserve(&mut self.bin, 1024);
                match conn.stream.read_buf(&mut self.bin).await {
                    Ok(n) if n > 0 => {}
                    _ => return None,
                }
            }
        };
        if let Ok(Some(wire)) = tokio::time::timeout(Duration::from_secs(1), read_err).await {
            self.pass(wire);
            let _ = self.flush().await;
        }
    }

    /// Make sure a whole packet (or, for large rows, at least its header) is buffered:
    /// (header length, payload length, first payload byte).
    pub(super) async fn next_backend_packet(
        &mut self,
    ) -> Result<(usize, usize, Option<u8>), SessionError> {
        loop {
            if self.bin.len() >= 4 {
                let len = u32::from_le_bytes([self.bin[0], self.bin[1], self.bin[2], 0]) as usize;
                if self.bin.len() >= 4 + len.min(1) {
                    // Whole packets only: rows are forwarded as they are, and a packet up to
                    // 16 MiB is bounded.
                    if self.bin.len() >= 4 + len {
                        return Ok((4, len, self.bin.get(4).copied()));
                    }
                }
            }
            let conn = self.backend.as_mut().expect("a connection is held");
            crate::net::bufs::reserve(&mut self.bin, 16 * 1024);
            // The client is watched meanwhile: what it sends early (pipelining drivers) waits
            // in `cin`; a client that goes away has its statement and transaction stopped.
            let client_room = self.cin.len() < CLIENT_READ_AHEAD;
            // No timer here: a statement may run as long as it does directly, and arming one
            // per answer cost a wakeup of the runtime's driver per statement.
            let n = tokio::select! {
                r = conn.stream.read_buf(&mut self.bin) => {
                    r.map_err(|e| SessionError::Backend(e.to_string()))?
                }
                r = self.client.read_buf(&mut self.cin), if client_room => {
                    match r {
                        Ok(n) if n > 0 => continue,
                        Ok(_) => {
                            self.kill_held_connection();
                            return Err(SessionError::Client(PacketError::Closed));
                        }
                        Err(e) => {
                            self.kill_held_connection();
                            return Err(SessionError::ClientIo(e));
                        }
                    }
                }
            };
            if n == 0 {
                return Err(SessionError::Backend("server closed the connection".into()));
            }
        }
    }

    /// Queue the packet at the head of the backend buffer for the client, as it is.
    pub(super) fn pass(&mut self, wire: usize) {
        self.cout.extend_from_slice(&self.bin[..wire]);
        self.bin.advance(wire);
        self.bytes_down += wire as u64;
    }

    /// Queue the row packet of `wire` bytes at the head of the backend buffer and every whole
    /// row packet buffered after it, in one copy; how many. Stops before the end of the rows
    /// (an EOF or ERR), a packet not whole yet, and a packet of 16 MiB or more (the main
    /// loop takes those).
    fn pass_rows(&mut self, wire: usize) -> u64 {
        let mut end = wire;
        let mut n = 1;
        while let Ok(Some(h)) = codec::header(&self.bin[end..], codec::MAX_PACKET_PAYLOAD) {
            let first = match self.bin.get(end + codec::HEADER_LEN) {
                Some(&b) if h.payload_len > 0 => b,
                _ => break,
            };
            let ends_rows =
                (first == codec::EOF_HEADER && h.payload_len < 9) || first == codec::ERR_HEADER;
            if h.continues() || ends_rows || self.bin.len() < end + h.wire_len() {
                break;
            }
            end += h.wire_len();
            n += 1;
        }
        self.pass(end);
        n
    }

    pub(super) fn column_count(&self, header: usize, len: usize) -> u64 {
        match codec::read_lenenc(&self.bin[header..header + len]) {
            Ok((codec::LenEnc::Int(n), _)) => n,
            _ => 0,
        }
    }

    /// The EOF packet of `wire` bytes at the head of the backend buffer, parsed.
    fn eof_at_head(&self, wire: usize) -> Option<codec::EofPacket> {
        let caps = self
            .backend
            .as_ref()
            .map_or(CLIENT_PROTOCOL_41, |c| c.capabilities);
        codec::parse_eof(&self.bin[4..wire], caps).ok()
    }

    /// An EOF packet: note its status; true if more results follow.
    pub(super) fn on_eof(&mut self, wire: usize) -> bool {
        let status = self.eof_at_head(wire).map(|e| e.status);
        if let Some(status) = status {
            self.note_status(status);
            if status & SERVER_SESSION_STATE_CHANGED != 0
                && (self.caps & CLIENT_SESSION_TRACK == 0 || !self.track.tracks_state_change())
                && wire >= 9
            {
                // A client is told of changes only as far as it tracks them (the servers'
                // connections track them all for the proxy; an EOF carries no details, so
                // its flag is the state-change tracker's): EOF status at 7..9.
                let clear = (status & !SERVER_SESSION_STATE_CHANGED).to_le_bytes();
                self.bin[7..9].copy_from_slice(&clear);
            }
        }
        self.pass(wire);
        status.is_some_and(|s| s & SERVER_MORE_RESULTS_EXISTS != 0)
    }

    /// An OK packet: note its status and session changes; pass it on (without the session
    /// state for a client that did not ask for it). True if more results follow.
    pub(super) fn on_ok(&mut self, wire: usize, statement: bool) -> Result<bool, SessionError> {
        // The packet is read where it is: the buffer is set aside meanwhile (no copy).
        let bin = std::mem::take(&mut self.bin);
        let answer = self.on_ok_in(&bin[..wire], statement);
        self.bin = bin;
        // Not an OK packet after all: passed on as it is.
        let (more, queued) = answer.unwrap_or((false, false));
        if queued {
            self.bin.advance(wire);
        } else {
            self.pass(wire);
        }
        Ok(more)
    }

    /// [`Self::on_ok`] of the OK packet `packet` (header included): whether more results
    /// follow, and whether the client's version of it was queued here (rewritten; else it
    /// is passed on as it is); None when it does not read as an OK packet.
    fn on_ok_in(&mut self, packet: &[u8], statement: bool) -> Option<(bool, bool)> {
        let backend_caps = self.backend.as_ref().map_or(0, |c| c.capabilities);
        let seq = packet[3];
        let mut ok = codec::parse_ok(&packet[4..], backend_caps).ok()?;
        // A client that did not ask for session tracking gets neither the changes nor the
        // flag that says there are some.
        let untracked = self.caps & CLIENT_SESSION_TRACK == 0;
        let mut rewrite = untracked
            && (ok.session_state.is_some() || ok.status & SERVER_SESSION_STATE_CHANGED != 0);
        // A client that did: the changes its own tracking settings report, no more.
        let mut filtered = None;
        if let (false, Some(state)) = (untracked, ok.session_state) {
            let own = self.track.filter(state);
            if own.len() != state.len() {
                rewrite = true;
                filtered = Some(own);
            }
        }
        // A client that asked for CLIENT_FOUND_ROWS counts matched rows, not changed ones
        // (SQLAlchemy's optimistic version checks rely on it); the servers' connections are
        // shared, so they run without it and the count comes from the UPDATE's info string.
        let mut matched_rows = false;
        if self.caps & CLIENT_FOUND_ROWS != 0 {
            if let Some(matched) = rows_matched(ok.info) {
                if matched != ok.affected_rows {
                    ok.affected_rows = matched;
                    rewrite = true;
                    matched_rows = true;
                }
            }
        }
        self.note_status(ok.status);
        if statement {
            self.own
                .ok(ok.affected_rows, ok.last_insert_id, ok.warnings);
            if matched_rows {
                // The server's ROW_COUNT() is the changed rows; this client's, matched.
                self.own.stale |= own::STALE_ROW_COUNT;
            }
        } else {
            self.own.command_ok();
        }
        if ok.last_insert_id != 0 {
            if let Some(c) = self.backend.as_mut() {
                c.last_insert_id = Some(ok.last_insert_id);
            }
        }
        if let Some(state) = ok.session_state {
            self.note_session_changes(state);
        }
        let more = ok.status & SERVER_MORE_RESULTS_EXISTS != 0;
        if !rewrite {
            return Some((more, false));
        }
        if let Some(own) = &filtered {
            ok.session_state = Some(own);
        }
        if untracked || ok.session_state.is_some_and(<[u8]>::is_empty) {
            ok.status &= !SERVER_SESSION_STATE_CHANGED;
            ok.session_state = None;
        }
        // Framed in place: an OK packet is far below a packet's largest payload.
        let at = self.cout.len();
        self.cout.extend_from_slice(&[0, 0, 0, seq]);
        codec::put_ok(&mut self.cout, &ok, self.caps);
        let len = (self.cout.len() - at - codec::HEADER_LEN) as u32;
        self.cout[at..at + 3].copy_from_slice(&len.to_le_bytes()[..3]);
        self.bytes_down += packet.len() as u64;
        Some((more, true))
    }

    /// An ERR packet from the server: the client's last statement result; passed on, with
    /// the server's statement id in its message replaced by the client's.
    fn on_err(&mut self, wire: usize) {
        let payload = &self.bin[4..wire];
        let Ok(e) = codec::parse_err(payload) else {
            self.pass(wire);
            return;
        };
        self.own.error(e.code, e.message);
        self.answered.1 = Some(e.code);
        // An ERR carries no status. With autocommit off, a statement that failed may still
        // have opened a transaction (and kept its locks); a deadlock or lock wait timeout
        // may have rolled one back. The server is asked before anything relies on it.
        let autocommit_off = self.status & SERVER_STATUS_AUTOCOMMIT == 0;
        let in_tx = self.status & SERVER_STATUS_IN_TRANS != 0;
        if (autocommit_off && !in_tx) || (in_tx && matches!(e.code, 1205 | 1213)) {
            self.status_stale = true;
        }
        let mut renamed = self.err_ids.take().and_then(|(server, client)| {
            let from = format!("({server})");
            let message = String::from_utf8_lossy(e.message);
            (server != client && message.contains(&from))
                .then(|| message.replacen(&from, &format!("({client})"), 1))
        });
        // Interrupted by `[pool] query_timeout`: said so, as a server says so of its own
        // max_statement_time (the code stays KILL QUERY's).
        if e.code == 1317 && self.slot.clock.was_stopped() {
            let message = renamed.unwrap_or_else(|| String::from_utf8_lossy(e.message).into());
            renamed = Some(format!("{message} (query_timeout exceeded)"));
        }
        let renamed =
            renamed.map(|message| err_payload(e.code, &e.sql_state.unwrap_or(*b"HY000"), &message));
        match renamed {
            Some(p) => {
                let seq = self.bin[3];
                codec::write_packet(&mut self.cout, seq, &p);
                self.bin.advance(wire);
                self.bytes_down += wire as u64;
            }
            None => self.pass(wire),
        }
    }

    /// An OK or ERR the proxy answers with itself: what the client's next `ROW_COUNT()`,
    /// `@@warning_count` or `SHOW WARNINGS` reports.
    pub(super) fn note_own_answer(&mut self, payload: &[u8]) {
        // The server did not see it: what the answer changes is not the server's to say.
        match payload.first() {
            Some(&codec::OK_HEADER) => {
                self.own.command_ok();
                self.own.stale |= own::STALE_ROW_COUNT;
            }
            // COM_SET_OPTION's EOF: the server's ROW_COUNT() is -1 after it.
            Some(&codec::EOF_HEADER) => {
                self.own.row_count = -1;
                self.own.stale |= own::STALE_ROW_COUNT;
            }
            Some(&codec::ERR_HEADER) => {
                if let Ok(e) = codec::parse_err(payload) {
                    self.own.error(e.code, e.message);
                    self.own.stale |= own::STALE_ROW_COUNT | own::STALE_WARNINGS;
                }
            }
            _ => {}
        }
    }

    pub(super) fn note_status(&mut self, status: u16) {
        // Only the flags of the session are kept for the proxy's own answers. The rest
        // ("state changed", "no index used", "last row sent", "more results", ...) belong to
        // the one statement they came with: the server clears them for the next command.
        let status = status & SESSION_STATUS_FLAGS;
        self.status = status;
        if let Some(c) = self.backend.as_mut() {
            c.status = status;
        }
    }

    /// Session changes the server reported with an OK: replayed variables and the schema are
    /// kept for the client; anything else pins it. A "state changed" flag is explained by
    /// them only for SET / USE (see [`Origin`]): a routine that changes `time_zone` may also
    /// leave a user variable or a temporary table behind, which the server does not name.
    pub(super) fn note_session_changes(&mut self, state: &[u8]) {
        let mut explained = false;
        let mut changed = false;
        let (mut charset_connection, mut collation) = (false, false);
        for change in codec::session_changes(state) {
            let Ok(change) = change else { break };
            match change {
                codec::SessionChange::SystemVariable { name, value } => {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    let value = String::from_utf8_lossy(value).into_owned();
                    if name.starts_with("session_track_") {
                        self.track.note(&name, &value);
                    }
                    if INFORMATIONAL.contains(&name.as_str()) {
                        // Set by the server itself: the state change it flags is explained
                        // (not for a routine, which may have done more).
                        explained |= self.origin != Origin::Routine;
                        continue;
                    }
                    charset_connection |= name == "character_set_connection";
                    collation |= name == "collation_connection";
                    if REPLAYED.contains(&name.as_str()) {
                        set_var(&mut self.vars, name.clone(), value.clone());
                        if let Some(c) = self.backend.as_mut() {
                            set_var(&mut c.applied, name, value);
                        }
                        explained |= self.origin == Origin::SetOrUse;
                    } else if self.w.pool_mode == PoolMode::Transaction && self.pinned.is_none() {
                        tracing::debug!(variable = %name, "mysql client pinned: a session variable not applied elsewhere changed");
                        self.pinned = Some("session variable");
                    }
                }
                codec::SessionChange::Schema(s) => {
                    let s = String::from_utf8_lossy(s).into_owned();
                    self.schema = Some(s.clone());
                    if let Some(c) = self.backend.as_mut() {
                        c.schema = Some(s);
                    }
                    explained |= self.origin == Origin::SetOrUse;
                }
                codec::SessionChange::StateChange(_) => changed = true,
                _ => {}
            }
        }
        if charset_connection && !collation {
            // SET NAMES (or SET CHARACTER SET) changed the connection's collation too, which
            // MariaDB does not report: the one the statement named, or else the character
            // set's default, which setting character_set_connection alone gives.
            let vars = [
                Some(&mut self.vars),
                self.backend.as_mut().map(|c| &mut c.applied),
            ];
            let named = self.names_collations.pop_front().flatten();
            for v in vars.into_iter().flatten() {
                match &named {
                    Some(c) => set_var(v, "collation_connection".into(), c.clone()),
                    None => unset_var(v, "collation_connection"),
                }
            }
        }
        if changed
            && !explained
            && self.w.pool_mode == PoolMode::Transaction
            && self.pinned.is_none()
        {
            tracing::debug!("mysql client pinned: the server reported a session state change");
            self.pinned = Some("session state");
        }
    }

    /// A LOCAL INFILE request: answer the server with an empty file and pass on what it says.
    pub(super) async fn pass_back_local_infile(&mut self, wire: usize) -> Result<(), SessionError> {
        let seq = self.bin[3];
        self.bin.advance(wire);
        let conn = self.backend.as_mut().expect("held");
        let mut out = BytesMut::new();
        codec::write_packet(&mut out, seq.wrapping_add(1), &[]);
        conn.stream
            .write_all(&out)
            .await
            .map_err(|e| SessionError::Backend(e.to_string()))
    }
}

/// What a command's answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// OK, ERR, or result sets (possibly several).
    Query,
    /// OK or ERR of a command that is not a statement (COM_INIT_DB, COM_STMT_RESET): it
    /// leaves the last statement's warnings and counts as they were, but for ROW_COUNT().
    Command,
    /// COM_FIELD_LIST: column definitions up to an EOF, or ERR.
    FieldList,
    /// COM_STATISTICS: one packet.
    Single,
    /// COM_STMT_FETCH: rows up to an EOF, or ERR.
    Fetch,
}

/// Where in an answer the next packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    First,
    /// After a result that said more follow.
    Next,
    Columns(u64),
    ColumnsEof,
    Rows,
}

/// "Rows matched: 3  Changed: 0  Warnings: 0" (an UPDATE's OK info): the matched count.
fn rows_matched(info: &[u8]) -> Option<u64> {
    let rest = info.strip_prefix(b"Rows matched: ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_rows_come_from_the_info_string() {
        assert_eq!(
            rows_matched(b"Rows matched: 3  Changed: 0  Warnings: 0"),
            Some(3)
        );
        assert_eq!(
            rows_matched(b"Records: 3  Duplicates: 0  Warnings: 0"),
            None
        );
        assert_eq!(rows_matched(b""), None);
    }
}
