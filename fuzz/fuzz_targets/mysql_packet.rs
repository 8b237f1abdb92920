//! MySQL framing and every packet parser of `mysql::codec` on arbitrary bytes.
//!
//! The input is framed as a stream of logical packets (like a session reading a socket
//! buffer) under three limits; each complete payload then goes through every parser with
//! several capability sets. Wherever a parse succeeds, building the value again and parsing
//! that must give the same value. The primitives (length-encoded integers and strings) run on
//! the raw input as well.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::mysql::codec::*;

/// Limits a proxy would use: a small login limit, 64 KiB, and the 16 MiB - 1 + 1 boundary.
const MAXES: [usize; 3] = [1024, 64 << 10, MAX_PACKET_PAYLOAD + 1];

/// Capability sets: nothing, a plain 4.1 client, a modern MySQL 8 client, a MariaDB client.
const BASE_CAPS: [u64; 4] = [
    0,
    CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_TRANSACTIONS,
    CLIENT_PROTOCOL_41
        | CLIENT_SECURE_CONNECTION
        | CLIENT_TRANSACTIONS
        | CLIENT_PLUGIN_AUTH
        | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CLIENT_CONNECT_ATTRS
        | CLIENT_CONNECT_WITH_DB
        | CLIENT_SESSION_TRACK
        | CLIENT_DEPRECATE_EOF
        | CLIENT_QUERY_ATTRIBUTES
        | CLIENT_OPTIONAL_RESULTSET_METADATA
        | CLIENT_LONG_PASSWORD,
    CLIENT_PROTOCOL_41
        | CLIENT_SECURE_CONNECTION
        | CLIENT_TRANSACTIONS
        | CLIENT_PLUGIN_AUTH
        | CLIENT_SESSION_TRACK
        | MARIADB_CLIENT_PROGRESS
        | MARIADB_CLIENT_CACHE_METADATA
        | MARIADB_CLIENT_STMT_BULK_OPERATIONS,
];

fuzz_target!(|data: &[u8]| {
    // One more capability set taken from the input, so every flag combination is reachable.
    let mut caps = BASE_CAPS.to_vec();
    if let Some(tail) = data.last_chunk::<8>() {
        caps.push(u64::from_le_bytes(*tail));
    }
    primitives(data);
    // Parsers run once, under the largest limit; the smaller ones only exercise framing.
    for (i, max) in MAXES.into_iter().enumerate() {
        frames(data, max, (i == MAXES.len() - 1).then_some(&caps[..]));
    }
});

fn built(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut b = BytesMut::new();
    f(&mut b);
    b
}

fn primitives(data: &[u8]) {
    if let Ok((v, used)) = read_lenenc(data) {
        assert!((1..=9).contains(&used) && used <= data.len());
        if let LenEnc::Int(n) = v {
            let b = built(|b| put_lenenc_int(b, n));
            assert_eq!(b.len(), lenenc_int_len(n));
            assert!(b.len() <= used, "shortest form is longer than the input's");
            assert_eq!(read_lenenc(&b).unwrap(), (LenEnc::Int(n), b.len()));
        }
    }
    if let Ok((Some(s), used)) = read_lenenc_bytes(data) {
        assert!(used <= data.len() && s.len() < used);
        let b = built(|b| put_lenenc_bytes(b, s));
        assert_eq!(read_lenenc_bytes(&b).unwrap(), (Some(s), b.len()));
    }
    if let Some((s, rest)) = read_nul_bytes(data) {
        assert!(!s.contains(&0));
        assert_eq!(s.len() + 1 + rest.len(), data.len());
    }
}

