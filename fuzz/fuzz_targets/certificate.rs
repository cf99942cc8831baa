//! Mesh certificates, as bytes and as files: whatever decodes encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ferry_tunnel::certificate::Certificate;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = Certificate::decode(data) {
        assert_eq!(certificate.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Certificate::from_pem(text);
    }
});
