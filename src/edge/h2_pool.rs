//! HTTP/2 to the servers of a group with `protocol = "h2"`: one connection per server and
//! worker, its requests as streams. A stream the server says it did not process (one beyond
//! the last stream id of its GOAWAY, or one reset with REFUSED_STREAM: RFC 9113, 8.7) is sent
//! again, whatever its method, with its body: the body is kept as it goes out (up to
//! [`RESEND_BODY_BYTES`]) for that. gRPC servers end every connection after
//! `max_connection_age` with a GOAWAY, so under steady traffic some stream is always on its
//! way when one arrives.

use super::conn::{open, Limits, MaybeTls, SendError};
use super::upstream::{Server, UpBody};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The most of a request body kept for sending it again; a longer one is sent once.
pub const RESEND_BODY_BYTES: usize = 64 * 1024;

/// Sends of one request in all: the first and the resends of unprocessed streams.
const SENDS: u32 = 3;

/// The HTTP/2 connections of one worker (groups with `protocol = "h2"`): one per server,
/// shared by the requests to it as streams, driven by a task of the worker. A connection
/// unused for the group's `idle_timeout`, or closed, is replaced by a new one.
#[derive(Default)]
pub struct H2Pool {
    conns: Mutex<Conns>,
}

#[derive(Default)]
struct Conns {
    open: Vec<H2Conn>,
    /// Connections opened so far: the next one's id.
    opened: u64,
}

struct H2Conn {
    addr: SocketAddr,
    id: u64,
    send: SendRequest<Resendable>,
    used: Instant,
}

impl H2Pool {
    /// Send `req` (absolute URI, version HTTP/2) to `server` as a stream of its connection.
    pub async fn send(
        &self,
        server: &Server,
        req: http::Request<UpBody>,
        limits: &Limits,
    ) -> Result<http::Response<Incoming>, SendError> {
        let (head, body) = req.into_parts();
        let body = Resendable::new(body);
        let mut req = Some(http::Request::from_parts(clone_head(&head), body.again()));
        let mut pooled = self.take(server.addr, limits.idle_timeout);
        let mut sends = 0;
        loop {
            let reused = pooled.is_some();
            let (id, mut send) = match pooled.take() {
                Some(c) => c,
                None => {
                    let fresh = connect_h2(server, limits).await?;
                    self.keep(server.addr, fresh)
                }
            };
            // Waits for a stream slot when the server's concurrency limit is reached. A
            // pooled connection that fails here (the server said GOAWAY meanwhile) is
            // replaced: nothing of the request was sent yet.
            if let Err(e) = std::future::poll_fn(|cx| send.poll_ready(cx)).await {
                if !reused {
                    return Err(SendError::of(e));
                }
                self.forget(server.addr, id);
                continue;
            }
            sends += 1;
            let out = req
                .take()
                .unwrap_or_else(|| http::Request::from_parts(clone_head(&head), body.again()));
            let mut e = match send.try_send_request(out).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if sends >= SENDS {
                return Err(SendError::of(e.into_error()));
            }
            if let Some(back) = e.take_message() {
                // The connection closed before the request left (a GOAWAY that ended its
                // dispatch): sent as it is on another one.
                req = Some(back);
                self.forget(server.addr, id);
            } else {
                let err = e.into_error();
                match unprocessed(&err) {
                    Some(Unprocessed::GoAway) if body.can_resend() => self.forget(server.addr, id),
                    Some(Unprocessed::Refused) if body.can_resend() => {
                        pooled = Some((id, send));
                    }
                    _ => return Err(SendError::of(err)),
                }
                tracing::debug!(server = %server.addr, error = %err, "stream not processed: sent again");
            }
            if pooled.is_none() {
                pooled = self.take(server.addr, limits.idle_timeout);
            }
        }
    }

    /// The open connection to `addr`, if one is left; closed and idle ones (of every server)
    /// are dropped on the way.
    fn take(
        &self,
        addr: SocketAddr,
        idle_timeout: Duration,
    ) -> Option<(u64, SendRequest<Resendable>)> {
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.open.retain(|c| {
            !c.send.is_closed() && now.saturating_duration_since(c.used) < idle_timeout
        });
        let c = conns.open.iter_mut().find(|c| c.addr == addr)?;
        c.used = now;
        Some((c.id, c.send.clone()))
    }

    /// Drop connection `id` to `addr` if it is still kept (it takes no more streams); one
    /// a concurrent request opened since stays.
    fn forget(&self, addr: SocketAddr, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.open.retain(|c| c.addr != addr || c.id != id);
    }

