//! How a session says goodbye: FATAL 57P01 when it is closed from outside (`POST
//! /clients/close`) or the process shuts down, the bounded last flush to the client, a
//! refused login, and the FATAL a session error ends with.

use super::*;

impl<C: AsyncRead + AsyncWrite + Unpin + Send> Session<C> {
    /// `POST /clients/close` ended the client: it is told as `pg_terminate_backend` tells a
    /// server's client (unless a row is half sent), then the session ends (a statement
    /// running is cancelled, a transaction rolled back with its connection).
    pub(super) async fn close_from_outside(&mut self) -> Result<(), SessionError> {
        tracing::info!(pid = self.key.pid, "client closed through the admin API");
        self.say_terminating(
            "terminating connection due to administrator command (switchyard: POST /clients/close)",
        )
        .await
    }

    /// Draining, and this client holds no server connection and has sent nothing more. One
    /// idle a while is told at once. One busy a moment ago is likely to send again soon (a
    /// pool about to check the connection, or the next transaction): the session waits for
    /// that (true: it came, see [`Session::drain_admits`]); told unasked only if nothing
    /// comes for [`crate::engine::DRAIN_IDLE_MS`] (false: the session ends).
    pub(super) async fn close_for_drain(&mut self) -> Result<bool, SessionError> {
        use tokio::io::AsyncReadExt;
        if let Some(rest) = crate::engine::drain_wait(self.idle_from) {
            self.flush_client().await;
            match tokio::time::timeout(rest, self.client.read_buf(&mut self.cin)).await {
                // The client left.
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(false),
                Ok(Ok(_)) => return Ok(true),
                Err(_) => {}
            }
        }
        self.close_for_shutdown().await?;
        Ok(false)
    }

    /// Draining, and this client, between transactions, has sent its next message: whether
    /// it runs. A pool's check of the connection (`SELECT 1`, an empty query) is answered
    /// with FATAL 57P01, so the pool replaces the connection (with one to the process that
    /// took the listeners over, after a handover); so is anything once the client has run
    /// one transaction since the drain began. That one runs: a check that passed just before
    /// the drain is followed by the transaction it was for.
    pub(super) fn drain_admits(&mut self) -> bool {
        let whole = match self.cin.get(1..5) {
            Some(len) => {
                let len = i32::from_be_bytes(len.try_into().expect("four bytes"));
                usize::try_from(len).is_ok_and(|len| self.cin.len() > len)
            }
            None => false,
        };
        if !whole {
            // Told when the message is whole (the read waits for the rest as for any).
            return true;
        }
        if !self.drain_allowance || first_is_ping(&self.cin) {
            return false;
        }
        self.drain_allowance = false;
        true
    }

    pub(super) async fn close_for_shutdown(&mut self) -> Result<(), SessionError> {
        tracing::debug!(tx = %(self.tx_status as char), held = self.backend.is_some(), "closing a client for shutdown");
        self.say_terminating("terminating connection: switchyard is shutting down")
            .await
    }

    /// FATAL 57P01 (admin shutdown) with `message`, unless a row is half sent, then what is
    /// queued for the client goes out; the session ends after.
    pub(super) async fn say_terminating(&mut self, message: &str) -> Result<(), SessionError> {
        if self.skip == 0 {
            codec::put_error(&mut self.cout, "FATAL", "57P01", message);
        }
        self.flush_client().await;
        Ok(())
    }

