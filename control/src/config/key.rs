//! X25519 public keys as written in configs and on the command line: standard base64 with
//! padding, 44 characters, like WireGuard's.

/// Why text is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 44 characters.
    #[error("a key is 44 characters of base64, this is {0}")]
    Length(usize),
    /// A character outside standard base64, or misplaced padding.
    #[error("not standard base64 (A-Z a-z 0-9 + / and one trailing =)")]
    NotBase64,
    /// The unused low bits of the last character are set: another spelling of some key, which
    /// would let one key pass as two identities.
    #[error("not the canonical base64 of a 32-byte key")]
    NotCanonical,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes a public key: standard base64 of exactly 32 bytes.
pub fn decode_public_key(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = text.as_bytes();
    if bytes.len() != 44 {
        return Err(KeyError::Length(text.chars().count()));
    }
    // 32 bytes are 256 bits: 42 full characters and 4 bits of a 43rd, then one '='.
    let (digits, padding) = bytes.split_at(43);
    if padding != b"=" {
        return Err(KeyError::NotBase64);
    }
    let mut key = [0u8; 32];
    let mut bits: u32 = 0;
    let mut pending = 0;
    let mut out = 0;
    for &c in digits {
        let value = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(KeyError::NotBase64)?;
        bits = (bits << 6) | value as u32;
        pending += 6;
        if pending >= 8 {
            pending -= 8;
            key[out] = (bits >> pending) as u8;
            out += 1;
            bits &= (1 << pending) - 1;
        }
    }
    if bits != 0 {
        return Err(KeyError::NotCanonical);
    }
    Ok(key)
}

/// Encodes a public key the way [`decode_public_key`] reads it.
pub fn encode_public_key(key: &[u8; 32]) -> String {
    let mut text = String::with_capacity(44);
    for chunk in key.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | ((b as u32) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                text.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let text = encode_public_key(&key);
        assert_eq!(text.len(), 44);
        assert_eq!(decode_public_key(&text), Ok(key));
        assert_eq!(
            encode_public_key(&[0; 32]),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
        assert_eq!(
            decode_public_key("//////////////////////////////////////////8="),
            Ok([0xff; 32])
        );
    }

    #[test]
    fn rejects_keys_that_are_not_32_bytes_of_standard_base64() {
        let good = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(decode_public_key("BASE64PUBKEY"), Err(KeyError::Length(12)));
        assert_eq!(decode_public_key(&good[..43]), Err(KeyError::Length(43)));
        let url_safe = good.replacen('A', "-", 1);
        assert_eq!(decode_public_key(&url_safe), Err(KeyError::NotBase64));
        let unpadded = good.replace('=', "A");
        assert_eq!(decode_public_key(&unpadded), Err(KeyError::NotBase64));
        // Last digit 'B' sets a bit past the 256th.
        let loose = good.replace("A=", "B=");
        assert_eq!(decode_public_key(&loose), Err(KeyError::NotCanonical));
        assert_eq!(
            decode_public_key(&format!(" {}", &good[1..])),
            Err(KeyError::NotBase64)
        );
    }
}
