//! Upgraded connections: HTTP/1.1 upgrades (WebSocket and others) and WebSockets over
//! HTTP/2 (RFC 8441) made into HTTP/1.1 upgrades upstream, then bytes copied both ways.

use super::headers;
use super::proxy::{error, RespBody, Streamed, UpstreamBody};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Whether `req` opens a WebSocket over HTTP/2 (RFC 8441's extended CONNECT).
pub(super) fn websocket_over_h2(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req.version() == Version::HTTP_2
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The HTTP/2 client's answer to its WebSocket CONNECT from the upstream's answer to the
/// HTTP/1.1 upgrade sent for it: 101 with the right `Sec-WebSocket-Accept` becomes 200 (the
/// stream is then the tunnel), with the subprotocol and extensions the server chose; another
/// answer passes as it is, but a 2xx other than 101 would open a tunnel nobody serves, so it
/// is a 502.
pub(super) fn websocket_over_h2_answer(
    mut resp: Response<UpstreamBody>,
    key: &str,
    on_client: Option<hyper::upgrade::OnUpgrade>,
) -> Response<RespBody> {
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if status.is_success() {
            return error(
                StatusCode::BAD_GATEWAY,
                "the upstream did not switch to WebSocket",
            );
        }
        let (mut parts, body) = resp.into_parts();
        parts.version = Version::HTTP_2;
        headers::remove_hop_by_hop(&mut parts.headers, false);
        headers::append_via(&mut parts.headers, headers::via_for(Version::HTTP_2));
        return Response::from_parts(parts, Either::Left(Streamed::plain(body)));
    }
    let accepted = resp
        .headers()
        .get(http::header::SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == headers::websocket_accept(key).as_bytes());
    if !accepted {
        return error(
            StatusCode::BAD_GATEWAY,
            "the upstream's Sec-WebSocket-Accept does not answer the key",
        );
    }
    if let Some(on_client) = on_client {
        let on_upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(on_client, on_upstream));
    }
    let mut out = Response::new(Either::Right(Full::new(Bytes::new())));
    *out.version_mut() = Version::HTTP_2;
    for name in [
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::header::SEC_WEBSOCKET_EXTENSIONS,
    ] {
        for v in resp.headers().get_all(&name) {
            out.headers_mut().append(name.clone(), v.clone());
        }
    }
    headers::append_via(out.headers_mut(), headers::via_for(Version::HTTP_2));
    out
}

/// Copy bytes both ways between an upgraded client connection and the upstream's.
pub(super) async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
