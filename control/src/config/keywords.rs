//! The closed sets of words a config value may take (registry kind, protocol, outbound kind,
//! log format): an enum each, spelled the same in the file, on the command line and in the
//! config printed back, and the error for a word that is none of them.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The closed set of words a config value may take, named the same in the file and on the
/// command line.
pub(super) trait Keyword: Copy + 'static {
    /// What the value is, for error messages ("registry kind").
    const WHAT: &'static str;
    /// Every value.
    const ALL: &'static [Self];
    /// Its name in the file.
    fn as_str(self) -> &'static str;
}

/// A word that is not one of a [`Keyword`]'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{given}\"; expected one of: {expected}")]
pub struct UnknownKeyword {
    what: &'static str,
    given: String,
    expected: String,
}

pub(super) fn parse_keyword<K: Keyword>(given: &str) -> Result<K, UnknownKeyword> {
    K::ALL
        .iter()
        .copied()
        .find(|k| k.as_str() == given)
        .ok_or_else(|| UnknownKeyword {
            what: K::WHAT,
            given: given.to_string(),
            expected: K::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Defines a [`Keyword`] enum with `Display`, `FromStr` and `Serialize` by its names.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Keyword for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl $name {
            /// The name used in the config file and on the command line.
            pub fn as_str(self) -> &'static str {
                Keyword::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;
            fn from_str(s: &str) -> Result<Self, UnknownKeyword> {
                parse_keyword(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// Which registry services are looked up in.
    #[derive(Default)]
    pub enum RegistryKind ("registry kind") {
        /// Services announced over the tunnel network itself.
        #[default]
        Mesh = "mesh",
        /// A TOML file of plain addresses.
        Static = "static",
        /// DNS SRV, else A/AAAA records.
        Dns = "dns",
        /// Multicast DNS on the local network.
        Mdns = "mdns",
        /// An etcd cluster.
        Etcd = "etcd",
    }
}

keyword_enum! {
    /// What a local service speaks.
    #[derive(Default)]
    pub enum Protocol ("protocol") {
        /// HTTP/1.1 and h2c.
        #[default]
        Http = "http",
        /// gRPC over HTTP/2.
        Grpc = "grpc",
        /// Opaque TCP.
        Tcp = "tcp",
    }
}

keyword_enum! {
    /// How an outbound listener routes.
    pub enum OutboundKind ("outbound kind") {
        /// By `Host` / `:authority`; also an HTTP proxy and `CONNECT`.
        Http = "http",
        /// Every connection to one service.
        Tcp = "tcp",
    }
}

keyword_enum! {
    /// Log line format.
    #[derive(Default)]
    pub enum LogFormat ("log format") {
        /// Human-readable lines.
        #[default]
        Text = "text",
        /// One JSON object a line.
        Json = "json",
    }
}

keyword_enum! {
    /// Which broker carries published messages.
    #[derive(Default)]
    pub enum BrokerKind ("broker kind") {
        /// The mesh itself: no dependency, across datacenters.
        #[default]
        Mesh = "mesh",
        /// NATS JetStream: messages survive a node's death.
        Nats = "nats",
    }
}

keyword_enum! {
    /// What `[authorization]` does with a call no rule allows.
    #[derive(Default)]
    pub enum AuthorizationDefault ("authorization default") {
        /// Serve it: the rules are not consulted.
        #[default]
        Allow = "allow",
        /// Refuse it.
        Deny = "deny",
        /// Serve it, and log and count it as a denial.
        Audit = "audit",
    }
}
