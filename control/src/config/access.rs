//! `[authorization]` and `[[rate_limit]]`: what the node lets through to its local services.

use serde::Serialize;

use super::keywords::AuthorizationDefault;

/// `[authorization]`: who may call this node's services.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AuthorizationConfig {
    /// What happens to a call no rule allows.
    pub default: AuthorizationDefault,
    /// The rules: `[[authorization.rule]]` in the file.
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// One `[[authorization.rule]]`: callers allowed to call a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizationRule {
    /// A local service, or `*`.
    pub service: String,
    /// Callers, as `service:`, `group:`, `node:`, `datacenter:` or `key:` selectors.
    pub from: Vec<String>,
    /// Only these HTTP methods; empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Only these paths (a trailing `*` matches any suffix); empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// One `[[rate_limit]]`: a token bucket on calls from other nodes to a local service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitConfig {
    /// The local service.
    pub service: String,
    /// Calls a second, on average.
    pub requests_per_second: u32,
    /// Calls at once after a quiet spell; default: one second's worth.
    pub burst: u32,
}