    /// Write what is queued for the client, bounded in time (a client that stopped reading
    /// does not hold the session open).
    pub(super) async fn flush_client(&mut self) {
        let cout = &self.cout;
        let client = &mut self.client;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            client.write_all(cout).await?;
            client.flush().await
        })
        .await;
        self.cout.clear();
    }

    /// Tell a client whose login could not get a backend why, and end the session.
    pub async fn refuse_login(mut self: Box<Self>, e: &SessionError) {
        let (code, msg) = match e {
            SessionError::Settings(m) => ("22023", format!("switchyard: {m}")),
            _ => return self.report_fatal(e).await,
        };
        codec::put_error(&mut self.cout, "FATAL", code, &msg);
        self.flush_client().await;
    }

    pub(super) async fn report_fatal(&mut self, e: &SessionError) {
        use crate::metrics::kind;
        match e {
            SessionError::BackendIo(_)
            | SessionError::BackendClosed
            | SessionError::BackendProtocol(_)
            | SessionError::InstallBroken(_) => self.cluster.metrics.error(kind::BACKEND_LOST),
            SessionError::ClientProtocol(_) => self.cluster.metrics.error(kind::CLIENT_PROTOCOL),
            SessionError::ClientStalled(_) => {
                self.cluster.metrics.error(kind::CLIENT_WRITE_TIMEOUT)
            }
            _ => {}
        }
        let (code, msg) = match e {
            // A client that reads nothing would not read this either.
            SessionError::ClientIo(_) | SessionError::ClientStalled(_) => return,
            SessionError::ClientProtocol(m) => ("08P01", format!("protocol violation: {m}")),
            SessionError::Checkout(CheckoutError::Timeout { .. }) => {
                ("53300", format!("switchyard: {e}"))
            }
            // The server's own code for a login it denied (28P01 ...).
            SessionError::Checkout(CheckoutError::Connect(
                c @ crate::pg::backend::ConnectError::Refused { code, .. },
            )) if c.login_denied() => (code.as_str(), format!("switchyard: {e}")),
            SessionError::Checkout(CheckoutError::Connect(
                crate::pg::backend::ConnectError::Credentials { .. },
            )) => ("28000", format!("switchyard: {e}")),
            SessionError::Checkout(_) => ("08006", format!("switchyard: {e}")),
            SessionError::ClusterRemoved(_) => ("3D000", format!("switchyard: {e}")),
            SessionError::Fenced(_) => ("08006", format!("switchyard: {e}")),
            SessionError::Paused(_) => ("57P03", format!("switchyard: {e}")),
            SessionError::IdleInTransaction(_) => ("25P03", format!("switchyard: {e}")),
            SessionError::IdleSession(_) => ("57P05", format!("switchyard: {e}")),
            _ => (
                "08006",
                format!("switchyard: lost the backend connection: {e}"),
            ),
        };
        codec::put_error(&mut self.cout, "FATAL", code, &msg);
        self.flush_client().await;
    }
}

/// Whether the first message in `cin` is a connection check: a simple query or a Parse of
/// `SELECT 1` or of nothing (the empty query pgjdbc's `isValid` sends).
fn first_is_ping(cin: &[u8]) -> bool {
    let Some((&tag, rest)) = cin.split_first() else {
        return false;
    };
    let body = match rest.get(4..) {
        Some(b) => b,
        None => return false,
    };
    let text = match tag {
        b'Q' => body,
        // Parse: the statement's name, then its text.
        b'P' => match body.iter().position(|&b| b == 0) {
            Some(end) => &body[end + 1..],
            None => return false,
        },
        _ => return false,
    };
    let text = match text.iter().position(|&b| b == 0) {
        Some(end) => &text[..end],
        None => return false,
    };
    let text = text.trim_ascii();
    let text = text.strip_suffix(b";").unwrap_or(text).trim_ascii();
    text.is_empty() || text.eq_ignore_ascii_case(b"select 1")
}

#[cfg(test)]
mod tests {
    use super::first_is_ping;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn pings_are_told_from_work() {
        assert!(first_is_ping(&msg(b'Q', b"SELECT 1\0")));
        assert!(first_is_ping(&msg(b'Q', b" select 1 ;\0")));
        assert!(first_is_ping(&msg(b'Q', b"\0")));
        assert!(first_is_ping(&msg(b'P', b"\0SELECT 1\0\0\0")));
        assert!(first_is_ping(&msg(b'P', b"s1\0select 1\0\0\0")));
        assert!(!first_is_ping(&msg(b'Q', b"SELECT 12\0")));
        assert!(!first_is_ping(&msg(b'Q', b"BEGIN\0")));
        assert!(!first_is_ping(&msg(
            b'P',
            b"\0INSERT INTO t VALUES (1)\0\0\0"
        )));
        assert!(!first_is_ping(&msg(b'B', b"\0\0")));
        assert!(!first_is_ping(b"Q\0\0"));
        assert!(!first_is_ping(b""));
    }
}
