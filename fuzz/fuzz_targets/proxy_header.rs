//! The PROXY protocol header decoder (`net::proxy_protocol::parse`) on arbitrary bytes: never
//! panics; a whole header never claims more bytes than it was given, and every prefix of
//! a whole header asks for more (as `read` relies on when it consumes what it peeked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::net::proxy_protocol::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done { len, .. }) = parse(data) {
        assert!(len <= data.len() && len >= 15);
        for cut in [0, 1, len / 2, len - 1] {
            assert_eq!(parse(&data[..cut]), Ok(Parsed::More), "prefix of {cut} bytes");
        }
    }
});
