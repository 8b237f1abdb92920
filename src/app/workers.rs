//! A worker thread's loop: its listeners (TCP and Unix sockets of both front ends), the
//! accepted connections balanced over the workers (handed once to the least loaded), and the
//! sweep of idle server connections (on the health thread).

use super::{Shared, Worker};
use crate::net::tls::ClientStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A client connection accepted by one worker and served by another: the socket (already
/// non-blocking, detached from the accepting thread's reactor), the peer, the connection id
/// and the protocol of the listener that accepted it.
pub(super) type Handoff = (crate::net::Accepted, crate::net::Peer, u64, Front);

/// Which front end serves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Front {
    Postgres,
    Mysql,
}

/// One worker's listening sockets (SO_REUSEPORT: every worker has its own; more than one per
/// address when a handover brought more sockets than there are workers).
pub(super) struct Listeners {
    pub(super) pg: Vec<std::net::TcpListener>,
    pub(super) my: Vec<std::net::TcpListener>,
    /// The front ends' Unix-domain sockets (every worker accepts on the same one).
    pub(super) pg_unix: Option<std::os::unix::net::UnixListener>,
    pub(super) my_unix: Option<std::os::unix::net::UnixListener>,
    /// Edge listeners by name.
    pub(super) edge: Vec<(Arc<str>, std::net::TcpListener)>,
    /// This worker's number.
    pub(super) index: usize,
}

/// Accept on any of the listeners; pending forever without one.
async fn accept(
    ls: &[tokio::net::TcpListener],
) -> std::io::Result<(ClientStream, crate::net::Peer)> {
    let (s, peer) = match ls {
        [] => std::future::pending().await,
        [l] => l.accept().await?,
        ls => {
            std::future::poll_fn(|cx| {
                for l in ls {
                    if let std::task::Poll::Ready(r) = l.poll_accept(cx) {
                        return std::task::Poll::Ready(r);
                    }
                }
                std::task::Poll::Pending
            })
            .await?
        }
    };
    let _ = s.set_nodelay(true);
    Ok((ClientStream::Plain(s), crate::net::Peer::Tcp(peer)))
}

/// Accept on an optional Unix-domain listener; pending forever without one.
async fn accept_unix(
    l: &Option<tokio::net::UnixListener>,
) -> std::io::Result<(ClientStream, crate::net::Peer)> {
    match l {
        Some(l) => {
            let (s, _) = l.accept().await?;
            Ok((ClientStream::Unix(s), crate::net::Peer::Local))
        }
        None => std::future::pending().await,
    }
}

pub(super) async fn run_worker(
    shared: Arc<Shared>,
    listeners: Listeners,
    conn_ids: Arc<std::sync::atomic::AtomicU64>,
) {
    let (handoff, mut handed) = tokio::sync::mpsc::unbounded_channel::<Handoff>();
    let worker = Arc::new(Worker {
        pg: Arc::new(crate::pg::worker::Worker::new(
            shared.engine.clone(),
            shared.pg.clone(),
        )),
        my: Arc::new(crate::mysql::worker::Worker::new(
            shared.engine.clone(),
            shared.my.clone(),
        )),
        load: AtomicUsize::new(0),
        handoff,
    });
    shared.workers.lock().unwrap().push(Arc::downgrade(&worker));
    // A reload that ran while this worker was being built: catch up.
    worker.pg.refresh();
    worker.my.refresh();
    let tracker = tokio_util::task::TaskTracker::new();
    let register = |ls: Vec<std::net::TcpListener>| -> Vec<_> {
        ls.into_iter()
            .map(|l| {
                tokio::net::TcpListener::from_std(l).expect("listener registers with the runtime")
            })
            .collect()
    };
    let (pg, my) = (register(listeners.pg), register(listeners.my));
    let register_unix = |l: Option<std::os::unix::net::UnixListener>| {
        l.map(|l| tokio::net::UnixListener::from_std(l).expect("listener registers"))
    };
    let (pg_unix, my_unix) = (
        register_unix(listeners.pg_unix),
        register_unix(listeners.my_unix),
    );
    if let Some(edge) = &shared.edge {
        for (name, l) in listeners.edge {
            let l = tokio::net::TcpListener::from_std(l).expect("listener registers");
            tracker.spawn(crate::edge::listener::serve(
                edge.clone(),
                name,
                l,
                listeners.index,
                shared.shutdown.clone(),
                shared.accept_paused.subscribe(),
                tracker.clone(),
            ));
        }
    }
    if !pg.is_empty() || !my.is_empty() {
        // While a new process takes the listeners over, connections wait in the accept queue
        // for it rather than being accepted here just before this process drains.
        let mut paused = shared.accept_paused.subscribe();
        loop {
            let accepting = !*paused.borrow_and_update();
            let (accepted, front) = tokio::select! {
                r = accept(&pg), if accepting => (r, Front::Postgres),
                r = accept(&my), if accepting => (r, Front::Mysql),
                r = accept_unix(&pg_unix), if accepting => (r, Front::Postgres),
                r = accept_unix(&my_unix), if accepting => (r, Front::Mysql),
                Ok(()) = paused.changed() => continue,
                // Counted in this worker's load by the worker that handed it over.
                Some((s, peer, id, front)) = handed.recv() => match s.register() {
                    Ok(stream) => {
                        tracker.spawn(serve_client(worker.clone(), stream, peer, id, front));
                        continue;
                    }
                    Err(e) => {
                        worker.load.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "handed-over connection did not register");
                        continue;
                    }
                },
                _ = shared.shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if let (ClientStream::Plain(s), Some(ka)) =
                        (&stream, shared.config().general.keepalive())
                    {
                        crate::net::set_keepalive(std::os::fd::AsFd::as_fd(s), &ka);
                    }
                    let id = conn_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(stream) = hand_over(&shared, &worker, stream, peer, id, front) {
                        worker.load.fetch_add(1, Ordering::Relaxed);
                        tracker.spawn(serve_client(worker.clone(), stream, peer, id, front));
                    }
                }
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    } else {
        shared.shutdown.cancelled().await;
    }
    // Stop listening now: a client that connects while the others drain is refused at once
    // instead of waiting in the accept queue until the drain ends.
    drop((pg, my, pg_unix, my_unix));
    tracker.close();
    let drain = shared.config().general.drain_timeout;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "drain timeout reached; closing remaining clients"
        );
    }
    // The idle server connections end with a goodbye, not a dropped socket.
    for c in worker.pg.clusters.load().all() {
        c.pools.iter().for_each(|p| p.close());
    }
    for c in worker.my.clusters.load().all() {
        c.pools.iter().for_each(|p| p.close());
    }
}

