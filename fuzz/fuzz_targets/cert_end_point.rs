//! The certificate readers (`net::der`): the signature algorithm for `tls-server-end-point`
//! channel binding and the subject's common name for client-certificate logins, on arbitrary
//! bytes: never panic, and an end point is always one of the four hash sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::net::channel_binding::{end_point_hash, tls_server_end_point};
use switchyard::net::der::subject_common_name;

fuzz_target!(|data: &[u8]| {
    let hash = end_point_hash(data);
    match tls_server_end_point(data) {
        Some(end_point) => {
            assert!(hash.is_some());
            assert!([28, 32, 48, 64].contains(&end_point.len()));
        }
        None => assert!(hash.is_none()),
    }
    let _ = subject_common_name(data);
});
