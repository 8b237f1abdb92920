//! The messages on the handover socket (`app::handover::Message`): any bytes decode to a
//! message or an error, never a panic, and a message decoded reads back the same after
//! encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::app::handover::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.encode()).expect("an encoded message decodes");
        assert_eq!(again, m);
    }
});
