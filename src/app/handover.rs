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
use serde_json::{json, Value};
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
    pub sockets: Mutex<Option<Vec<Offered>>>,
    /// Set once the listeners were handed over: shutdown skips `shutdown_grace` and leaves
    /// the Unix-domain socket files (the new process serves on them).
    pub handed_over: std::sync::atomic::AtomicBool,
}

impl Offer {
    /// Offer a TCP listener (a duplicate descriptor is kept).
    pub fn tcp(&self, role: &str, l: &std::net::TcpListener) -> std::io::Result<()> {
        let addr = l.local_addr()?.to_string();
        self.push(role, addr, l.try_clone()?.into())
    }

    pub fn unix(
        &self,
        role: &str,
        path: &Path,
        l: &std::os::unix::net::UnixListener,
    ) -> std::io::Result<()> {
        let addr = path.display().to_string();
        self.push(role, addr, l.try_clone()?.into())
    }

    fn push(&self, role: &str, addr: String, fd: OwnedFd) -> std::io::Result<()> {
        let role = role.to_owned();
        let mut s = self.sockets.lock().unwrap();
        s.get_or_insert_with(Vec::new)
            .push(Offered { role, addr, fd });
        Ok(())
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

fn message(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

fn parse(body: &[u8]) -> std::io::Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("handover: {e}")))
}

