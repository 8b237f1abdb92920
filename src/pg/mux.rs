//! Multiplexed reads (opt-in: `[pool] multiplex_depth` > 0). A plain `SELECT` that a client
//! sends as a simple Query outside a transaction does not need a server connection of its
//! own: it is queued on a *lane*, a server connection that a few such statements from
//! different clients share. While the server works on one batch of a lane's statements, the
//! statements that arrive meanwhile gather and go out together as the next batch, with one
//! write. The server then reads several statements per wakeup and writes their answers at
//! once, and the proxy makes one write and one read on the server side for several
//! statements: that is where a 1:1 pooler and the server spend most of their time.
//! Multiplexing engages only under concurrency: a statement that meets no other statement
//! running in its cluster takes the ordinary path.
//!
//! Which statements: the session decides (see `Session::muxable`): one statement whose first
//! word is SELECT, classified as a plain read (no locking clause, no function that writes or
//! touches session state, no INTO), with nothing else pending and no transaction open.
//!
//! Batches: what a lane writes at once is one *batch*. A batch of one statement is the
//! client's own Query message. A batch of several is sent in the extended protocol, each
//! statement as Parse/Bind/Describe/Execute of the unnamed statement with text results, and
//! one Sync at the end: PostgreSQL then answers the whole batch with one ReadyForQuery, so it
//! reads the batch once and writes its answers once (it writes at every ReadyForQuery). The
//! answers are turned back into what a Query gets (RowDescription, DataRow..., CommandComplete,
//! ReadyForQuery: the same bytes) and passed on only at the batch's ReadyForQuery, when
//! its implicit transaction has ended. Within a batch the statements share that implicit
//! transaction. Under READ COMMITTED (the default) each still takes its own snapshot;
//! `now()` is the batch's start. If any statement of a batch fails, the batch's transaction
//! is rolled back and every statement of it runs again as a batch of its own. So a client
//! sees exactly the answer
//! its statement gets when run alone, and a SELECT with a side effect the classifier cannot
//! see (a user function that writes) is never answered from a rolled-back batch.
//!
//! Head-of-line blocking, bounded: a lane takes a new statement only while it has fewer than
//! `depth` outstanding and the statement its server runs has run for less than
//! [`HOL_LIMIT`]; otherwise a new lane opens (a connection from the same pool) or the
//! statement takes the ordinary path. A long statement holds up the other statements of its
//! batch (answers are passed on at the end of a batch). Statements queued for the next batch
//! are moved to the ordinary path by the next statement that finds the lane stuck.
//!
//! Cancel: a client's cancel of a statement the lane has not written yet answers it at once.
//! A written one cannot be cancelled on the shared connection: a CancelRequest stops whatever
//! the server runs when it arrives, which may already be the next client's statement. So the
//! lane is given up instead: the cancelled statement is answered as cancelled, every other
//! statement on the lane runs again on the ordinary path (they are reads), the connection is
//! closed, and only then is the CancelRequest sent to its server, to stop the work there
//! (no other statement can run on that connection any more).
//!
//! Failure: if the lane's connection fails or the server breaks the rules for a lane (leaves
//! a transaction open, starts COPY, reports a changed setting), every statement on it gets
//! [`Reply::Failed`] and the session runs it again on a connection of its own; it is a read,
//! so running it twice is harmless. An answer larger than [`MAX_ANSWER`] fails the same way
//! (answers are passed on whole, so the ordinary path streams the big ones).

use super::cancel::CancelTarget;
use super::codec;
use crate::metrics::MuxStats;
use crate::pg::backend::{PgPool, Pooled};
use crate::pool;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// A lane takes no new statement once its oldest outstanding one has run this long.
pub const HOL_LIMIT: Duration = Duration::from_millis(10);
/// A lane idle this long gives its connection back to the pool.
pub const IDLE: Duration = Duration::from_millis(250);
/// Largest answer passed on through a lane; a larger one fails the lane (see module docs).
pub const MAX_ANSWER: usize = 4 << 20;
/// Largest message accepted from a server on a lane.
const MAX_BACKEND_MESSAGE: usize = (1 << 30) + 64;

