//! The upstream's WebSocket echo endpoint (RFC 6455): the opening handshake, then frames
//! echoed back (fragmented messages joined, pings answered, limits enforced with the close
//! codes the RFC names).

use super::*;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// WebSocket frames with a larger payload are refused with close code 1009 (message too big).
const MAX_WS_FRAME: u64 = 1 << 20;

/// RFC 6455 section 1.3: appended to the client's key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// After sending a WebSocket close, read (and discard) what the client still sends for at
/// most this long, so the socket ends with FIN rather than a reset that could drop the close.
const WS_LINGER: Duration = Duration::from_secs(1);

/// Check an opening handshake (RFC 6455 section 4.2.1); returns the Sec-WebSocket-Accept
/// value or why the request is not a valid one.
fn ws_accept(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<String, &'static str> {
    fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    }
    if method != Method::GET {
        return Err("method must be GET");
    }
    if version != Version::HTTP_11 {
        return Err("websocket needs HTTP/1.1");
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err("missing Upgrade: websocket");
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err("Connection must contain upgrade");
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "13");
    if !version_ok {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or("missing Sec-WebSocket-Key")?;
    // The key must be base64 of 16 bytes.
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err("Sec-WebSocket-Key must be base64 of 16 bytes"),
    }
    Ok(accept_key(key))
}

/// base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2.
pub(super) fn accept_key(key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

pub(super) fn ws_handshake(shared: &Shared, mut req: Request<Incoming>) -> Response<UpBody> {
    let accept = match ws_accept(req.method(), req.version(), req.headers()) {
        Ok(a) => a,
        Err(why) => {
            let mut resp = shared.text(
                StatusCode::BAD_REQUEST,
                format!("bad websocket handshake: {why}\n"),
            );
            // RFC 6455 section 4.4: tell the client which version we speak.
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return resp;
        }
    };
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return shared.text(StatusCode::INTERNAL_SERVER_ERROR, "accept key\n");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = ws_session(TokioIo::new(upgraded)).await;
        }
    });
    let mut resp = shared.response(StatusCode::SWITCHING_PROTOCOLS, "", UpBody::empty());
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;

/// Echo frames until the client closes. Data frames go back one for one with the same
/// opcode and FIN bit, so fragmented messages come back fragmented the same way; the
/// payload is echoed byte for byte (no UTF-8 check: this is an echo, not a validator).
pub(super) async fn ws_session<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> io::Result<()> {
    let mut io = BufReader::new(io);
    let mut in_message = false;
    loop {
        let mut head = [0u8; 2];
        match io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let reserved = head[0] & 0x70;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        let is_control = opcode >= 0x8;
        let violation = reserved != 0 // no extension was negotiated
            || !masked // section 5.1: clients must mask
            || (is_control && (!fin || len > 125)) // section 5.5
            || !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG)
            || (opcode == OP_CONTINUATION && !in_message)
            || ((opcode == OP_TEXT || opcode == OP_BINARY) && in_message)
            || len > i64::MAX as u64; // section 5.2: the top bit of a 64-bit length is 0
        if violation {
            return close_and_linger(&mut io, Some(CLOSE_PROTOCOL_ERROR)).await;
        }
        if len > MAX_WS_FRAME {
            return close_and_linger(&mut io, Some(CLOSE_TOO_BIG)).await;
        }
        let mut mask = [0u8; 4];
        io.read_exact(&mut mask).await?;
        // len <= MAX_WS_FRAME, so this allocation is bounded.
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                in_message = !fin;
                write_frame(&mut io, fin, opcode, &payload).await?;
            }
            OP_PING => write_frame(&mut io, true, OP_PONG, &payload).await?,
            OP_PONG => {}
            _ => {
                // Close: answer with the client's status code (if any) and end.
                let code = match payload.len() {
                    0 => None,
                    1 => Some(CLOSE_PROTOCOL_ERROR),
                    _ => Some(u16::from_be_bytes([payload[0], payload[1]])),
                };
                return close_and_linger(&mut io, code).await;
            }
        }
    }
}

