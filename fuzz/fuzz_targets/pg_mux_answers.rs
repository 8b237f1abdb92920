//! A multiplexed lane's reading of server answers (src/pg/mux.rs): batch splitting, errors
//! that fail a batch, commit-phase messages, reruns. Arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard::pg::mux::fuzz_answers(data);
});