    /// Keep `fresh` for `addr`, unless a concurrent request opened one first (then that one
    /// is used and `fresh` closes).
    fn keep(
        &self,
        addr: SocketAddr,
        fresh: SendRequest<Resendable>,
    ) -> (u64, SendRequest<Resendable>) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns
            .open
            .iter()
            .find(|c| c.addr == addr && !c.send.is_closed())
        {
            return (c.id, c.send.clone());
        }
        conns.opened += 1;
        let id = conns.opened;
        conns.open.push(H2Conn {
            addr,
            id,
            send: fresh.clone(),
            used: Instant::now(),
        });
        (id, fresh)
    }
}

/// The head of a request to send (again): what the edge sets (no extensions).
fn clone_head(head: &http::request::Parts) -> http::request::Parts {
    let mut r = http::Request::new(());
    *r.method_mut() = head.method.clone();
    *r.uri_mut() = head.uri.clone();
    *r.version_mut() = head.version;
    *r.headers_mut() = head.headers.clone();
    r.into_parts().0
}

/// How the server said it did not process a stream.
#[derive(Debug, PartialEq)]
enum Unprocessed {
    /// Its id is beyond the last stream id of the server's GOAWAY (given without an error),
    /// or it was opened after that GOAWAY arrived: the connection takes no more.
    GoAway,
    /// Reset with REFUSED_STREAM: the connection still takes others.
    Refused,
}

