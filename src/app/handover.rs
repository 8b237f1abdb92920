//! Handing the listening sockets to a new process (`[general] handover_socket`): a binary
//! upgrade, or a change that needs a restart, with no connection refused or reset.
//!
//! The old process listens on the handover socket. A new process started with the same
//! `handover_socket` connects there first and asks for the listeners (`take`); the old one
//! sends each listening socket's descriptor (the same socket, so connections waiting in its
//! accept queue are not lost) with its role and address, and its parity. The new one serves
//! on those it is configured for (binding what else it needs), says `ready`, and the old one
//! stops accepting and drains as on SIGTERM; the new one then listens at the path. While the
//! old one drains, the new one relays to it the cancel requests and KILLs that name its
//! clients (the ids' parity bit tells whose they are) over the same connection.

use super::Shared;
use crate::engine::{RelayOutcome, Relayed};
use socket2::Socket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A listening socket the process may hand over: what it is for, where it is bound, and a
/// duplicate of its descriptor.
pub(super) struct Offered {
    pub role: String,
    pub addr: String,
    pub fd: OwnedFd,
}

/// What this process hands over when asked, until it has (or until it shuts down).
#[derive(Default)]
pub(super) struct Offer {
    /// Whether there is a handover socket (without one nothing is kept).
    pub on: std::sync::atomic::AtomicBool,
    pub sockets: Mutex<Option<Vec<Offered>>>,
    /// Set once the listeners were handed over: shutdown skips `shutdown_grace` and leaves
    /// the Unix-domain socket files (the new process serves on them).
    pub handed_over: std::sync::atomic::AtomicBool,
}

impl Offer {
    /// Offer a TCP listener (a duplicate descriptor is kept).
    pub fn tcp(&self, role: &str, l: &std::net::TcpListener) -> std::io::Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let addr = l.local_addr()?.to_string();
        self.push(role, addr, l.try_clone()?.into());
        Ok(())
    }

    pub fn unix(
        &self,
        role: &str,
        path: &Path,
        l: &std::os::unix::net::UnixListener,
    ) -> std::io::Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let addr = path.display().to_string();
        self.push(role, addr, l.try_clone()?.into());
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn push(&self, role: &str, addr: String, fd: OwnedFd) {
        let role = role.to_owned();
        let mut s = self.sockets.lock().unwrap();
        s.get_or_insert_with(Vec::new)
            .push(Offered { role, addr, fd });
    }

    /// Stop offering: the duplicates close, so listeners the workers drop are closed.
    pub fn withdraw(&self) {
        self.sockets.lock().unwrap().take();
    }
}

/// The listeners taken over from the previous process, and the connection to it.
pub(super) struct Inherited {
    sockets: Vec<(String, String, Option<OwnedFd>)>,
    /// The previous process's parity; this one takes the other.
    pub odd: bool,
    link: Socket,
}

/// A listening socket's role and address, as sent beside its descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Named {
    pub role: String,
    pub addr: String,
}

/// What a relayed request came to, as sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Done,
    NotOwner,
    Unknown,
}

/// The messages on the handover socket, one JSON object each (`op` names it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Message {
    /// New to old: hand over the listeners.
    Take,
    /// Old to new: these sockets, their descriptors beside the message, in order.
    Sockets { sockets: Vec<Named> },
    /// Old to new: that was all; the old process's parity.
    End { odd: bool },
    /// Old to new: no handover, and why.
    Refused { reason: String },
    /// New to old: serving now.
    Ready,
    /// Old to new: no longer accepting; draining.
    Draining,
    /// New to old: a PostgreSQL cancel request's key.
    Cancel { pid: i32, secret: i32 },
    /// New to old: a MySQL `KILL [QUERY]` by a client logged in as `user`.
    Kill { id: u32, query: bool, user: String },
    /// Old to new: what a relayed request came to.
    Answered { answer: Answer },
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a handover message serialises")
    }

    /// Any bytes: a message, or an error saying what is wrong with them.
    pub fn decode(body: &[u8]) -> std::io::Result<Message> {
        serde_json::from_slice(body).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("handover: {e}"))
        })
    }
}

fn send(s: &Socket, m: &Message, fds: &[std::os::fd::RawFd]) -> std::io::Result<()> {
    crate::net::handover::send(s, &m.encode(), fds)
}

fn recv(s: &Socket) -> std::io::Result<Option<(Message, Vec<OwnedFd>)>> {
    match crate::net::handover::recv(s)? {
        Some((body, fds)) => Ok(Some((Message::decode(&body)?, fds))),
        None => Ok(None),
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the process at the handover socket closed the connection",
    )
}

