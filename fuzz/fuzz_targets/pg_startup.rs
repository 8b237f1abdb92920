//! Untagged startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest,
//! CancelRequest), consumed one after another as `read_startup` in src/pg/startup.rs does
//! (an SSLRequest or GSSENCRequest is followed by another packet).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::pg::codec::{decode_startup, Startup, MAX_STARTUP_LEN};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match decode_startup(buf) {
            Ok(Some((msg, used))) => {
                assert!(used >= 8, "used {used} < 8");
                assert!(used <= buf.len(), "used {used} > input {}", buf.len());
                assert!(used <= MAX_STARTUP_LEN);
                match msg {
                    Startup::Ssl | Startup::GssEnc => assert_eq!(used, 8),
                    Startup::Cancel { .. } => assert_eq!(used, 16),
                    Startup::Startup { params } => {
                        // 4 length + 4 version + "k\0v\0"... + final "\0".
                        let n: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
                        assert_eq!(n + 9, used);
                        assert!(params.iter().all(|(k, _)| !k.is_empty()));
                    }
                }
                buf = &buf[used..];
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
});
