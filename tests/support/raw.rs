//! A raw PostgreSQL protocol client for tests that need exact control over which messages go
//! out in one write (pipelines without Sync, Flush, two Queries at once, Terminate while
//! pinned). Logs in with trust authentication only. Every read is bounded in time.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server message: type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse/NoticeResponse (`b'C'` SQLSTATE, `b'M'` message).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut i = 0;
        let b = &self.body;
        while i < b.len() && b[i] != 0 {
            let end = b[i + 1..].iter().position(|&c| c == 0)? + i + 1;
            if b[i] == code {
                return Some(String::from_utf8_lossy(&b[i + 1..end]).into_owned());
            }
            i = end + 1;
        }
        None
    }

    /// The values of a DataRow, as text (NULL as None).
    pub fn row(&self) -> Vec<Option<String>> {
        let b = &self.body;
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut out = Vec::with_capacity(n);
        let mut i = 2;
        for _ in 0..n {
            let len = i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            i += 4;
            if len < 0 {
                out.push(None);
            } else {
                let len = len as usize;
                out.push(Some(String::from_utf8_lossy(&b[i..i + len]).into_owned()));
                i += len;
            }
        }
        out
    }
}

/// Message builders (frontend).
pub mod msg {
    fn framed(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        framed(b'Q', &b)
    }

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.extend_from_slice(&0u16.to_be_bytes());
        framed(b'P', &b)
    }

    /// Bind with text parameters and text results.
    pub fn bind(portal: &str, stmt: &str, params: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        cstr(&mut b, stmt);
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for p in params {
            b.extend_from_slice(&(p.len() as i32).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        b.extend_from_slice(&0u16.to_be_bytes());
        framed(b'B', &b)
    }

    pub fn describe_portal(portal: &str) -> Vec<u8> {
        let mut b = vec![b'P'];
        cstr(&mut b, portal);
        framed(b'D', &b)
    }

    pub fn describe_statement(stmt: &str) -> Vec<u8> {
        let mut b = vec![b'S'];
        cstr(&mut b, stmt);
        framed(b'D', &b)
    }

    pub fn execute(portal: &str) -> Vec<u8> {
        execute_rows(portal, 0)
    }

    /// Execute that returns at most `rows` rows (0: all), then PortalSuspended.
    pub fn execute_rows(portal: &str, rows: i32) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        b.extend_from_slice(&rows.to_be_bytes());
        framed(b'E', &b)
    }

    pub fn close_statement(stmt: &str) -> Vec<u8> {
        let mut b = vec![b'S'];
        cstr(&mut b, stmt);
        framed(b'C', &b)
    }

    pub fn sync() -> Vec<u8> {
        framed(b'S', &[])
    }

    pub fn flush() -> Vec<u8> {
        framed(b'H', &[])
    }

    pub fn terminate() -> Vec<u8> {
        framed(b'X', &[])
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        framed(b'd', data)
    }

    pub fn copy_done() -> Vec<u8> {
        framed(b'c', &[])
    }

    /// Parse (unnamed), Bind, Describe, Execute of `sql` with text parameters, no Sync.
    pub fn extended(sql: &str, params: &[&str]) -> Vec<u8> {
        let mut v = parse("", sql);
        v.extend(bind("", "", params));
        v.extend(describe_portal(""));
        v.extend(execute(""));
        v
    }
}

/// A logged-in raw connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Parameters the server (or proxy) reported at login.
    pub params: Vec<(String, String)>,
}

const READ_LIMIT: Duration = Duration::from_secs(20);

impl Raw {
    /// Connect and log in (trust) with extra startup parameters.
    pub async fn connect(port: u16, user: &str, db: &str, extra: &[(&str, &str)]) -> Raw {
        Self::connect_with(port, user, db, extra, None).await
    }

    /// Like [`Raw::connect`], with a small socket receive buffer (`rcvbuf` bytes) to play a
    /// client that is slow to take what it is sent.
    pub async fn connect_with(
        port: u16,
        user: &str,
        db: &str,
        extra: &[(&str, &str)],
        rcvbuf: Option<u32>,
    ) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(n) = rcvbuf {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", db)].iter().chain(extra) {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            params: Vec::new(),
        };
        raw.send(&packet).await;
        loop {
            let m = raw.recv().await.expect("login answer");
            match m.tag {
                b'R' => assert_eq!(&m.body[..4], &[0, 0, 0, 0], "trust login expected"),
                b'S' => {
                    let mut parts = m.body.split(|&b| b == 0);
                    let k = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                    let v = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                    raw.params.push((k, v));
                }
                b'E' => panic!("login refused: {:?}", m.field(b'M')),
                b'Z' => return raw,
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or None when the connection closed or nothing came in time.
    pub async fn recv(&mut self) -> Option<Msg> {
        self.recv_within(READ_LIMIT).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let body = self.buf[5..1 + len].to_vec();
                    self.buf.drain(..1 + len);
                    return Some(Msg { tag, body });
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Messages up to and including the `n`th ReadyForQuery (panics if they do not come).
    pub async fn until_ready(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < n {
            let Some(m) = self.recv().await else {
                // A FATAL error ends the session: no ReadyForQuery follows.
                let fatal = out
                    .iter()
                    .any(|m: &Msg| m.tag == b'E' && m.field(b'S').as_deref() == Some("FATAL"));
                assert!(
                    fatal,
                    "no ReadyForQuery within {READ_LIMIT:?}: {}",
                    summary(&out)
                );
                return out;
            };
            if m.tag == b'Z' {
                seen += 1;
            }
            out.push(m);
        }
        out
    }

    /// Messages up to and including one with tag `tag`.
    pub async fn until_tag(&mut self, tag: u8) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await.unwrap_or_else(|| {
                panic!(
                    "no {:?} within {READ_LIMIT:?}: {}",
                    tag as char,
                    summary(&out)
                )
            });
            let done = m.tag == tag;
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Run a simple query; returns (rows, first error SQLSTATE).
    pub async fn simple(&mut self, sql: &str) -> (Vec<Vec<Option<String>>>, Option<String>) {
        self.send(&msg::query(sql)).await;
        let msgs = self.until_ready(1).await;
        split(&msgs)
    }

    /// The first column of the first row of `sql` (panics on error).
    pub async fn value(&mut self, sql: &str) -> Option<String> {
        let (rows, err) = self.simple(sql).await;
        assert!(err.is_none(), "{sql}: error {err:?}");
        rows.first().and_then(|r| r[0].clone())
    }
}

/// Rows and the first error SQLSTATE among `msgs`.
pub fn split(msgs: &[Msg]) -> (Vec<Vec<Option<String>>>, Option<String>) {
    let rows = msgs
        .iter()
        .filter(|m| m.tag == b'D')
        .map(Msg::row)
        .collect();
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| m.field(b'C'));
    (rows, err)
}

/// A short description of many messages: how many, and the last few (errors spelled out).
pub fn summary(msgs: &[Msg]) -> String {
    let tail: Vec<String> = msgs
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|m| match m.tag {
            b'E' | b'N' => format!("{}({:?})", m.tag as char, m.field(b'M')),
            t => (t as char).to_string(),
        })
        .collect();
    format!("{} messages, the last: {}", msgs.len(), tail.join(" "))
}