fn frames(mut buf: &[u8], max: usize, caps: Option<&[u64]>) {
    loop {
        let f = match frame(buf, max) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        assert!(f.wire_len <= buf.len());
        assert!(f.payload_len <= max);
        assert_eq!(f.wire_len, f.payload_len + HEADER_LEN * f.packets);
        assert_eq!(f.packets, packet_count(f.payload_len));
        let chunks: usize = f.chunks(buf).map(<[u8]>::len).sum();
        assert_eq!(chunks, f.payload_len);
        let payload = f.payload(buf);
        assert_eq!(payload.len(), f.payload_len);

        // Renumbering to the same first id changes nothing; to another shifts every header.
        let mut copy = buf[..f.wire_len].to_vec();
        assert_eq!(set_seq(&mut copy, &f, f.seq), f.next_seq());
        assert_eq!(copy, &buf[..f.wire_len]);
        let next = set_seq(&mut copy, &f, f.seq.wrapping_add(7));
        assert_eq!(next, f.next_seq().wrapping_add(7));

        // Re-framing the payload gives the same frame shape.
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, f.seq, &payload), f.next_seq());
        assert_eq!(&out[..], &buf[..f.wire_len]);

        for &c in caps.unwrap_or_default() {
            packet(&payload, c);
        }
        buf = &buf[f.wire_len..];
    }
}

/// Every parser on one payload, with one capability set.
fn packet(p: &[u8], caps: u64) {
    for phase in [Phase::Handshake, Phase::Auth, Phase::Response, Phase::Rows] {
        let _ = classify(p, phase, caps);
    }
    server_packets(p, caps);
    client_packets(p, caps);
    commands(p, caps);
}

fn server_packets(p: &[u8], caps: u64) {
    if let Ok(ok) = parse_ok(p, caps) {
        let again = built(|b| put_ok(b, &ok, caps));
        assert_eq!(parse_ok(&again, caps), Ok(ok));
        if let Some(state) = ok.session_state {
            changes(state);
        }
    }
    if let Ok(err) = parse_err(p) {
        assert_eq!(parse_err(&built(|b| put_err(b, &err))), Ok(err));
    }
    if let Ok(pr) = parse_progress(p) {
        let again = built(|b| put_progress(b, &pr));
        assert_eq!(parse_progress(&again), Ok(pr));
        assert_eq!(
            classify(&again, Phase::Response, MARIADB_CLIENT_PROGRESS),
            Kind::Progress
        );
    }
    if let Ok(eof) = parse_eof(p, caps) {
        assert!(p.len() < 9);
        assert_eq!(parse_eof(&built(|b| put_eof(b, &eof, caps)), caps), Ok(eof));
    }
    if let Ok(sw) = parse_auth_switch(p) {
        let again = built(|b| put_auth_switch(b, &sw));
        assert_eq!(parse_auth_switch(&again), Ok(sw));
    }
    if let Ok(d) = parse_auth_more_data(p) {
        assert_eq!(
            parse_auth_more_data(&built(|b| put_auth_more_data(b, d))),
            Ok(d)
        );
    }
    if let Ok(name) = parse_local_infile(p) {
        assert_eq!(
            parse_local_infile(&built(|b| put_local_infile(b, name))),
            Ok(name)
        );
    }
    if let Ok(ok) = parse_stmt_prepare_ok(p) {
        let again = built(|b| put_stmt_prepare_ok(b, &ok));
        assert_eq!(parse_stmt_prepare_ok(&again), Ok(ok));
    }
    if let Ok((n, m)) = parse_column_count(p, caps) {
        assert!(n > 0);
        let again = built(|b| put_column_count(b, n, m));
        assert_eq!(parse_column_count(&again, caps), Ok((n, m)));
    }
    if let Ok(h) = parse_handshake(p) {
        assert_eq!(parse_handshake(&built(|b| put_handshake(b, &h))), Ok(h));
    }
    changes(p);
}

/// Session state entries: each one that parses is rebuilt alone and parses back the same.
fn changes(state: &[u8]) {
    for change in session_changes(state) {
        let Ok(change) = change else { break };
        let again = built(|b| put_session_change(b, &change));
        let mut it = session_changes(&again);
        assert_eq!(it.next(), Some(Ok(change)));
        assert_eq!(it.next(), None);
    }
}