/// Ask the process listening at `path` for its listeners. `Ok(None)` when nobody listens
/// there (a first start).
pub(super) fn take(path: &Path) -> anyhow::Result<Option<Inherited>> {
    let Some(link) = crate::net::handover::connect(path)? else {
        return Ok(None);
    };
    link.set_read_timeout(Some(Duration::from_secs(30)))?;
    send(&link, &Message::Take, &[])?;
    let mut sockets = Vec::new();
    loop {
        let (m, fds) = match recv(&link) {
            Ok(got) => got.ok_or_else(gone)?,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                anyhow::bail!(
                    "the process at {} did not answer the handover within 30 s",
                    path.display()
                )
            }
            Err(e) => return Err(e.into()),
        };
        match m {
            Message::Sockets { sockets: names } => {
                if names.len() != fds.len() {
                    anyhow::bail!(
                        "handover: {} sockets named, {} sent",
                        names.len(),
                        fds.len()
                    );
                }
                for (n, fd) in names.into_iter().zip(fds) {
                    sockets.push((n.role, n.addr, Some(fd)));
                }
            }
            Message::End { odd } => {
                tracing::info!(
                    path = %path.display(),
                    sockets = sockets.len(),
                    "took over the listeners of the running process"
                );
                return Ok(Some(Inherited { sockets, odd, link }));
            }
            Message::Refused { reason } => anyhow::bail!(
                "the process at {} refused the handover: {reason}",
                path.display()
            ),
            m => anyhow::bail!("handover: unexpected message {m:?}"),
        }
    }
}

impl Inherited {
    /// The inherited TCP listeners for `role` at `want` (any port of the same address when
    /// `want`'s port is 0).
    pub fn take_tcp(
        &mut self,
        role: &str,
        want: std::net::SocketAddr,
    ) -> Vec<std::net::TcpListener> {
        let mut out = Vec::new();
        for (r, addr, fd) in &mut self.sockets {
            let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
                continue;
            };
            let fits = addr == want || (want.port() == 0 && addr.ip() == want.ip());
            if r == role && fits {
                if let Some(fd) = fd.take() {
                    let l = std::net::TcpListener::from(fd);
                    if l.set_nonblocking(true).is_ok() {
                        out.push(l);
                    }
                }
            }
        }
        out
    }

    /// The inherited Unix-domain listener for `role` at `path`.
    pub fn take_unix(
        &mut self,
        role: &str,
        path: &Path,
    ) -> Option<std::os::unix::net::UnixListener> {
        let want = path.display().to_string();
        let (_, _, fd) = self
            .sockets
            .iter_mut()
            .find(|(r, addr, fd)| r == role && *addr == want && fd.is_some())?;
        let l = std::os::unix::net::UnixListener::from(fd.take()?);
        l.set_nonblocking(true).ok()?;
        Some(l)
    }

    /// Tell the previous process this one serves now; it stops accepting and drains. The
    /// listeners this process was not configured for close here (the previous process's
    /// copies close as it stops accepting). Returns the way to relay cancels and KILLs to
    /// the previous process while it drains.
    pub fn ready(
        self,
        on_gone: impl FnOnce() + Send + 'static,
    ) -> anyhow::Result<Option<Arc<crate::engine::RelayFn>>> {
        let unused: Vec<_> = self
            .sockets
            .iter()
            .filter(|(_, _, fd)| fd.is_some())
            .map(|(role, addr, _)| format!("{role} {addr}"))
            .collect();
        hold_before_ready();
        // Unsent, the old process serves on (it accepts again once this one has gone).
        send(&self.link, &Message::Ready, &[])?;
        for (role, addr, fd) in &self.sockets {
            // A Unix-domain socket this config does not serve on: its file goes now (the old
            // process, handing over, leaves socket files to the new one).
            if fd.is_some() && role.ends_with("-unix") {
                let _ = std::fs::remove_file(addr);
            }
        }
        if !unused.is_empty() {
            tracing::info!(
                ?unused,
                "listeners of the previous process not in this config close"
            );
        }
        // Sent: the old process drains, whatever comes back; this one serves from now on
        // (without relaying, if the answer is not the one expected).
        match recv(&self.link) {
            Ok(Some((Message::Draining, _))) => {}
            other => {
                tracing::warn!(answer = ?other.map(|m| m.map(|(m, _)| m)), "unexpected answer to ready; cancels and KILLs for the previous process's clients are not relayed");
                return Ok(None);
            }
        }
        match relay_thread(self.link, on_gone) {
            Ok(relay) => Ok(Some(relay)),
            Err(e) => {
                tracing::warn!(error = %e, "cancels and KILLs for the previous process's clients are not relayed");
                Ok(None)
            }
        }
    }
}

