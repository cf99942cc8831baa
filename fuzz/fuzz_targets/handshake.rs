//! The tunnel handshake as a stranger's Initial packets deliver it to a node, and the payload
//! (certificate and transport parameters) a peer's message carries once decrypted.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_tunnel::fuzzing::handshake(data);
    ferry_tunnel::fuzzing::handshake_payload(data);
});