/// Every worker's idle server connections past `[pool] server_lifetime` or
/// `server_idle_timeout` are closed, once a second, until shutdown; each tick also advances
/// the pools' coarse clock. Runs on the health thread, so the workers' runtimes keep no timer
/// for it.
pub(super) async fn sweep_pools(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        crate::pool::tick();
        let mut closed = 0;
        for worker in shared.live_workers() {
            for c in worker.pg.clusters.load().all() {
                closed += c.pools.iter().map(|p| p.sweep()).sum::<usize>();
            }
            for c in worker.my.clusters.load().all() {
                closed += c.pools.iter().map(|p| p.sweep()).sum::<usize>();
            }
        }
        if closed > 0 {
            tracing::debug!(
                closed,
                "closed idle server connections (lifetime or idle timeout)"
            );
        }
    }
}

/// `[pool] query_timeout`: every client's statement clock is looked at ten times per limit
/// (at most every 500 ms, at least every 20 ms), and statements past it stopped; a client
/// whose server has not answered as long again (at least `QUERY_TIMEOUT_GRACE`) is
/// disconnected. Until shutdown. Runs on the health thread; with the limit off it only looks at the setting once
/// a second.
pub(super) async fn sweep_statements(shared: Arc<Shared>) {
    use std::time::Duration;
    loop {
        let limit = shared.engine.query_timeout_ms.load(Ordering::Relaxed);
        let every = if limit == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis((limit / 10).clamp(20, 500))
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        let limit = shared.engine.query_timeout_ms.load(Ordering::Relaxed);
        if limit == 0 {
            continue;
        }
        let now = shared.engine.clock_ms();
        let grace = limit.max(crate::config::QUERY_TIMEOUT_GRACE.as_millis() as u64);
        shared.pg.cancel.sweep_overdue(now, limit, grace);
        shared.my.sweep_overdue(now, limit, grace);
    }
}

/// `POST /reconnect` for the cluster named `name`: every worker's pools of it (shared and per
/// user, both protocols) stop reusing the connections open now; how many idle ones closed.
pub(crate) fn reconnect_cluster(shared: &Shared, name: &str) -> usize {
    let cfg = shared.config();
    let Some(database) = cfg
        .clusters
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.database.clone())
    else {
        return 0;
    };
    let mut closed = 0;
    for worker in shared.live_workers() {
        for c in worker.pg.clusters.load().of_database(&database) {
            closed += c.pools.iter().map(|p| p.reconnect()).sum::<usize>();
        }
        for c in worker.my.clusters.load().of_database(&database) {
            closed += c.pools.iter().map(|p| p.reconnect()).sum::<usize>();
        }
    }
    closed
}