/// What a queued statement gets.
#[derive(Debug)]
pub enum Reply {
    /// Everything the server answered, up to and including ReadyForQuery.
    Answer(BytesMut),
    /// The lane failed before the whole answer arrived; the statement may or may not have
    /// run (it is a read: the session runs it again elsewhere).
    Failed,
}

/// A queued statement, as its session sees it.
pub struct Ticket {
    pub lane: Weak<Lane>,
    pub id: u64,
    pub reply: oneshot::Receiver<Reply>,
}

/// The lanes of one worker to one backend.
#[derive(Default)]
pub struct Mux {
    lanes: Mutex<Vec<Arc<Lane>>>,
    counts: Arc<Counts>,
}

/// Running totals for metrics.
#[derive(Default)]
struct Counts {
    statements: AtomicU64,
    batches: AtomicU64,
    reruns: AtomicU64,
}

/// One server connection shared by multiplexed statements.
pub struct Lane {
    st: Mutex<LaneState>,
    wake: Notify,
    /// The client settings applied on the connection (sessions with other settings do not
    /// use this lane).
    applied: Vec<(String, String)>,
    target: CancelTarget,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct LaneState {
    /// Queued, not written yet.
    unsent: VecDeque<Req>,
    /// Written, not answered in full yet; answers arrive in this order.
    inflight: VecDeque<Req>,
    /// Answered, waiting for the end of their batch (its ReadyForQuery), with their answers.
    done: Vec<(Req, BytesMut)>,
    /// A statement of the oldest batch failed.
    failed: bool,
    next_batch: u64,
    /// When the head of `inflight` became the statement the server works on.
    head_since: Option<Instant>,
    /// Takes no more statements (ending).
    closed: bool,
    /// A client cancelled a written statement: the lane ends (see the module docs).
    abandon: bool,
    next_id: u64,
}

struct Req {
    id: u64,
    /// The client's Query message.
    msg: Bytes,
    /// The batch it was written in.
    batch: u64,
    /// Runs as a batch of its own (it is being run again after its batch failed).
    solo: bool,
    reply: oneshot::Sender<Reply>,
    /// The client asked to cancel it.
    cancel: bool,
}

impl LaneState {
    /// All statements of the oldest batch are answered; its ReadyForQuery is due.
    fn committing(&self) -> bool {
        self.done.first().is_some_and(|(d, _)| {
            self.inflight
                .front()
                .is_none_or(|next| next.batch != d.batch)
        })
    }

    fn depth(&self) -> usize {
        self.unsent.len() + self.inflight.len() + self.done.len()
    }

    fn push(&mut self, msg: Bytes) -> (u64, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        self.unsent.push_back(Req {
            id,
            msg,
            batch: 0,
            solo: false,
            reply: tx,
            cancel: false,
        });
        (id, rx)
    }
}

impl Mux {
    /// Queue `msg` (one whole Query message) on a lane for clients with `settings`: a busy
    /// lane with room; else, if `contended` (other statements run on this backend now), an
    /// idle lane or a new one on an idle connection of `pool`. `None` otherwise: without
    /// concurrency there is nothing to batch, and the ordinary path is a little cheaper.
    pub async fn submit(
        self: &Arc<Self>,
        pool: &PgPool,
        settings: &[(String, String)],
        msg: Bytes,
        depth: usize,
        contended: bool,
        shutdown: &CancellationToken,
    ) -> Option<Ticket> {
        if let Some(t) = self.queue_on_open_lane(settings, &msg, depth, contended) {
            return Some(t);
        }
        if !contended {
            return None;
        }
        let mut conn = pool.checkout_now().await.ok().flatten()?;
        if conn.applied != settings {
            let sql = crate::pg::session::settings_sql(&conn.applied, settings);
            if conn
                .run_internal(&sql, Duration::from_secs(10))
                .await
                .is_err()
            {
                conn.clean = false;
                pool::release(conn);
                return None;
            }
            conn.applied = settings.to_vec();
        }
        conn.clean = false;
        let lane = Arc::new(Lane {
            st: Mutex::new(LaneState::default()),
            wake: Notify::new(),
            applied: settings.to_vec(),
            counts: self.counts.clone(),
            target: conn.cancel_target(),
        });
        let (id, reply) = lane.st.lock().unwrap().push(msg);
        self.lanes.lock().unwrap().push(lane.clone());
        tokio::spawn(drive(self.clone(), lane.clone(), conn, shutdown.clone()));
        Some(Ticket {
            lane: Arc::downgrade(&lane),
            id,
            reply,
        })
    }

