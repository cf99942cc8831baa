//! Header hygiene between hops.

use http::{header, HeaderMap, HeaderName, Request};

/// Connection-specific headers (RFC 9110 §7.6.1): they describe one hop, never the next, and
/// HTTP/2 forbids them outright.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, and any the `Connection` header names. An upgrade keeps its
/// `Connection: upgrade` and `Upgrade` headers, which the next hop needs to see; `TE: trailers`
/// is kept because gRPC servers require it.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds the few present (most messages carry none, an HTTP/1.1
    // response usually `Connection: keep-alive` alone): removing only those costs less than
    // a lookup for each of the eight names.
    // A `TE: trailers` alone (every gRPC request) is already what would be put back.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n) && !(*n == header::TE && te_is_just_trailers(headers)))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    // The names `Connection` lists. The usual `keep-alive` (removed below anyway) and `close`
    // (not a header) are skipped by their text: each would cost an allocated `HeaderName`, on
    // nearly every HTTP/1.1 response.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    // Over every `TE` line: several lines are one comma-separated list (RFC 9110 §5.3).
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    let upgrade_value = headers.get(header::UPGRADE).filter(|_| upgrade).cloned();
    for name in present {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
    if let Some(value) = upgrade_value {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        headers.insert(header::UPGRADE, value);
    }
}

/// Whether the message has one `TE` and it says `trailers`, the form it leaves in.
fn te_is_just_trailers(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::TE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"trailers")
    )
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == "keep-alive" || name == "proxy-connection"
}

/// Whether a request asks to switch protocols (WebSocket and friends over HTTP/1.1).
pub(crate) fn wants_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_what_they_need() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "keep-alive, x-secret, upgrade".parse().expect("valid"),
        );
        h.insert("x-secret", "1".parse().expect("valid"));
        h.insert("keep-alive", "timeout=5".parse().expect("valid"));
        h.insert("upgrade", "websocket".parse().expect("valid"));
        h.insert("te", "trailers, deflate".parse().expect("valid"));
        h.insert("x-kept", "1".parse().expect("valid"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert!(plain.get("x-secret").is_none() && plain.get("upgrade").is_none());
        assert_eq!(plain["te"], "trailers");
        assert_eq!(plain["x-kept"], "1");
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(h.get("keep-alive").is_none());
    }

    #[test]
    fn te_leaves_as_trailers_alone() {
        for (values, kept) in [
            (&["trailers"][..], true),
            (&["Trailers"], true),
            (&["gzip", "trailers"], true),
            (&["gzip"], false),
        ] {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("te", v.parse().expect("valid"));
            }
            strip_hop_by_hop(&mut h, false);
            let left: Vec<String> = h
                .get_all("te")
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase())
                .collect();
            let expected: &[&str] = if kept { &["trailers"] } else { &[] };
            assert_eq!(left, expected, "{values:?}");
        }
    }

    #[test]
    fn connection_close_and_keep_alive_go_and_other_headers_stay() {
        for value in [
            "keep-alive",
            "close",
            "Keep-Alive, Close",
            " close , x-secret",
        ] {
            let mut h = HeaderMap::new();
            h.insert("connection", value.parse().expect("valid"));
            h.insert("keep-alive", "timeout=5".parse().expect("valid"));
            h.insert("x-secret", "1".parse().expect("valid"));
            h.insert("x-kept", "1".parse().expect("valid"));
            strip_hop_by_hop(&mut h, false);
            assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
            assert_eq!(
                h.get("x-secret").is_some(),
                !value.contains("x-secret"),
                "{value}"
            );
            assert_eq!(h["x-kept"], "1");
        }
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_stripped() {
        for name in [
            "connection",
            "proxy-authorization",
            "transfer-encoding",
            "upgrade",
        ]
        .into_iter()
        .chain(["trailer", "keep-alive", "proxy-connection"])
        {
            let mut h = HeaderMap::new();
            h.insert(name, "x".parse().expect("valid"));
            h.insert("x-kept", "1".parse().expect("valid"));
            strip_hop_by_hop(&mut h, false);
            assert!(h.get(name).is_none(), "{name} kept");
            assert_eq!(h["x-kept"], "1");
        }
    }
}