/// Whether `e` says the server did not process the stream (RFC 9113, 8.7). A GOAWAY that
/// carries an error is not counted: h2 gives the same error to every stream the connection's
/// end fails, processed or not.
fn unprocessed(e: &hyper::Error) -> Option<Unprocessed> {
    let h2e = std::error::Error::source(e)?.downcast_ref::<h2::Error>()?;
    if !h2e.is_remote() {
        return None;
    }
    match h2e.reason()? {
        h2::Reason::NO_ERROR if h2e.is_go_away() => Some(Unprocessed::GoAway),
        h2::Reason::REFUSED_STREAM if h2e.is_reset() => Some(Unprocessed::Refused),
        _ => None,
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that can be sent again: each send gets a handle ([`Resendable::again`])
/// that first gives what earlier handles took from the client's body, then takes the rest;
/// a handle of an earlier send fails from then on. A body with nothing in it needs none of
/// that.
enum Resendable {
    Empty,
    Kept {
        kept: Arc<Mutex<Kept>>,
        at: usize,
        send: u32,
    },
}

struct Kept {
    /// The client's body, from where the handles have taken it to.
    rest: UpBody,
    /// What was taken of it, in order (empty once `lost`).
    frames: Vec<KeptFrame>,
    bytes: usize,
    /// Taken to its end.
    ended: bool,
    /// More than [`RESEND_BODY_BYTES`] taken, or taking failed: it cannot be sent again.
    lost: bool,
    /// The send whose handle may take from `rest`.
    send: u32,
    hint: SizeHint,
}

enum KeptFrame {
    Data(Bytes),
    Trailers(http::HeaderMap),
}

impl Resendable {
    fn new(body: UpBody) -> Resendable {
        if body.is_end_stream() {
            return Resendable::Empty;
        }
        let hint = body.size_hint();
        Resendable::Kept {
            kept: Arc::new(Mutex::new(Kept {
                rest: body,
                frames: Vec::new(),
                bytes: 0,
                ended: false,
                lost: false,
                send: 0,
                hint,
            })),
            at: 0,
            send: 0,
        }
    }

    /// Whether a new handle would give the whole body.
    fn can_resend(&self) -> bool {
        match self {
            Resendable::Empty => true,
            Resendable::Kept { kept, .. } => !lock(kept).lost,
        }
    }

    /// A handle for the next send, from the start of the body.
    fn again(&self) -> Resendable {
        match self {
            Resendable::Empty => Resendable::Empty,
            Resendable::Kept { kept, .. } => {
                let mut k = lock(kept);
                k.send += 1;
                Resendable::Kept {
                    kept: kept.clone(),
                    at: 0,
                    send: k.send,
                }
            }
        }
    }
}

fn lock(k: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    k.lock().unwrap_or_else(|p| p.into_inner())
}

impl Body for Resendable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Resendable::Kept { kept, at, send } = self.get_mut() else {
            return Poll::Ready(None);
        };
        let mut k = lock(kept);
        if k.send != *send {
            return Poll::Ready(Some(Err("the body went to a later send".into())));
        }
        if let Some(f) = k.frames.get(*at) {
            *at += 1;
            return Poll::Ready(Some(Ok(match f {
                KeptFrame::Data(d) => Frame::data(d.clone()),
                KeptFrame::Trailers(t) => Frame::trailers(t.clone()),
            })));
        }
        if k.ended {
            return Poll::Ready(None);
        }
        let frame = match std::task::ready!(Pin::new(&mut k.rest).poll_frame(cx)) {
            None => {
                k.ended = true;
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                k.lost = true;
                k.frames = Vec::new();
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(f)) => f,
        };
        if !k.lost && Arc::strong_count(kept) == 1 {
            // The send has its answer (or gave up): no handle can come after this one.
            k.lost = true;
            k.frames = Vec::new();
        }
        if !k.lost {
            let keep = if let Some(d) = frame.data_ref() {
                k.bytes += d.len();
                Some(KeptFrame::Data(d.clone()))
            } else {
                frame.trailers_ref().map(|t| KeptFrame::Trailers(t.clone()))
            };
            if k.bytes > RESEND_BODY_BYTES {
                k.lost = true;
                k.frames = Vec::new();
            } else if let Some(f) = keep {
                k.frames.push(f);
                *at = k.frames.len();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Resendable::Empty => true,
            Resendable::Kept { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Resendable::Empty => SizeHint::with_exact(0),
            Resendable::Kept { kept, .. } => lock(kept).hint,
        }
    }
}

/// A new HTTP/2 connection to `server` (see [`open`]), its driver spawned on this worker.
/// Over TLS the server must have chosen "h2" by ALPN.
pub async fn connect_h2<B>(server: &Server, limits: &Limits) -> Result<SendRequest<B>, SendError>
where
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = open(server, limits).await?;
    if let MaybeTls::Tls(t) = &stream {
        if t.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} did not choose h2 by ALPN", server.addr),
            )));
        }
    }
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Broken(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Full};

    fn body(bytes: &'static [u8]) -> Resendable {
        Resendable::new(Either::Right(Full::new(Bytes::from_static(bytes))))
    }

    /// Everything a handle gives, as bytes (an error as `Err`).
    async fn read(h: Resendable) -> Result<Vec<u8>, String> {
        match h.collect().await {
            Ok(b) => Ok(b.to_bytes().to_vec()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn kept_frames(r: &Resendable) -> usize {
        match r {
            Resendable::Empty => 0,
            Resendable::Kept { kept, .. } => lock(kept).frames.len(),
        }
    }

    #[tokio::test]
    async fn a_later_send_gets_the_whole_body_and_an_earlier_handle_fails() {
        let r = body(b"hello");
        let mut first = r.again();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "hello");
        assert!(r.can_resend());
        assert_eq!(read(r.again()).await.unwrap(), b"hello");
        assert!(first.frame().await.unwrap().is_err());
        assert_eq!(read(r.again()).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn an_empty_body_keeps_nothing() {
        let r = body(b"");
        assert!(matches!(r, Resendable::Empty));
        assert_eq!(read(r.again()).await.unwrap(), b"");
        assert!(r.can_resend());
    }

    #[tokio::test]
    async fn a_body_longer_than_the_limit_is_sent_once() {
        static BIG: [u8; RESEND_BODY_BYTES + 1] = [7; RESEND_BODY_BYTES + 1];
        let r = body(&BIG);
        assert_eq!(read(r.again()).await.unwrap().len(), BIG.len());
        assert!(!r.can_resend());
        assert_eq!(kept_frames(&r), 0);
        static FITS: [u8; RESEND_BODY_BYTES] = [7; RESEND_BODY_BYTES];
        let r = body(&FITS);
        assert_eq!(read(r.again()).await.unwrap().len(), FITS.len());
        assert!(r.can_resend());
    }

    #[tokio::test]
    async fn nothing_is_kept_once_no_resend_can_come() {
        let r = body(b"hello");
        let mut h = r.again();
        drop(r);
        assert_eq!(
            h.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hello"
        );
        assert_eq!(kept_frames(&h), 0);
        let r = body(b"hello");
        let mut h = r.again();
        assert_eq!(
            h.frame().await.unwrap().unwrap().into_data().unwrap(),
            "hello"
        );
        assert_eq!(kept_frames(&h), 1);
    }
}
