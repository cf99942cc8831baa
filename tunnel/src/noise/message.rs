//! The handshake messages as they travel in QUIC CRYPTO frames.
//!
//! ```text
//! initiation (Initial space, client):  u8 version (2) | u8 suite | u16 length | Noise IK message 1
//! response   (Initial space, server):  u16 length | Noise IK message 2
//! finished   (Handshake space, client): u16 length | 32-byte confirmation
//! ```
//!
//! The payload of each Noise message, encrypted by it:
//!
//! ```text
//! u16 certificate length (0: none) | the sender's certificate | its QUIC transport parameters
//! ```
//!
//! CRYPTO frames deliver a byte stream in pieces; [`Inbox`] gathers them until a message is
//! whole. Nothing here trusts a length before checking it.

use crate::Error;

/// Version 2 added the certificate to the payload; version 1 is refused.
pub(crate) const VERSION: u8 = 2;
/// The largest handshake message accepted. Ours are a few hundred bytes (keys, tags, a
/// certificate and the transport parameters); Noise allows 65,535, far more than a peer needs
/// to send us.
pub(crate) const MAX_MESSAGE: usize = 4096;
/// The largest certificate a handshake carries. A certificate naming a handful of services is
/// about 200 bytes; the bound keeps a server's response within QUIC's anti-amplification
/// limit (three times the client's 1,200-byte Initial) in one flight.
pub const MAX_CERTIFICATE: usize = 2048;

/// Bytes received on the CRYPTO stream, not yet consumed.
#[derive(Default, Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    /// Adds bytes; refuses to hold more than one message's worth.
    pub(super) fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.buf.len() + data.len() > MAX_MESSAGE + 4 {
            return Err(Error::Malformed("handshake message too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The initiation, once whole; `Ok(None)` while more bytes are needed.
    pub(super) fn initiation(&mut self) -> Result<Option<(u8, Vec<u8>)>, Error> {
        let (version, suite) = match self.buf.as_slice() {
            [version, suite, ..] => (*version, *suite),
            _ => return Ok(None),
        };
        if version != VERSION {
            return Err(Error::Malformed("unknown handshake version"));
        }
        let message = take(&mut self.buf, 2)?;
        Ok(message.map(|m| (suite, m)))
    }

    /// A length-prefixed message, once whole.
    pub(super) fn message(&mut self) -> Result<Option<Vec<u8>>, Error> {
        take(&mut self.buf, 0)
    }
}

/// Takes `u16 length | body` starting at `at`, dropping everything before its end.
fn take(buf: &mut Vec<u8>, at: usize) -> Result<Option<Vec<u8>>, Error> {
    let Some(len) = buf
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return Ok(None);
    };
    if len > MAX_MESSAGE {
        return Err(Error::Malformed("handshake message too long"));
    }
    let end = at + 2 + len;
    if buf.len() < end {
        return Ok(None);
    }
    let body = buf[at + 2..end].to_vec();
    buf.drain(..end);
    Ok(Some(body))
}

/// Appends `u16 length | body`.
pub(crate) fn put(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A handshake message's payload: the sender's certificate, if any, and its transport
/// parameters.
pub(crate) fn payload(certificate: Option<&[u8]>, params: &[u8]) -> Vec<u8> {
    let certificate = certificate.filter(|c| c.len() <= MAX_CERTIFICATE);
    let mut out = Vec::with_capacity(2 + certificate.map_or(0, |c| c.len()) + params.len());
    put(&mut out, certificate.unwrap_or_default());
    out.extend_from_slice(params);
    out
}

/// Splits a payload into the certificate (`None` when absent) and the transport parameters.
pub(crate) fn split_payload(payload: &[u8]) -> Result<(Option<&[u8]>, &[u8]), Error> {
    let (len, rest) = payload
        .split_first_chunk::<2>()
        .ok_or(Error::Malformed("handshake payload too short"))?;
    let len = u16::from_be_bytes(*len) as usize;
    if len > MAX_CERTIFICATE || len > rest.len() {
        return Err(Error::Malformed("bad certificate length in the handshake"));
    }
    let (certificate, params) = rest.split_at(len);
    Ok(((!certificate.is_empty()).then_some(certificate), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_initiation_arrives_whole_from_pieces() {
        let mut wire = vec![VERSION, 2];
        put(&mut wire, b"hello");
        let mut inbox = Inbox::default();
        for (i, byte) in wire.iter().enumerate() {
            inbox.push(&[*byte]).expect("fits");
            let got = inbox.initiation().expect("valid");
            assert_eq!(got.is_some(), i == wire.len() - 1, "at byte {i}");
            if let Some((suite, message)) = got {
                assert_eq!((suite, message.as_slice()), (2, &b"hello"[..]));
            }
        }
        assert!(inbox.is_empty());
    }

    #[test]
    fn oversized_or_unknown_messages_are_refused() {
        let mut inbox = Inbox::default();
        inbox.push(&[VERSION, 1, 0xff, 0xff]).expect("fits");
        assert!(inbox.initiation().is_err());
        let mut inbox = Inbox::default();
        inbox.push(&[9, 1, 0, 0]).expect("fits");
        assert!(inbox.initiation().is_err());
        assert!(Inbox::default().push(&[0u8; MAX_MESSAGE + 5]).is_err());
    }

    #[test]
    fn a_payload_carries_a_certificate_or_none_beside_the_parameters() {
        assert_eq!(
            split_payload(&payload(Some(b"cert"), b"params")).expect("valid"),
            (Some(&b"cert"[..]), &b"params"[..])
        );
        assert_eq!(
            split_payload(&payload(None, b"params")).expect("valid"),
            (None, &b"params"[..])
        );
        assert!(split_payload(&[0]).is_err());
        assert!(
            split_payload(&[0, 9, 1, 2]).is_err(),
            "longer than the payload"
        );
        let huge = vec![1u8; MAX_CERTIFICATE + 1];
        assert_eq!(
            split_payload(&payload(Some(&huge), b"p")).expect("valid"),
            (None, &b"p"[..]),
            "an oversized certificate is not sent"
        );
    }
}
