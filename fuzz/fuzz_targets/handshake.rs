//! The tunnel handshake as a stranger's Initial packets deliver it to a node.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_tunnel::fuzzing::handshake(data);
});