    /// The open lane with the most outstanding statements among those that take one now:
    /// packing statements onto few lanes makes batches large (the point of multiplexing),
    /// and a lane's server process only ever works on one batch.
    fn queue_on_open_lane(
        &self,
        settings: &[(String, String)],
        msg: &Bytes,
        depth: usize,
        contended: bool,
    ) -> Option<Ticket> {
        let lanes = self.lanes.lock().unwrap();
        let mut now = None;
        let mut best: Option<(&Arc<Lane>, usize)> = None;
        let mut evicted = Vec::new();
        for lane in lanes.iter() {
            if lane.applied != settings {
                continue;
            }
            let mut st = lane.st.lock().unwrap();
            if st.closed {
                continue;
            }
            if let Some(since) = st.head_since {
                let now = *now.get_or_insert_with(Instant::now);
                if now.saturating_duration_since(since) >= HOL_LIMIT {
                    // Stuck behind a slow statement: take no more, and let the statements
                    // waiting for its next batch take the ordinary path instead.
                    evicted.extend(st.unsent.drain(..));
                    continue;
                }
            }
            let d = st.depth();
            if d >= depth || (d == 0 && !contended) || best.is_some_and(|(_, b)| b >= d) {
                continue;
            }
            best = Some((lane, d));
        }
        let ticket = best.map(|(lane, _)| {
            let (id, reply) = lane.st.lock().unwrap().push(msg.clone());
            lane.wake.notify_one();
            Ticket {
                lane: Arc::downgrade(lane),
                id,
                reply,
            }
        });
        drop(lanes);
        for req in evicted {
            let _ = req.reply.send(Reply::Failed);
        }
        ticket
    }

    /// What this worker's lanes to one backend did so far.
    pub fn stats(&self) -> MuxStats {
        MuxStats {
            statements: self.counts.statements.load(Relaxed),
            batches: self.counts.batches.load(Relaxed),
            reruns: self.counts.reruns.load(Relaxed),
            lanes: self.lanes.lock().unwrap().len() as u64,
        }
    }

