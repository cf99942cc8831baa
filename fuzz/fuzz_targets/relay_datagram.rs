//! A relay datagram's header: what a gateway reads before forwarding an inner packet.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_tunnel::fuzzing::relay_datagram(data);
});
