//! What every proxied call pays to describe itself on a tunnel stream: the stream header, the
//! HTTP frames around its head and body, and (per link, not per call) the catalog a peer sends.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_proxy::codec::{Frame, RequestHead, ResponseHead};
use ferry_tunnel::{Catalog, CatalogEntry, Protocol, PublicKey, StreamHeader, StreamKind};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use std::hint::black_box;

fn stream_header(c: &mut Criterion) {
    let header = StreamHeader {
        kind: StreamKind::Http,
        protocol: Protocol::Http,
        service: "billing-api".into(),
        datacenter: "eu-west".into(),
    };
    let mut encoded = BytesMut::new();
    header.encode(&mut encoded);
    // decode() takes the body without its u16 length prefix, as the reader hands it over.
    let body = encoded[2..].to_vec();
    // A decoder that fails early would look fast: check it decodes before timing it.
    assert_eq!(StreamHeader::decode(&body).ok().as_ref(), Some(&header));

    let mut group = c.benchmark_group("stream_header");
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(64);
        b.iter(|| {
            out.clear();
            black_box(&header).encode(&mut out);
            black_box(&out);
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| StreamHeader::decode(black_box(&body)))
    });
    group.finish();
}

fn catalog(c: &mut Criterion) {
    // A node fronting 100 services: a large sidecar or a small gateway.
    let catalog = Catalog {
        node: "node-17".into(),
        datacenter: "eu-west".into(),
        key: PublicKey([7; 32]),
        address: "10.0.0.17:7700".into(),
        gateway: false,
        subscriptions: Vec::new(),
        services: (0..100)
            .map(|i| CatalogEntry {
                service: format!("service-{i:03}"),
                protocol: Protocol::Http,
                healthy: i % 7 != 0,
            })
            .collect(),
    };
    let mut encoded = BytesMut::new();
    catalog.write(&mut encoded);
    let body = encoded.to_vec();
    assert_eq!(Catalog::decode(&body).ok().as_ref(), Some(&catalog));
    let mut group = c.benchmark_group("catalog");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode_100_services", |b| {
        b.iter(|| Catalog::decode(black_box(&body)))
    });
    group.finish();
}

/// A request head as a browser-ish or gRPC client sends it: a handful of ordinary headers.
fn request_head() -> RequestHead {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("content-type", "application/json"),
        ("x-request-id", "6f1c1a52-52a4-4e0a-9a53-0f1f3a3c0d7e"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    RequestHead {
        version: Version::HTTP_11,
        flags: 0,
        method: Method::POST,
        path: "/v1/invoices?customer=42".into(),
        authority: "billing-api".into(),
        headers,
    }
}

fn http_frames(c: &mut Criterion) {
    let head = Frame::Request(request_head());
    let response = Frame::Response(ResponseHead {
        version: Version::HTTP_11,
        flags: 0,
        status: StatusCode::OK,
        headers: request_head().headers,
    });
    let data = Frame::Data(Bytes::from(vec![0x5a; 16 * 1024]));

    let mut group = c.benchmark_group("http_frame");
    for (name, frame) in [
        ("head", &head),
        ("response_head", &response),
        ("data_16k", &data),
    ] {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        assert_eq!(
            Frame::decode(&mut encoded.clone()).ok().flatten().as_ref(),
            Some(frame)
        );
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(format!("encode_{name}"), |b| {
            let mut out = BytesMut::with_capacity(encoded.len());
            b.iter(|| {
                out.clear();
                black_box(frame).encode(&mut out);
                black_box(&out);
            })
        });
        // decode() consumes its buffer, so each iteration gets a fresh copy made untimed.
        group.bench_function(format!("decode_{name}"), |b| {
            b.iter_batched(
                || encoded.clone(),
                |mut buf| Frame::decode(&mut buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, stream_header, catalog, http_frames);
criterion_main!(benches);