/// Serve one client on this worker, which counted it in its load; uncount it at the end.
async fn serve_client(
    worker: Arc<Worker>,
    mut stream: ClientStream,
    mut peer: crate::net::Peer,
    id: u64,
    front: Front,
) {
    let counted = Arc::clone(&worker);
    let _slot = crate::Decrement(&counted.load);
    match proxied_peer(&worker, &mut stream, peer, front).await {
        Ok(p) => peer = p,
        Err(e) => {
            tracing::info!(conn = id, %peer, error = %e, "connection refused (proxy_protocol)");
            return;
        }
    }
    // Each protocol's session in a statement of its own: as temporaries of the match's
    // arms, both futures had room in the task side by side (6 KiB); as locals they share it.
    match front {
        Front::Postgres => {
            let session = crate::pg::startup::handle_client(worker.pg.clone(), stream, peer, id);
            session.await
        }
        Front::Mysql => {
            let session = crate::mysql::startup::handle_client(worker.my.clone(), stream, peer, id);
            session.await
        }
    }
}

/// With the front end's `proxy_protocol` on, take the PROXY header off a TCP connection
/// (within `client_login_timeout`) and return the client it names; a peer outside
/// `proxy_protocol_from`, or one without a valid header, is refused (the connection is then
/// dropped without a word: whatever answered would be in a protocol the peer is not
/// speaking). Clients of the Unix sockets send no header.
async fn proxied_peer(
    worker: &Worker,
    stream: &mut ClientStream,
    peer: crate::net::Peer,
    front: Front,
) -> Result<crate::net::Peer, String> {
    let (ClientStream::Plain(tcp), crate::net::Peer::Tcp(addr)) = (stream, peer) else {
        return Ok(peer);
    };
    let cfg = worker.pg.shared.config();
    let (on, from) = match front {
        Front::Postgres => cfg
            .postgres
            .as_ref()
            .map(|l| (l.proxy_protocol, &l.proxy_protocol_from[..])),
        Front::Mysql => cfg
            .mysql
            .as_ref()
            .map(|l| (l.proxy_protocol, &l.proxy_protocol_from[..])),
    }
    .unwrap_or((false, &[]));
    if !on {
        return Ok(peer);
    }
    let limit = cfg.general.client_login_timeout;
    let client = crate::net::proxy_protocol::accept(tcp, addr, from, limit).await?;
    Ok(crate::net::Peer::Tcp(client))
}

/// The kernel spreads connections over the workers' SO_REUSEPORT sockets by a hash of the
/// addresses, which leaves one worker with noticeably more clients than another (16 clients
/// on 2 workers often land 10 and 6, and each worker's pools are its own). A
/// worker that accepts a connection while another worker serves fewer clients hands it over
/// once; from then on the client and its backend connections live on that worker. The
/// receiving worker's load counts the connection from the moment it is sent, so a burst of
/// accepts spreads out. Returns the stream when this worker should serve it itself.
fn hand_over(
    shared: &Shared,
    me: &Arc<Worker>,
    stream: ClientStream,
    peer: crate::net::Peer,
    id: u64,
    front: Front,
) -> Option<ClientStream> {
    let Some(target) = pick_worker(me, &shared.live_workers()) else {
        return Some(stream);
    };
    let detached = match stream {
        ClientStream::Plain(s) => s.into_std().map(crate::net::Accepted::Tcp),
        ClientStream::Unix(s) => s.into_std().map(crate::net::Accepted::Unix),
        other => return Some(other),
    };
    let std_stream = match detached {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not detach an accepted connection");
            return None;
        }
    };
    target.load.fetch_add(1, Ordering::Relaxed);
    match target.handoff.send((std_stream, peer, id, front)) {
        Ok(()) => None,
        // The other worker is stopping: serve it here after all.
        Err(tokio::sync::mpsc::error::SendError((s, _, _, _))) => {
            target.load.fetch_sub(1, Ordering::Relaxed);
            s.register().ok()
        }
    }
}

/// The worker serving the fewest clients if it serves fewer than `me` (ties stay with `me`).
fn pick_worker(me: &Arc<Worker>, all: &[Arc<Worker>]) -> Option<Arc<Worker>> {
    let mine = me.load.load(Ordering::Relaxed);
    all.iter()
        .filter(|w| !Arc::ptr_eq(w, me))
        .map(|w| (w.load.load(Ordering::Relaxed), w))
        .filter(|(load, _)| *load < mine)
        .min_by_key(|(load, _)| *load)
        .map(|(_, w)| w.clone())
}