fn recv_json(s: &Socket) -> std::io::Result<Option<(Value, Vec<OwnedFd>)>> {
    match crate::net::handover::recv(s)? {
        Some((body, fds)) => Ok(Some((parse(&body)?, fds))),
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
    crate::net::handover::send(&link, &message(&json!({"op": "take"})), &[])?;
    let mut sockets = Vec::new();
    loop {
        let (v, fds) = recv_json(&link)?.ok_or_else(gone)?;
        match v["op"].as_str() {
            Some("sockets") => {
                let list = v["sockets"].as_array().cloned().unwrap_or_default();
                if list.len() != fds.len() {
                    anyhow::bail!("handover: {} sockets named, {} sent", list.len(), fds.len());
                }
                for (s, fd) in list.iter().zip(fds) {
                    let role = s["role"].as_str().unwrap_or_default().to_owned();
                    let addr = s["addr"].as_str().unwrap_or_default().to_owned();
                    sockets.push((role, addr, Some(fd)));
                }
            }
            Some("end") => {
                let odd = v["odd"].as_bool().unwrap_or(false);
                tracing::info!(
                    path = %path.display(),
                    sockets = sockets.len(),
                    "took over the listeners of the running process"
                );
                return Ok(Some(Inherited { sockets, odd, link }));
            }
            Some("refused") => anyhow::bail!(
                "the process at {} refused the handover: {}",
                path.display(),
                v["reason"].as_str().unwrap_or("no reason given")
            ),
            _ => anyhow::bail!("handover: unexpected message {v}"),
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
    ) -> anyhow::Result<Arc<crate::engine::RelayFn>> {
        let unused: Vec<_> = self
            .sockets
            .iter()
            .filter(|(_, _, fd)| fd.is_some())
            .map(|(role, addr, _)| format!("{role} {addr}"))
            .collect();
        if !unused.is_empty() {
            tracing::info!(
                ?unused,
                "listeners of the previous process not in this config close"
            );
        }
        crate::net::handover::send(&self.link, &message(&json!({"op": "ready"})), &[])?;
        let (v, _) = recv_json(&self.link)?.ok_or_else(gone)?;
        if v["op"] != "draining" {
            anyhow::bail!("handover: unexpected answer to ready: {v}");
        }
        Ok(relay_thread(self.link, on_gone)?)
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
    let v = match r {
        Relayed::PgCancel { pid, secret } => json!({"op": "cancel", "pid": pid, "secret": secret}),
        Relayed::MyKill {
            id,
            query_only,
            user,
        } => json!({"op": "kill", "id": id, "query": query_only, "user": user}),
    };
    crate::net::handover::send(link, &message(&v), &[])?;
    let Some((v, _)) = recv_json(link)? else {
        return Ok(RelayOutcome::Gone);
    };
    Ok(match v["outcome"].as_str() {
        Some("done") => RelayOutcome::Done,
        Some("not_owner") => RelayOutcome::NotOwner,
        Some("unknown") => RelayOutcome::Unknown,
        _ => RelayOutcome::Gone,
    })
}

/// Listen at `path` for a new process, on a thread of its own (not joined: it ends with the
/// process). Returns the path's socket file identity, so that shutdown removes the file only
/// if it is still this process's.
pub(super) fn serve(shared: Arc<Shared>, path: PathBuf) -> anyhow::Result<(u64, u64)> {
    let listener = crate::net::handover::listen(&path)
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
    let Some((v, _)) = recv_json(conn)? else {
        return Ok(false);
    };
    if v["op"] != "take" {
        anyhow::bail!("handover: unexpected request {v}");
    }
    let refuse = |reason: &str| -> anyhow::Result<bool> {
        tracing::warn!(reason, "handover refused");
        let v = json!({"op": "refused", "reason": reason});
        crate::net::handover::send(conn, &message(&v), &[])?;
        Ok(false)
    };
    if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return refuse("this process is shutting down");
    }
    if shared.lineage.predecessor().is_some() {
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
        Ok(()) => recv_json(conn),
        Err(e) => Err(e),
    };
    match ready {
        Ok(Some((v, _))) if v["op"] == "ready" => {}
        other => {
            shared.accept_paused.send_replace(false);
            return match other {
                Ok(None) => {
                    tracing::warn!("the new process left before it was ready; still serving");
                    Ok(false)
                }
                Ok(Some((v, _))) => Err(anyhow::anyhow!("handover: unexpected message {v}")),
                Err(e) => Err(e.into()),
            };
        }
    }
    shared
        .offer
        .handed_over
        .store(true, std::sync::atomic::Ordering::Relaxed);
    shared.offer.withdraw();
    crate::net::handover::send(conn, &message(&json!({"op": "draining"})), &[])?;
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
        let names: Vec<Value> = chunk
            .iter()
            .map(|s| json!({"role": s.role, "addr": s.addr}))
            .collect();
        let fds: Vec<_> = chunk.iter().map(|s| s.fd.as_raw_fd()).collect();
        let v = json!({"op": "sockets", "sockets": names});
        crate::net::handover::send(conn, &message(&v), &fds)?;
    }
    drop(guard);
    let v = json!({"op": "end", "odd": shared.lineage.is_odd()});
    crate::net::handover::send(conn, &message(&v), &[])
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
    while let Ok(Some((v, _))) = recv_json(&conn) {
        let outcome = match v["op"].as_str() {
            Some("cancel") => {
                let pid = v["pid"].as_i64().unwrap_or(0) as i32;
                let secret = v["secret"].as_i64().unwrap_or(0) as i32;
                match shared.pg.cancel.lookup(pid, secret) {
                    Some(route) => {
                        rt.block_on(route.cancel(Duration::from_secs(5)));
                        RelayOutcome::Done
                    }
                    None => RelayOutcome::Unknown,
                }
            }
            Some("kill") => {
                let id = v["id"].as_u64().unwrap_or(0) as u32;
                let query_only = v["query"].as_bool().unwrap_or(true);
                let user = v["user"].as_str().unwrap_or_default();
                shared.my.kill_as(id, query_only, user)
            }
            _ => RelayOutcome::Unknown,
        };
        let word = match outcome {
            RelayOutcome::Done => "done",
            RelayOutcome::NotOwner => "not_owner",
            RelayOutcome::Unknown => "unknown",
            RelayOutcome::Gone => "gone",
        };
        let v = json!({"outcome": word});
        if crate::net::handover::send(&conn, &message(&v), &[]).is_err() {
            return;
        }
    }
}
