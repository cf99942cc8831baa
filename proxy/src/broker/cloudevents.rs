//! CloudEvents 1.0 batches in the JSON format (`application/cloudevents-batch+json`): what a
//! publisher sends to `POST /v1/publish-batch/TOPIC`, and what a subscription with `batch`
//! above 1 receives in one delivery.
//!
//! A message's body travels as the format says: as JSON itself when its content type is JSON
//! and it is valid JSON; as a JSON string when it is UTF-8 text; else base64 in `data_base64`.
//! Either way the subscriber gets back the very bytes that were published.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BodyForm, Message, Publication};

/// The content type of a batch, both ways.
pub(crate) const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The most messages one publish may carry.
pub(crate) const MAX_PUBLISH_BATCH: usize = 1000;

/// Why a batch could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// Not a JSON array of entries as the reference describes them.
    #[error("not a CloudEvents batch: {0}")]
    Malformed(String),
    /// Holds no message.
    #[error("the batch holds no message")]
    Empty,
    /// Holds more than [`MAX_PUBLISH_BATCH`] messages.
    #[error("the batch holds more than {MAX_PUBLISH_BATCH} messages, the most taken at once")]
    TooMany,
}

/// The entries of a batch, read one by one so that a body of a million tiny entries is
/// refused at the first one too many, before it is all held in memory.
struct Entries<'a>(Vec<Entry<'a>>);

/// How the entry count's refusal is told apart from other errors of the JSON reader.
const TOO_MANY: &str = "too many entries";

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<Entry<'de>>()? {
                    if entries.len() == MAX_PUBLISH_BATCH {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// One entry of a published batch: the message and what describes it. Ferry sets `id`,
/// `source`, `type` and `time` itself, so they are refused rather than silently replaced.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
}

/// The messages of a published batch, in order. `traceparent` is the request's, for entries
/// that carry none of their own.
pub fn read_batch(
    body: &[u8],
    traceparent: Option<&HeaderValue>,
) -> Result<Vec<Publication>, BatchError> {
    let malformed = |e: &dyn std::fmt::Display| BatchError::Malformed(e.to_string());
    let entries = match serde_json::from_slice::<Entries<'_>>(body) {
        Ok(Entries(entries)) if entries.is_empty() => return Err(BatchError::Empty),
        Ok(Entries(entries)) => entries,
        Err(e) if e.to_string().starts_with(TOO_MANY) => return Err(BatchError::TooMany),
        Err(e) => return Err(malformed(&e)),
    };
    let header = |text: Option<String>, what: &str| -> Result<Option<HeaderValue>, BatchError> {
        text.map(|t| HeaderValue::try_from(t).map_err(|_| malformed(&format!("bad {what}"))))
            .transpose()
    };
    let mut publications = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let (body, default_type, form) = match (entry.data, entry.data_base64) {
            (Some(_), Some(_)) => {
                return Err(malformed(&format!(
                    "entry {i} has both data and data_base64"
                )))
            }
            (None, None) => (Bytes::new(), None, BodyForm::Text),
            (None, Some(encoded)) => match BASE64.decode(encoded.as_bytes()) {
                Ok(decoded) => (Bytes::from(decoded), None, BodyForm::Bytes),
                Err(e) => return Err(malformed(&format!("entry {i}'s data_base64: {e}"))),
            },
            (Some(raw), None) => {
                let json = raw.get();
                if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
                    // A string: its text is the message. Already checked as a JSON string, so
                    // without a backslash it is its own text; only escapes need a second pass.
                    if !inner.contains('\\') {
                        (
                            Bytes::copy_from_slice(inner.as_bytes()),
                            None,
                            BodyForm::Text,
                        )
                    } else {
                        let text: String = serde_json::from_str(json).map_err(|e| malformed(&e))?;
                        (Bytes::from(text), None, BodyForm::Bytes)
                    }
                } else {
                    // Any other JSON value is the message as it is written.
                    let json_type = HeaderValue::from_static("application/json");
                    let body = Bytes::copy_from_slice(json.as_bytes());
                    (body, Some(json_type), BodyForm::Json)
                }
            }
        };
        let content_type = header(entry.datacontenttype, "datacontenttype")?.or(default_type);
        let traceparent = header(entry.traceparent, "traceparent")?.or(traceparent.cloned());
        publications.push(Publication {
            body,
            content_type,
            traceparent,
            form,
        });
    }
    Ok(publications)
}

