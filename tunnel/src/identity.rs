//! A node's identity: its X25519 static key, written as standard base64 like WireGuard's.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use x25519_dalek::StaticSecret;

use crate::Error;

/// A node's public key: its identity in the mesh.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        decode_key(s).map(PublicKey)
    }
}

/// 32 bytes of base64, as every key file and public key is written.
pub(crate) fn decode_key(s: &str) -> Result<[u8; 32], Error> {
    let bytes = BASE64
        .decode(s.trim())
        .map_err(|e| Error::InvalidKey(format!("not base64: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| Error::InvalidKey(format!("{} bytes, want 32", bytes.len())))
}

/// A node's static key pair.
#[derive(Clone)]
pub struct Identity {
    secret: StaticSecret,
    public: PublicKey,
}

impl Identity {
    /// A fresh random key pair.
    pub fn generate() -> Result<Identity, Error> {
        random_key().map(Identity::from_secret)
    }

    /// For tests and fuzzing: a fixed key.
    #[doc(hidden)]
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Identity {
        Identity::from_secret(bytes)
    }

    fn from_secret(bytes: [u8; 32]) -> Identity {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Identity { secret, public }
    }

    /// Parses the base64 private key held in a key file's text.
    pub fn from_base64(text: &str) -> Result<Identity, Error> {
        decode_key(text).map(Identity::from_secret)
    }

    /// Reads a key file (one line of base64).
    pub fn load(path: &Path) -> Result<Identity, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        Identity::from_base64(&text)
            .map_err(|e| Error::InvalidKey(format!("{}: {e}", path.display())))
    }

    /// Writes a new key file with mode 0600. Refuses to overwrite an existing file: losing a
    /// node's key changes its identity, which every peer has pinned.
    pub fn save_new(&self, path: &Path) -> Result<(), Error> {
        write_secret(path, &BASE64.encode(self.secret.to_bytes()))
    }

    /// Loads the key at `path`, creating it first if there is none (the embedded defaults).
    pub fn load_or_create(path: &Path) -> Result<Identity, Error> {
        if path.exists() {
            return Identity::load(path);
        }
        let identity = Identity::generate()?;
        identity.save_new(path)?;
        Ok(identity)
    }

    /// The private key's bytes, for the handshake.
    pub(crate) fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public key: the identity others know this node by.
    pub fn public(&self) -> PublicKey {
        self.public
    }
}

/// 32 random bytes from the system's source: a new secret key (a node's, a CA's).
pub(crate) fn random_key() -> Result<[u8; 32], Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Setup("the system random source failed"))?;
    Ok(bytes)
}

/// Writes `line` to a new file at `path`, mode 0600, creating its directory: how every secret
/// key is kept (a node's, a CA's). Refuses to overwrite: a lost key cannot be had back.
pub fn write_secret(path: &Path, line: &str) -> Result<(), Error> {
    let io_error = |source| Error::KeyFile {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error)?;
    writeln!(file, "{line}").map_err(io_error)
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_base64() {
        let id = Identity::generate().expect("random");
        let text = id.public().to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().expect("parses"), id.public());
    }

    #[test]
    fn private_key_text_gives_the_same_public_key() {
        let id = Identity::generate().expect("random");
        let text = BASE64.encode(id.secret.to_bytes());
        assert_eq!(
            Identity::from_base64(&text).expect("parses").public(),
            id.public()
        );
    }

    #[test]
    fn short_or_garbage_keys_are_refused() {
        assert!("abc".parse::<PublicKey>().is_err());
        assert!(BASE64.encode([1u8; 31]).parse::<PublicKey>().is_err());
        assert!("!!!!".parse::<PublicKey>().is_err());
    }
}