/// An unmasked server frame (section 5.2) with the shortest length encoding.
async fn write_frame<S: AsyncWrite + Unpin>(
    io: &mut S,
    fin: bool,
    opcode: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

/// Send a close frame, half-close, then drain the client's remaining bytes for a moment so
/// the connection ends with FIN and the close frame is not lost to a reset.
async fn close_and_linger<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    code: Option<u16>,
) -> io::Result<()> {
    let payload = code.map(u16::to_be_bytes);
    write_frame(
        io,
        true,
        OP_CLOSE,
        payload.as_ref().map_or(&[][..], |p| &p[..]),
    )
    .await?;
    let _ = io.shutdown().await;
    let _ = tokio::time::timeout(WS_LINGER, async {
        let mut buf = [0u8; 8192];
        let mut drained = 0usize;
        while drained < 4 * MAX_WS_FRAME as usize {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

/// A client's frame (masked, as RFC 6455 requires of clients), for tests of WebSocket
/// endpoints and of proxies in front of them.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_eof, get, h1, read_head, send, ws_connect, KEY};
    use super::*;
    use http_body_util::Full;

    async fn read_frame(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
        let b0 = s.read_u8().await.unwrap();
        let b1 = s.read_u8().await.unwrap();
        assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
        let len = match b1 & 0x7f {
            126 => u64::from(s.read_u16().await.unwrap()),
            127 => s.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.unwrap();
        (b0 & 0x80 != 0, b0 & 0x0f, payload)
    }
    #[tokio::test]
    async fn websocket_echo() {
        let up = HttpUpstream::start("ws").unwrap();
        let mut s = ws_connect(up.addr()).await;

        s.write_all(&client_frame(true, OP_TEXT, b"hello ws"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_TEXT, b"hello ws".to_vec())
        );

        let mid: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        s.write_all(&client_frame(true, OP_BINARY, &mid))
            .await
            .unwrap();
        assert_eq!(read_frame(&mut s).await, (true, OP_BINARY, mid));

        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        s.write_all(&client_frame(true, OP_BINARY, &big))
            .await
            .unwrap();
        let (fin, op, payload) = read_frame(&mut s).await;
        assert!(fin);
        assert_eq!(op, OP_BINARY);
        assert_eq!(payload, big);

        s.write_all(&client_frame(true, OP_PING, b"are you there"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_PONG, b"are you there".to_vec())
        );

        // A fragmented message with a ping in the middle comes back frame for frame.
        s.write_all(&client_frame(false, OP_TEXT, b"frag-"))
            .await
            .unwrap();
        s.write_all(&client_frame(true, OP_PING, b""))
            .await
            .unwrap();
        s.write_all(&client_frame(false, OP_CONTINUATION, b"ment"))
            .await
            .unwrap();
        s.write_all(&client_frame(true, OP_CONTINUATION, b"ed"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (false, OP_TEXT, b"frag-".to_vec())
        );
        assert_eq!(read_frame(&mut s).await, (true, OP_PONG, Vec::new()));
        assert_eq!(
            read_frame(&mut s).await,
            (false, OP_CONTINUATION, b"ment".to_vec())
        );
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_CONTINUATION, b"ed".to_vec())
        );

        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        s.write_all(&client_frame(true, OP_CLOSE, &close))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_CLOSE, 1000u16.to_be_bytes().to_vec())
        );
        assert_eq!(up.requests_for("/ws"), 1);
        assert_eq!(up.requests(), 1);
    }

    #[tokio::test]
    async fn websocket_limits_and_protocol_errors() {
        let up = HttpUpstream::start("ws").unwrap();

        // A frame announcing 2 MiB gets close 1009 without the server reading it all.
        let mut s = ws_connect(up.addr()).await;
        let mut head = vec![0x80 | OP_BINARY, 0x80 | 127];
        head.extend_from_slice(&(2u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        s.write_all(&head).await.unwrap();
        s.write_all(&[0u8; 1000]).await.unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_CLOSE, 1009u16.to_be_bytes().to_vec())
        );
        drop(s);

        // Unmasked client frame: protocol error 1002.
        let mut s = ws_connect(up.addr()).await;
        s.write_all(&[0x80 | OP_TEXT, 2, b'h', b'i']).await.unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_CLOSE, 1002u16.to_be_bytes().to_vec())
        );
        assert_eof(&mut s).await;

        // Continuation with no message started, and a reserved opcode: 1002 as well.
        for frame in [
            client_frame(true, OP_CONTINUATION, b"x"),
            client_frame(true, 0x3, b"x"),
        ] {
            let mut s = ws_connect(up.addr()).await;
            s.write_all(&frame).await.unwrap();
            assert_eq!(
                read_frame(&mut s).await,
                (true, OP_CLOSE, 1002u16.to_be_bytes().to_vec())
            );
        }

        // Client hangs up abruptly mid-frame; the server must carry on.
        let mut s = ws_connect(up.addr()).await;
        s.write_all(&[0x81, 0xFE]).await.unwrap();
        drop(s);
        let mut s = ws_connect(up.addr()).await;
        s.write_all(&client_frame(true, OP_TEXT, b"still up"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut s).await,
            (true, OP_TEXT, b"still up".to_vec())
        );
    }

    #[tokio::test]
    async fn websocket_bad_handshakes_get_400() {
        let up = HttpUpstream::start("ws").unwrap();
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("GET", good[1..].to_vec()),
            ("GET", vec![good[0], good[2], good[3]]),
            ("GET", vec![good[0], good[1], good[3]]),
            ("GET", vec![good[0], good[1], good[2]]),
            (
                "GET",
                vec![good[0], good[1], good[2], ("Sec-WebSocket-Version", "8")],
            ),
            (
                "GET",
                vec![good[0], good[1], ("Sec-WebSocket-Key", "c2hvcnQ="), good[3]],
            ),
            (
                "GET",
                vec![
                    good[0],
                    good[1],
                    ("Sec-WebSocket-Key", "!!not base64!!"),
                    good[3],
                ],
            ),
            ("GET", vec![("Upgrade", "h2c"), good[1], good[2], good[3]]),
            ("POST", good.to_vec()),
        ];
        let mut c = h1(up.addr()).await;
        for (method, headers) in cases {
            let mut req = Request::builder()
                .method(method)
                .uri("/ws")
                .header("host", "x");
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            let r = send(&mut c, req.body(Full::new(Bytes::new())).unwrap()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {headers:?}");
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
        // The server is still fine, and a forced status wins over the upgrade.
        assert_eq!(get(&mut c, "/x").await.status, StatusCode::OK);
        up.force_status(Some(502));
        let mut s = TcpStream::connect(up.addr()).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 502"));
    }
}
