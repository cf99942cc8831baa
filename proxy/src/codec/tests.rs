//! The codec at every split of its input, and its refusal of what is not a frame.

use super::*;

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.append("x-multi", HeaderValue::from_static("a"));
    h.append("x-multi", HeaderValue::from_static("b"));
    h
}

fn frames() -> Vec<Frame> {
    vec![
        Frame::Request(RequestHead {
            version: Version::HTTP_2,
            flags: UPGRADE,
            method: Method::POST,
            path: "/greeter.Greeter/SayHello?x=1".into(),
            authority: "greeter".into(),
            headers: headers(),
        }),
        Frame::Response(ResponseHead {
            version: Version::HTTP_11,
            flags: END_STREAM,
            status: StatusCode::SWITCHING_PROTOCOLS,
            headers: headers(),
        }),
        Frame::Data(Bytes::from_static(b"hello")),
        Frame::Trailers(headers()),
        Frame::End,
    ]
}

#[test]
fn frames_round_trip_one_byte_at_a_time() {
    let mut wire = BytesMut::new();
    for f in frames() {
        f.encode(&mut wire);
    }
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in wire {
        buf.put_u8(byte);
        if let Some(f) = Frame::decode(&mut buf).expect("valid") {
            decoded.push(f);
        }
    }
    assert_eq!(decoded, frames());
    assert!(buf.is_empty());
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let len = (x % 64) as usize;
        let mut buf = BytesMut::new();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly small bytes: frame types and lengths that look plausible.
            buf.put_u8((x % 8) as u8);
        }
        while let Ok(Some(_)) = Frame::decode(&mut buf) {}
    }
}

#[test]
fn oversized_and_unknown_frames_are_refused_before_buffering() {
    let mut buf = BytesMut::from(&[DATA, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(Frame::decode(&mut buf).is_err());
    let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0][..]);
    assert!(Frame::decode(&mut buf).is_err());
}

#[test]
fn a_head_with_garbage_inside_is_refused() {
    let mut wire = BytesMut::new();
    frames()[0].encode(&mut wire);
    wire[7] = 0xee; // method length now points past the frame
    assert!(Frame::decode(&mut wire).is_err());
}

#[tokio::test]
async fn a_stream_cut_mid_frame_is_truncated_not_clean() {
    let mut wire = BytesMut::new();
    Frame::Data(Bytes::from_static(b"hello")).encode(&mut wire);
    let cut = &wire[..wire.len() - 1];
    let mut reader = FrameReader::new(cut);
    assert!(matches!(reader.next().await, Err(FrameError::Truncated)));
}
