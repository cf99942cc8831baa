//! The application API's topics: percent-decoding a publish's path and parsing topics and
//! subscription patterns.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_proxy::fuzzing::publish_topic(data);
});
