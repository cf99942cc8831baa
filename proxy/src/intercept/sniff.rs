//! What an intercepted connection speaks, from its first bytes, without I/O: HTTP/1 (a method
//! token and a space), HTTP/2 (its preface), or anything else, carried as opaque TCP.

/// HTTP/2's connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest method token taken for HTTP/1 (`PROPPATCH`, `UNSUBSCRIBE` fit).
const MAX_METHOD: usize = 16;

/// What the bytes so far say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    /// HTTP/1 or HTTP/2: served as the HTTP outbound serves a call.
    Http,
    /// Anything else: carried as bytes.
    Tcp,
    /// Too few bytes to tell.
    Unsure,
}

/// Decides from the first bytes a client sent.
pub(super) fn sniff(bytes: &[u8]) -> Protocol {
    if bytes.is_empty() {
        return Protocol::Unsure;
    }
    let preface = bytes.len().min(H2_PREFACE.len());
    if bytes[..preface] == H2_PREFACE[..preface] {
        return if bytes.len() >= H2_PREFACE.len() {
            Protocol::Http
        } else {
            Protocol::Unsure
        };
    }
    let method = bytes
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    match bytes.get(method) {
        None if method <= MAX_METHOD => Protocol::Unsure,
        // A request target follows: origin-form, absolute-form or asterisk-form.
        Some(b' ') if (1..=MAX_METHOD).contains(&method) => match bytes.get(method + 1) {
            None => Protocol::Unsure,
            Some(b'/' | b'*' | b'h' | b'H') => Protocol::Http,
            Some(_) => Protocol::Tcp,
        },
        _ => Protocol::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_recognised_from_its_first_bytes() {
        for http in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /orders HTTP/1.1",
            b"OPTIONS * HTTP/1.1",
            b"GET http://greeter/ HTTP/1.1",
            H2_PREFACE,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
        ] {
            assert_eq!(
                sniff(http),
                Protocol::Http,
                "{:?}",
                String::from_utf8_lossy(http)
            );
        }
    }

    #[test]
    fn other_protocols_are_tcp() {
        for tcp in [
            &b"*1\r\n$4\r\nPING\r\n"[..], // redis
            b"\x16\x03\x01\x02\x00",      // a TLS ClientHello
            b"PING\r\n",
            b"get / http/1.1",
            b"HELLO world",
            b"AVERYVERYLONGMETHODNAME / HTTP/1.1",
        ] {
            assert_eq!(
                sniff(tcp),
                Protocol::Tcp,
                "{:?}",
                String::from_utf8_lossy(tcp)
            );
        }
    }

    #[test]
    fn a_prefix_that_could_be_either_waits_for_more() {
        for unsure in [&b""[..], b"G", b"GET", b"GET ", b"PRI * HTTP/2.0\r\n"] {
            assert_eq!(sniff(unsure), Protocol::Unsure, "{unsure:?}");
        }
    }
}
