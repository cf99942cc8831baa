//! Interception's DNS server, fed what a client on the node could send it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_proxy::fuzzing::dns_query(data);
});