/// What one delivery of `messages` (try number `attempt`) says: a JSON array of structured
/// CloudEvents, with `ferrytopic` and `ferryattempt` as extension attributes (CloudEvents
/// names are lowercase letters and digits only).
pub(crate) fn write_batch(messages: &[std::sync::Arc<Message>], attempt: u8) -> Bytes {
    let size: usize = messages.iter().map(|m| m.body.len() + 256).sum();
    let mut out = Json(BytesMut::with_capacity(size + 2));
    out.raw(b"[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.raw(b",");
        }
        out.raw(b"{\"specversion\":\"1.0\",\"type\":\"ferry.message\",\"id\":");
        out.string(&m.id);
        out.raw(b",\"source\":");
        out.string(&m.source);
        out.raw(b",\"time\":");
        out.string(&m.time);
        out.raw(b",\"ferrytopic\":");
        out.string(m.topic.as_str());
        out.raw(format!(",\"ferryattempt\":{attempt}").as_bytes());
        let content_type = m.content_type.as_ref().and_then(|v| v.to_str().ok());
        if let Some(content_type) = content_type {
            out.raw(b",\"datacontenttype\":");
            out.string(content_type);
        }
        if let Some(traceparent) = m.traceparent.as_ref().and_then(|v| v.to_str().ok()) {
            out.raw(b",\"traceparent\":");
            out.string(traceparent);
        }
        if let Some((topic, reason)) = &m.dead_letter_of {
            out.raw(b",\"ferrydeadlettertopic\":");
            out.string(topic);
            out.raw(b",\"ferrydeadletterreason\":");
            out.string(reason);
        }
        let is_json = content_type.is_some_and(is_json_type)
            && (m.form == BodyForm::Json
                || serde_json::from_slice::<serde::de::IgnoredAny>(&m.body).is_ok());
        if is_json {
            out.raw(b",\"data\":");
            out.raw(&m.body);
        } else if m.form == BodyForm::Text {
            out.raw(b",\"data\":\"");
            out.raw(&m.body);
            out.raw(b"\"");
        } else if let Ok(text) = std::str::from_utf8(&m.body) {
            out.raw(b",\"data\":");
            out.string(text);
        } else {
            out.raw(b",\"data_base64\":\"");
            out.raw(BASE64.encode(&m.body).as_bytes());
            out.raw(b"\"");
        }
        out.raw(b"}");
    }
    out.raw(b"]");
    out.0.freeze()
}

/// The batch a delivery of `publications` would carry, for the fuzz target.
#[doc(hidden)]
pub fn write_batch_for_fuzzing(publications: &[Publication]) -> Bytes {
    let messages: Vec<std::sync::Arc<Message>> = publications
        .iter()
        .map(|p| {
            std::sync::Arc::new(Message {
                id: "fuzz-1".into(),
                topic: super::topic::Topic::parse("fuzz").expect("a topic"),
                source: "fuzz".into(),
                time: "2026-12-04T00:00:00.000Z".into(),
                accepted: std::time::Instant::now(),
                content_type: p.content_type.clone(),
                traceparent: p.traceparent.clone(),
                body: p.body.clone(),
                form: p.form,
                dead_letter_of: None,
                _held: None,
            })
        })
        .collect();
    write_batch(&messages, 1)
}

/// JSON written by hand into one buffer: a batch is written once per delivery, and building
/// a `serde_json::Value` of it first would copy every body again.
struct Json(BytesMut);

impl Json {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }

    /// `text` as a JSON string, quoted and escaped.
    fn string(&mut self, text: &str) {
        // Writing into a growable buffer cannot fail.
        let _ = serde_json::to_writer((&mut self.0).writer(), text);
    }
}

