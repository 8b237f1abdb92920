//! The certificate reader of `tls-server-end-point` channel binding (`net::channel_binding`)
//! on arbitrary bytes: never panics, and an end point is always one of the four hash sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::net::channel_binding::{end_point_hash, tls_server_end_point};

fuzz_target!(|data: &[u8]| {
    let hash = end_point_hash(data);
    match tls_server_end_point(data) {
        Some(end_point) => {
            assert!(hash.is_some());
            assert!([28, 32, 48, 64].contains(&end_point.len()));
        }
        None => assert!(hash.is_none()),
    }
});
