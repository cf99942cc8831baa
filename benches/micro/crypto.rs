//! Packet protection at the size a tunnel packet has on a 1,500-byte path: the cost the Noise
//! tunnel pays per packet, with ring's AEADs (AES-256-GCM where the CPU has AES instructions,
//! ChaCha20-Poly1305 otherwise). Throughput is reported beside the time, so the figures
//! compare with the speed of the link a node sits on.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use std::hint::black_box;

const PACKET: usize = 1400;

/// QUIC builds each nonce from the packet number; a counter does the same here.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn key(algorithm: &'static Algorithm) -> LessSafeKey {
    let raw = vec![0x42; algorithm.key_len()];
    match UnboundKey::new(algorithm, &raw) {
        Ok(key) => LessSafeKey::new(key),
        Err(_) => panic!("a key of the algorithm's own length was refused"),
    }
}

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("packet_1400B");
    group.throughput(Throughput::Bytes(PACKET as u64));
    // A short header stands in for the QUIC header, which is authenticated but not encrypted.
    let aad = [0xc3u8; 20];
    for (name, algorithm) in [
        ("aes256gcm", &AES_256_GCM),
        ("chacha20poly1305", &CHACHA20_POLY1305),
    ] {
        let key = key(algorithm);
        group.bench_function(format!("seal_{name}"), |b| {
            let mut packet = vec![0x17u8; PACKET];
            let mut counter = 0u64;
            b.iter(|| {
                counter += 1;
                let tag =
                    key.seal_in_place_separate_tag(nonce(counter), Aad::from(aad), &mut packet);
                black_box(tag.is_ok())
            })
        });

        let mut sealed = vec![0x17u8; PACKET];
        let Ok(tag) = key.seal_in_place_separate_tag(nonce(1), Aad::from(aad), &mut sealed) else {
            panic!("sealing a test packet failed");
        };
        sealed.extend_from_slice(tag.as_ref());
        let mut check = sealed.clone();
        assert!(key
            .open_in_place(nonce(1), Aad::from(aad), &mut check)
            .is_ok());
        group.bench_function(format!("open_{name}"), |b| {
            // open_in_place decrypts in place, so each iteration restores the sealed bytes
            // first: a 1.4 KB copy, a few percent of the figure.
            let mut packet = sealed.clone();
            b.iter(|| {
                packet.copy_from_slice(&sealed);
                let opened = key.open_in_place(nonce(1), Aad::from(aad), &mut packet);
                black_box(opened.map(|p| p.len()).ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