/// `application/json`, `text/json` and any `+json` type, with or without parameters.
fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::broker::topic::Topic;

    fn message(body: &[u8], content_type: Option<&'static str>) -> Arc<Message> {
        Arc::new(Message {
            id: "abc-1".into(),
            topic: Topic::parse("orders.created").expect("a topic"),
            source: "node-a".into(),
            time: "2026-12-04T12:00:00.000Z".into(),
            accepted: Instant::now(),
            content_type: content_type.map(HeaderValue::from_static),
            traceparent: None,
            body: Bytes::copy_from_slice(body),
            form: BodyForm::Bytes,
            dead_letter_of: None,
            _held: None,
        })
    }

    #[test]
    fn every_body_comes_back_as_it_was_published() {
        let messages = [
            message(
                br#"{"total": 12, "items": ["a"]}"#,
                Some("application/json"),
            ),
            message(
                b"plain \"text\"\n\twith escapes \xc3\xa9",
                Some("text/plain"),
            ),
            message(&[0, 159, 146, 150, 255], None),
            message(b"not json {", Some("application/cloudevents+json")),
            message(b"", None),
        ];
        let written = write_batch(&messages, 3);
        let events: Vec<serde_json::Value> = serde_json::from_slice(&written).expect("JSON");
        assert_eq!(events.len(), messages.len());
        assert_eq!(events[0]["data"]["total"], 12);
        assert_eq!(events[0]["ferryattempt"], 3);
        assert_eq!(events[0]["ferrytopic"], "orders.created");
        assert_eq!(events[0]["specversion"], "1.0");
        assert_eq!(events[2]["data_base64"], "AJ+Slv8=");
        // A JSON body is carried as written, byte for byte.
        let verbatim = br#""data":{"total": 12, "items": ["a"]}"#;
        assert!(written.windows(verbatim.len()).any(|w| w == verbatim));
        // Read back as a publish, each body is the same bytes (the JSON one reformatted by
        // this test's own round trip through `serde_json::Value`).
        let read = read_batch(&written_as_publish(&events), None).expect("reads");
        for (m, p) in messages.iter().zip(&read).skip(1) {
            assert_eq!(m.body, p.body);
        }
        assert_eq!(
            read[1].content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
    }

    /// The delivered events with only what a publisher may send.
    fn written_as_publish(events: &[serde_json::Value]) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                let mut entry = serde_json::Map::new();
                for key in ["data", "data_base64", "datacontenttype"] {
                    if let Some(value) = e.get(key) {
                        entry.insert(key.into(), value.clone());
                    }
                }
                serde_json::Value::Object(entry)
            })
            .collect();
        serde_json::to_vec(&entries).expect("JSON")
    }

    #[test]
    fn a_json_value_is_published_as_written_and_typed_as_json() {
        let read =
            read_batch(br#"[{"data": {"a": [1, 2]}}, {"data": "hi"}]"#, None).expect("reads");
        assert_eq!(read[0].body, &br#"{"a": [1, 2]}"#[..]);
        assert_eq!(
            read[0].content_type,
            Some(HeaderValue::from_static("application/json"))
        );
        assert_eq!(read[1].body, &b"hi"[..]);
        assert_eq!(read[1].content_type, None);
    }

    #[test]
    fn the_request_traceparent_applies_where_an_entry_has_none() {
        let request = HeaderValue::from_static("00-aa-bb-01");
        let read = read_batch(
            br#"[{"data": 1}, {"data": 2, "traceparent": "00-cc-dd-01"}]"#,
            Some(&request),
        )
        .expect("reads");
        assert_eq!(read[0].traceparent.as_ref(), Some(&request));
        assert_eq!(
            read[1].traceparent,
            Some(HeaderValue::from_static("00-cc-dd-01"))
        );
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        let bad: [(&[u8], &str); 7] = [
            (b"", "EOF"),
            (b"{\"data\": 1}", "sequence"),
            (b"[{\"data\": 1, \"id\": \"x\"}]", "unknown field `id`"),
            (b"[{\"data\": 1, \"data_base64\": \"AA==\"}]", "both"),
            (b"[{\"data_base64\": \"%%%\"}]", "data_base64"),
            (b"[{\"datacontenttype\": \"a\\nb\"}]", "datacontenttype"),
            (b"[1]", "expected struct"),
        ];
        for (body, why) in bad {
            match read_batch(body, None) {
                Err(BatchError::Malformed(reason)) => assert!(reason.contains(why), "{reason}"),
                Err(other) => panic!("{other:?}"),
                Ok(read) => panic!(
                    "{} read as {} messages",
                    String::from_utf8_lossy(body),
                    read.len()
                ),
            }
        }
        assert!(matches!(read_batch(b"[]", None), Err(BatchError::Empty)));
        let many = format!("[{}{{}}]", "{},".repeat(MAX_PUBLISH_BATCH));
        assert!(matches!(
            read_batch(many.as_bytes(), None),
            Err(BatchError::TooMany)
        ));
    }

    #[test]
    fn mangled_batches_never_panic() {
        let good = br#"[{"data": {"a": "\u00e9\n"}, "datacontenttype": "application/json"},
            {"data": "x\"y", "traceparent": "00-aa-bb-01"}, {"data_base64": "AJ+Slv8="}, {}]"#;
        assert!(read_batch(good, None).is_ok());
        for at in 0..good.len() {
            crate::fuzzing::publish_batch(&good[..at]);
            for byte in *b"\"\\[]{},:0a \xff\x00" {
                let mut mangled = good.to_vec();
                mangled[at] = byte;
                crate::fuzzing::publish_batch(&mangled);
            }
        }
    }

    #[test]
    fn content_types_that_are_json() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/cloudevents+json",
            "text/json",
        ] {
            assert!(is_json_type(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonl",
            "application/octet-stream",
            "",
        ] {
            assert!(!is_json_type(no), "{no}");
        }
    }
}
