//! The application API's batches: the CloudEvents batch a `POST /v1/publish-batch` carries,
//! and the batch a delivery writes back from it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_proxy::fuzzing::publish_batch(data);
});