    fn remove(&self, lane: &Arc<Lane>) {
        self.lanes.lock().unwrap().retain(|l| !Arc::ptr_eq(l, lane));
    }
}

impl Lane {
    /// A client cancels statement `id`. Not written yet: answered now as cancelled. Written:
    /// the lane is given up (see the module docs); its task answers the statement as
    /// cancelled and sends the CancelRequest once the connection is closed.
    pub fn cancel(&self, id: u64) {
        let mut st = self.st.lock().unwrap();
        if let Some(pos) = st.unsent.iter().position(|r| r.id == id) {
            let req = st.unsent.remove(pos).expect("position is in range");
            drop(st);
            let _ = req.reply.send(Reply::Answer(cancelled_answer()));
            return;
        }
        let st = &mut *st;
        let written = st
            .inflight
            .iter_mut()
            .chain(st.done.iter_mut().map(|(r, _)| r))
            .find(|r| r.id == id);
        if let Some(req) = written {
            req.cancel = true;
            st.abandon = true;
            self.wake.notify_one();
        }
    }
}

/// What PostgreSQL answers a Query that was cancelled.
fn cancelled_answer() -> BytesMut {
    let mut out = BytesMut::new();
    codec::put_error(
        &mut out,
        "ERROR",
        "57014",
        "canceling statement due to user request",
    );
    out.extend_from_slice(READY_IDLE);
    out
}

/// A lane's task: pipeline its statements until it has been idle for [`IDLE`], shutdown
/// begins, or the connection fails; then fail what is left and give the connection back
/// (clean only after an orderly end).
async fn drive(mux: Arc<Mux>, lane: Arc<Lane>, mut conn: Pooled, shutdown: CancellationToken) {
    let result = pump(&lane, &mut conn, &shutdown).await;
    if let Err(e) = &result {
        tracing::debug!(backend = %conn.addr, error = %e, "multiplexed connection closed");
    }
    let left: Vec<Req> = {
        let mut st = lane.st.lock().unwrap();
        st.closed = true;
        let mut left: Vec<Req> = st.done.drain(..).map(|(r, _)| r).collect();
        left.extend(st.inflight.drain(..));
        left.extend(st.unsent.drain(..));
        left
    };
    mux.remove(&lane);
    let mut cancel = false;
    for req in left {
        if req.cancel {
            cancel = true;
            let _ = req.reply.send(Reply::Answer(cancelled_answer()));
        } else {
            let _ = req.reply.send(Reply::Failed);
        }
    }
    conn.clean = result.is_ok();
    // Closed first, so that the cancel can stop nothing but abandoned work.
    pool::release(conn);
    if cancel {
        tokio::spawn(super::cancel::send_cancel(
            lane.target.clone(),
            Duration::from_secs(5),
        ));
    }
}

enum Io {
    Read,
    New,
}

/// Sync, ending a batch of several statements.
const SYNC: &[u8] = b"S\0\0\0\x04";
/// ReadyForQuery, idle: the end of every answer passed on.
const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";

/// One statement of a batch of several: Parse of the unnamed statement (no parameter types),
/// Bind of the unnamed portal (no parameters, text results), Describe and Execute it.
fn put_batched(out: &mut BytesMut, sql: &[u8]) {
    use bytes::BufMut;
    out.put_u8(b'P');
    out.put_i32((4 + 1 + sql.len() + 1 + 2) as i32);
    out.put_u8(0);
    out.put_slice(sql);
    out.put_u8(0);
    out.put_i16(0);
    out.put_slice(b"B\0\0\0\x0c\0\0\0\0\0\0\0\0");
    out.put_slice(b"D\0\0\0\x06P\0");
    out.put_slice(b"E\0\0\0\x09\0\0\0\0\0");
}

/// Move what is queued into batches in `out`: the statements running alone one by one, the
/// others together (one of them alone goes as its own Query).
fn write_batches(st: &mut LaneState, out: &mut BytesMut) -> u64 {
    let first = st.next_batch;
    let shared = st.unsent.iter().filter(|r| !r.solo).count();
    let shared_batch = st.next_batch;
    st.next_batch += 1;
    if shared > 1 {
        for req in st.unsent.iter_mut().filter(|r| !r.solo) {
            let m = &req.msg;
            put_batched(out, &m[5..m.len() - 1]);
            req.batch = shared_batch;
        }
        out.extend_from_slice(SYNC);
    }
    while let Some(mut req) = st.unsent.pop_front() {
        if req.solo || shared == 1 {
            req.batch = st.next_batch;
            st.next_batch += 1;
            out.extend_from_slice(&req.msg);
        }
        st.inflight.push_back(req);
    }
    // Answers come batch by batch: keep `inflight` in that order.
    st.inflight.make_contiguous().sort_by_key(|r| r.batch);
    st.next_batch - first - u64::from(shared <= 1)
}

async fn pump(
    lane: &Lane,
    conn: &mut crate::pg::backend::BackendConn,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut bout = BytesMut::with_capacity(4096);
    let mut bin = BytesMut::with_capacity(16 * 1024);
    // The answer to the head statement so far.
    let mut answer = BytesMut::with_capacity(1024);
    // One timer for the lane's life, re-armed only when it fires: arming a timer per idle
    // moment would cost a wakeup of the event loop (a system call) per statement.
    let mut last_active = Instant::now();
    let mut idle_timer = pin!(tokio::time::sleep(IDLE));
    loop {
        let idle = {
            let mut st = lane.st.lock().unwrap();
            if st.abandon {
                st.closed = true;
                return Err("a client cancelled a statement on it".into());
            }
            let busy = !st.inflight.is_empty() || !st.done.is_empty();
            // One batch at a time: what arrives while the server works on one waits for its
            // end and goes out as the next, so batches grow with load instead of every
            // statement going out alone as soon as it arrives.
            if !busy && !st.unsent.is_empty() {
                last_active = Instant::now();
                st.head_since = Some(last_active);
                let n = write_batches(&mut st, &mut bout);
                lane.counts.batches.fetch_add(n, Relaxed);
            }
            st.inflight.is_empty() && st.done.is_empty()
        };
        if idle {
            // Only an idle lane waits on a timer.
            let ended = tokio::select! {
                _ = lane.wake.notified() => false,
                _ = idle_timer.as_mut() => {
                    let due = last_active + IDLE;
                    if Instant::now() < due {
                        idle_timer.as_mut().reset(due.into());
                        false
                    } else {
                        true
                    }
                }
                _ = shutdown.cancelled() => true,
            };
            if ended {
                let mut st = lane.st.lock().unwrap();
                if st.unsent.is_empty() {
                    st.closed = true;
                    return if bin.is_empty() {
                        Ok(())
                    } else {
                        Err("server sent data while idle".into())
                    };
                }
            }
            continue;
        }
        let io = {
            let mut notified = pin!(lane.wake.notified());
            let stream = &mut conn.stream;
            poll_fn(|cx| {
                while !bout.is_empty() {
                    match std::pin::Pin::new(&mut *stream).poll_write(cx, &bout) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err("server closed".to_string())),
                        Poll::Ready(Ok(n)) => bout.advance(n),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_string())),
                        Poll::Pending => break,
                    }
                }
                bin.reserve(16 * 1024);
                match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut *stream), cx, &mut bin)
                {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err("server closed".to_string())),
                    Poll::Ready(Ok(_)) => return Poll::Ready(Ok(Io::Read)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_string())),
                    Poll::Pending => {}
                }
                if notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(Io::New));
                }
                Poll::Pending
            })
            .await?
        };
        if let Io::Read = io {
            take_answers(lane, &mut bin, &mut answer)?;
        }
    }
}