fn client_packets(p: &[u8], _caps: u64) {
    match parse_client_hello(p) {
        Ok(ClientHello::SslRequest(c)) => {
            assert_eq!(p.len(), SSL_REQUEST_LEN);
            assert_eq!(parse_ssl_request(&built(|b| put_ssl_request(b, &c))), Ok(c));
        }
        Ok(ClientHello::Response(r)) => {
            let again = built(|b| put_handshake_response(b, &r));
            assert_eq!(parse_handshake_response(&again), Ok(r));
            if let Some(attrs) = r.connect_attrs {
                assert!(connect_attrs(attrs).all(|kv| kv.is_ok()));
            }
        }
        Err(_) => {}
    }
    for kv in connect_attrs(p) {
        let Ok((k, v)) = kv else { break };
        let again = built(|b| put_connect_attrs(b, &[(k, v)]));
        assert_eq!(connect_attrs(&again).next(), Some(Ok((k, v))));
    }
}

fn commands(p: &[u8], caps: u64) {
    let Some(cmd) = command(p) else { return };
    assert_eq!(cmd.byte(), p[0]);
    if let Ok(q) = parse_query(p, caps) {
        assert_eq!(1 + q.attributes.len() + q.sql.len(), p.len());
        let again = built(|b| put_query_packet(b, &q));
        assert_eq!(&again[..], p);
        let fresh = built(|b| put_query(b, q.sql, caps));
        assert_eq!(parse_query(&fresh, caps).map(|x| x.sql), Ok(q.sql));
    }
    if let Ok(db) = parse_init_db(p) {
        assert_eq!(parse_init_db(&built(|b| put_init_db(b, db))), Ok(db));
    }
    if let Ok(o) = parse_set_option(p) {
        assert_eq!(parse_set_option(&built(|b| put_set_option(b, o))), Ok(o));
    }
    if let Ok(cu) = parse_change_user(p, caps) {
        let again = built(|b| put_change_user(b, &cu, caps));
        assert_eq!(parse_change_user(&again, caps), Ok(cu));
        if let Some(attrs) = cu.connect_attrs {
            assert!(connect_attrs(attrs).all(|kv| kv.is_ok()));
        }
    }
    if let Ok(e) = parse_stmt_execute(p) {
        assert_eq!(
            parse_stmt_execute(&built(|b| put_stmt_execute(b, &e))),
            Ok(e)
        );
    }
    for c in [Command::StmtClose, Command::StmtReset] {
        if let Ok(id) = parse_stmt_id_only(p, c) {
            let again = built(|b| put_stmt_id_only(b, c, id));
            assert_eq!(parse_stmt_id_only(&again, c), Ok(id));
        }
    }
    if let Ok(d) = parse_stmt_send_long_data(p) {
        let again = built(|b| put_stmt_send_long_data(b, &d));
        assert_eq!(parse_stmt_send_long_data(&again), Ok(d));
    }
    if let Ok((id, rows)) = parse_stmt_fetch(p) {
        let again = built(|b| put_stmt_fetch(b, id, rows));
        assert_eq!(parse_stmt_fetch(&again), Ok((id, rows)));
    }
    // Statement-id rewriting touches exactly bytes 1..5 and nothing else.
    let mut copy = p.to_vec();
    match (stmt_id(p), set_stmt_id(&mut copy, 0xA5A5_5A5A)) {
        (Some(old), Ok(replaced)) => {
            assert!(cmd.has_stmt_id());
            assert_eq!(old, replaced);
            assert_eq!(stmt_id(&copy), Some(0xA5A5_5A5A));
            assert_eq!(copy[0], p[0]);
            assert_eq!(copy[STMT_ID_OFFSET + 4..], p[STMT_ID_OFFSET + 4..]);
        }
        (None, Err(_)) => assert_eq!(copy, p),
        (id, r) => panic!("stmt_id {id:?} but set_stmt_id {r:?}"),
    }
}