/// Tests only (debug builds): `SWITCHYARD_TEST_HOLD_READY_MS` holds a new process that long
/// between serving on the listeners and telling the previous process, which widens the
/// window in which cancels and KILLs for the previous process's clients reach this one
/// before it has the way to relay them.
fn hold_before_ready() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("SWITCHYARD_TEST_HOLD_READY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

type Request = (Relayed, tokio::sync::oneshot::Sender<RelayOutcome>);

/// The thread that carries relayed requests to the previous process, one at a time; when
/// that process is gone (its end of the connection closes) it calls `on_gone` and ends.
fn relay_thread(
    link: Socket,
    on_gone: impl FnOnce() + Send + 'static,
) -> std::io::Result<Arc<crate::engine::RelayFn>> {
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    link.set_read_timeout(Some(Duration::from_secs(5)))?;
    std::thread::Builder::new()
        .name("switchyard-relay".into())
        .spawn(move || {
            use std::sync::mpsc::RecvTimeoutError;
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok((r, reply)) => {
                        let outcome = relay_one(&link, &r).unwrap_or(RelayOutcome::Gone);
                        let _ = reply.send(outcome);
                        if outcome == RelayOutcome::Gone {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !hung_up(&link) => {}
                    Err(_) => break,
                }
            }
            tracing::info!("the previous process has exited");
            on_gone();
        })?;
    let tx = Mutex::new(tx);
    Ok(Arc::new(move |r: Relayed| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let _ = tx.lock().unwrap().send((r, reply));
        answer
    }))
}

/// Whether the other end closed (nothing else arrives unasked on the link).
fn hung_up(link: &Socket) -> bool {
    let mut p = libc::pollfd {
        fd: link.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

fn relay_one(link: &Socket, r: &Relayed) -> std::io::Result<RelayOutcome> {
    let m = match r {
        Relayed::PgCancel { pid, secret } => Message::Cancel {
            pid: *pid,
            secret: *secret,
        },
        Relayed::MyKill {
            id,
            query_only,
            user,
        } => Message::Kill {
            id: *id,
            query: *query_only,
            user: user.clone(),
        },
    };
    send(link, &m, &[])?;
    Ok(match recv(link)? {
        Some((Message::Answered { answer }, _)) => match answer {
            Answer::Done => RelayOutcome::Done,
            Answer::NotOwner => RelayOutcome::NotOwner,
            Answer::Unknown => RelayOutcome::Unknown,
        },
        _ => RelayOutcome::Gone,
    })
}

/// Listen at `path` (bound beside it by [`crate::net::handover::listen_beside`] before this
/// process took the listeners over, so that what could fail did before) for a new process, on a thread of its own (not joined: it ends with the
/// process). Returns the path's socket file identity, so that shutdown removes the file only
/// if it is still this process's.
pub(super) fn serve(
    shared: Arc<Shared>,
    path: PathBuf,
    beside: crate::net::handover::Beside,
) -> anyhow::Result<(u64, u64)> {
    let listener = beside
        .publish(&path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (handover): {e}", path.display()))?;
    let id = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&path)?;
        (m.dev(), m.ino())
    };
    std::thread::Builder::new()
        .name("switchyard-handover".into())
        .spawn(move || {
            while let Ok((conn, _)) = listener.accept() {
                match offer(&shared, &conn) {
                    Ok(true) => {
                        // Nobody else may take over now; the new process listens at the path.
                        drop(listener);
                        serve_relays(&shared, conn);
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "a handover failed; still serving"),
                }
            }
        })?;
    Ok(id)
}

/// How long a new process has, after it got the listeners, to say it serves.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One new process asking: refuse, or send the listeners and wait for it to be ready (true:
/// this process then drains).
fn offer(shared: &Arc<Shared>, conn: &Socket) -> anyhow::Result<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some((m, _)) = recv(conn)? else {
        return Ok(false);
    };
    if m != Message::Take {
        anyhow::bail!("handover: unexpected request {m:?}");
    }
    let refuse = |reason: &str| -> anyhow::Result<bool> {
        tracing::warn!(reason, "handover refused");
        let reason = reason.to_owned();
        send(conn, &Message::Refused { reason }, &[])?;
        Ok(false)
    };
    if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return refuse("this process is shutting down");
    }
    if shared.lineage.has_predecessor() {
        return refuse(
            "the process this one took over from is still draining (its ids would collide); try again when it has exited",
        );
    }
    // Connections now wait in the accept queue for the new process.
    shared.accept_paused.send_replace(true);
    // The new process binds what else it needs and starts its workers; if it fails or
    // takes longer than READY_WITHIN, this one accepts again (and the new one, when it
    // finds the connection closed, exits).
    let sent = send_sockets(shared, conn);
    let ready = match sent.and_then(|()| conn.set_read_timeout(Some(READY_WITHIN))) {
        Ok(()) => recv(conn),
        Err(e) => Err(e),
    };
    match ready {
        Ok(Some((Message::Ready, _))) => {}
        other => {
            shared.accept_paused.send_replace(false);
            return match other {
                Ok(None) => {
                    tracing::warn!("the new process left before it was ready; still serving");
                    Ok(false)
                }
                Ok(Some((m, _))) => Err(anyhow::anyhow!("handover: unexpected message {m:?}")),
                Err(e) => Err(e.into()),
            };
        }
    }
    shared
        .offer
        .handed_over
        .store(true, std::sync::atomic::Ordering::Relaxed);
    shared.offer.withdraw();
    send(conn, &Message::Draining, &[])?;
    tracing::info!("listeners handed over to a new process; draining");
    // The same path as SIGTERM (main's signal thread calls Server::shutdown).
    // SAFETY: kill(2) on this process with a signal the process handles.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGTERM);
    }
    Ok(true)
}