/// Handle every complete message in `bin`.
fn take_answers(lane: &Lane, bin: &mut BytesMut, answer: &mut BytesMut) -> Result<(), String> {
    while let Some(h) = codec::header(bin, MAX_BACKEND_MESSAGE).map_err(|e| e.to_string())? {
        if bin.len() < h.wire_len {
            break;
        }
        let msg = &bin[..h.wire_len];
        if !matches!(
            h.tag,
            b'Z' | b'S' | b'G' | b'H' | b'W' | b'd' | b'c' | b'A' | b's'
        ) {
            let mut st = lane.st.lock().unwrap();
            if st.committing() {
                // Every statement of the oldest batch is answered, so this comes from ending
                // its implicit transaction (a notice, or an error at commit): nobody's
                // answer holds it, and the batch runs again statement by statement.
                st.failed = true;
                drop(st);
                bin.advance(h.wire_len);
                continue;
            }
        }
        match h.tag {
            // ParseComplete, BindComplete, NoData: the extended protocol's own; a Query gets
            // none of them.
            b'1' | b'2' | b'n' => {}
            // CommandComplete, EmptyQueryResponse, ErrorResponse: the head statement is done.
            b'C' | b'I' | b'E' => {
                answer.extend_from_slice(msg);
                statement_done(lane, answer, h.tag == b'E')?;
            }
            b'Z' => {
                if msg.get(5) != Some(&b'I') {
                    return Err("a multiplexed statement left a transaction open".into());
                }
                batch_done(lane)?;
            }
            b'S' => {
                // A setting changed on a shared connection: end the lane (its statements
                // run again on connections of their own, where the change shows).
                return Err("a statement changed a server setting".into());
            }
            b'G' | b'H' | b'W' | b'd' | b'c' | b'A' | b's' => {
                return Err(format!(
                    "unexpected message {:?} on a multiplexed connection",
                    h.tag as char
                ))
            }
            _ => {
                answer.extend_from_slice(msg);
                if answer.len() > MAX_ANSWER {
                    return Err("answer too large to multiplex".into());
                }
            }
        }
        bin.advance(h.wire_len);
    }
    Ok(())
}

