//! Entry points for the fuzz targets in `fuzz/`, for decoders that are not public API.

/// Feeds bytes, cut at the first byte's value, to the HTTP/1 smuggling guard.
pub fn smuggling_guard(data: &[u8]) {
    crate::outbound::feed_smuggling_guard(data);
}

/// Reads bytes as the application API reads a publish's topic from its path: percent-decoded,
/// then checked as a topic; and as a subscription's pattern. Whatever parses matches itself
/// (a topic) or is matched by `>` (a pattern's text as a topic, when it has no wildcard).
pub fn publish_topic(data: &[u8]) {
    use crate::broker::topic::{Pattern, Topic};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(decoded) = crate::broker::percent_decoded(text) {
        if let Ok(topic) = Topic::parse(&decoded) {
            let exact = Pattern::parse(topic.as_str());
            assert!(exact.is_ok_and(|p| p.matches(&topic)), "{decoded:?}");
            assert!(Pattern::parse(">").is_ok_and(|p| p.matches(&topic)));
        }
    }
    let _ = Pattern::parse(text);
}

/// Decides on bytes as interception's DNS server does on a query: whatever it answers itself
/// decodes again as a DNS message.
pub fn dns_query(data: &[u8]) {
    use crate::intercept::answer::{decide, Reply};
    let known = std::net::Ipv4Addr::new(240, 0, 0, 1);
    if let Reply::Answer(bytes) = decide(data, |_| Some(known)) {
        assert!(hickory_proto::op::Message::from_vec(&bytes).is_ok());
    }
}

/// Reads bytes as `POST /v1/publish-batch` reads its body: a CloudEvents batch, or a clear
/// refusal. Whatever is read is at most the batch limit, and a batch written back from the
/// messages read reads again as the same bodies.
pub fn publish_batch(data: &[u8]) {
    use crate::broker::{read_batch, write_batch_for_fuzzing};
    let Ok(publications) = read_batch(data, None) else {
        return;
    };
    assert!(!publications.is_empty() && publications.len() <= 1000);
    let written = write_batch_for_fuzzing(&publications);
    let events: Vec<serde_json::Value> =
        serde_json::from_slice(&written).expect("a written batch is JSON");
    assert_eq!(events.len(), publications.len());
    for (event, publication) in events.iter().zip(&publications) {
        if let Some(text) = event["data"].as_str() {
            assert_eq!(text.as_bytes(), publication.body, "{event}");
        }
    }
}