/// Carry out the cancels and KILLs the new process relays, until it closes the connection
/// or this process exits.
fn send_sockets(shared: &Arc<Shared>, conn: &Socket) -> std::io::Result<()> {
    let guard = shared.offer.sockets.lock().unwrap();
    for chunk in guard
        .iter()
        .flatten()
        .collect::<Vec<_>>()
        .chunks(crate::net::handover::MAX_FDS)
    {
        let sockets = chunk
            .iter()
            .map(|s| Named {
                role: s.role.clone(),
                addr: s.addr.clone(),
            })
            .collect();
        let fds: Vec<_> = chunk.iter().map(|s| s.fd.as_raw_fd()).collect();
        send(conn, &Message::Sockets { sockets }, &fds)?;
    }
    drop(guard);
    let odd = shared.lineage.is_odd();
    send(conn, &Message::End { odd }, &[])
}

fn serve_relays(shared: &Arc<Shared>, conn: Socket) {
    let _ = conn.set_read_timeout(None);
    // A runtime with a thread of its own: what a KILL spawns (the KILL sent to the server)
    // runs there while this thread waits for the next request.
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchyard-relayed")
        .enable_all()
        .build()
    else {
        tracing::warn!("no runtime for relayed cancels; they are not carried out");
        return;
    };
    let _inside = rt.enter();
    while let Ok(Some((m, _))) = recv(&conn) {
        let answer = match m {
            Message::Cancel { pid, secret } => match shared.pg.cancel.lookup(pid, secret) {
                Some(route) => {
                    rt.block_on(route.cancel(Duration::from_secs(5)));
                    Answer::Done
                }
                None => Answer::Unknown,
            },
            Message::Kill { id, query, user } => match shared.my.kill_as(id, query, &user) {
                RelayOutcome::Done => Answer::Done,
                RelayOutcome::NotOwner => Answer::NotOwner,
                RelayOutcome::Unknown | RelayOutcome::Gone => Answer::Unknown,
            },
            _ => Answer::Unknown,
        };
        if send(&conn, &Message::Answered { answer }, &[]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_strangers_are_errors() {
        let all = [
            Message::Take,
            Message::Sockets {
                sockets: vec![Named {
                    role: "postgres".into(),
                    addr: "127.0.0.1:6432".into(),
                }],
            },
            Message::End { odd: true },
            Message::Refused {
                reason: "no".into(),
            },
            Message::Ready,
            Message::Draining,
            Message::Cancel {
                pid: 0x4000_0001,
                secret: -5,
            },
            Message::Kill {
                id: 0x8000_0002,
                query: true,
                user: "app".into(),
            },
            Message::Answered {
                answer: Answer::NotOwner,
            },
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        assert_eq!(Message::decode(br#"{"op":"take"}"#).unwrap(), Message::Take);
        for bad in [
            &br#"{"op":"give"}"#[..],
            br#"{"op":"end"}"#,
            br#"{"op":"kill","id":-1,"query":true,"user":"a"}"#,
            b"",
            b"\xff",
        ] {
            assert!(Message::decode(bad).is_err(), "{bad:?}");
        }
    }
}