/// The head statement's answer is complete: it waits for the end of its batch; the next
/// statement is now the one the server works on.
fn statement_done(lane: &Lane, answer: &mut BytesMut, error: bool) -> Result<(), String> {
    let mut st = lane.st.lock().unwrap();
    let Some(req) = st.inflight.pop_front() else {
        return Err("server answered a statement nobody sent".into());
    };
    if error {
        st.failed = true;
    }
    st.done.push((req, std::mem::take(answer)));
    new_head(&mut st);
    Ok(())
}

/// The oldest batch ended (its ReadyForQuery): pass its answers on, or run its statements
/// again one by one if any of them failed.
fn batch_done(lane: &Lane) -> Result<(), String> {
    let mut st = lane.st.lock().unwrap();
    let batch = match (st.done.first(), st.inflight.front()) {
        (Some((r, _)), _) | (None, Some(r)) => r.batch,
        (None, None) => return Err("server ended a batch nobody sent".into()),
    };
    let failed = std::mem::take(&mut st.failed);
    let mut members: Vec<(Req, Option<BytesMut>)> =
        st.done.drain(..).map(|(r, a)| (r, Some(a))).collect();
    // After an error the server skips the rest of the batch: those got no answer.
    while st.inflight.front().is_some_and(|r| r.batch == batch) {
        let req = st.inflight.pop_front().expect("front exists");
        members.push((req, None));
    }
    if members.iter().any(|(_, a)| a.is_none()) {
        // The head was a skipped statement: the server works on the next batch now.
        new_head(&mut st);
    }
    let alone = members.len() == 1;
    let mut again = false;
    for (mut req, answer) in members {
        match answer {
            // A batch that went through, or a statement alone: its answer is the client's.
            Some(mut a) if !failed || alone => {
                a.extend_from_slice(READY_IDLE);
                lane.counts.statements.fetch_add(1, Relaxed);
                let _ = req.reply.send(Reply::Answer(a));
            }
            // A failed batch: each of its statements runs again alone.
            _ => {
                req.solo = true;
                st.unsent.push_back(req);
                lane.counts.reruns.fetch_add(1, Relaxed);
                again = true;
            }
        }
    }
    if st.inflight.is_empty() && st.done.is_empty() {
        st.head_since = None;
    }
    if again {
        lane.wake.notify_one();
    }
    Ok(())
}

/// Note that the head of `inflight` (if any) is now what the server runs.
fn new_head(st: &mut LaneState) {
    st.head_since = st.inflight.front().map(|_| Instant::now());
}

/// Feed `data` to a lane as a server's answers to four outstanding statements (one batch of
/// three and one alone), in two chunks: for the fuzz target `pg_mux_answers`. It must never
/// panic, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_answers(data: &[u8]) {
    let lane = Lane {
        st: Mutex::new(LaneState::default()),
        wake: Notify::new(),
        applied: Vec::new(),
        target: CancelTarget {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)).into(),
            pid: 1,
            secret: 1,
            tls: None,
        },
        counts: Arc::default(),
    };
    let mut replies = Vec::new();
    {
        let mut st = lane.st.lock().unwrap();
        for _ in 0..4 {
            replies.push(st.push(Bytes::from_static(b"Q\0\0\0\x0dSELECT 1\0")).1);
        }
        st.unsent[1].solo = true;
        write_batches(&mut st, &mut BytesMut::new());
    }
    let (mut bin, mut answer) = (BytesMut::new(), BytesMut::new());
    for chunk in data.chunks(data.len() / 2 + 1) {
        bin.extend_from_slice(chunk);
        if take_answers(&lane, &mut bin, &mut answer).is_err() {
            return;
        }
        let st = lane.st.lock().unwrap();
        assert!(st.depth() <= 4, "statements appeared from nowhere");
    }
}
