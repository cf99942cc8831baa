//! Authorization rules as data and a pure decision: who may call which local service, by the
//! caller's authenticated identity (its key, or what its certificate names), the method and
//! the path.

use std::fmt;

use http::Method;

use ferry_tunnel::{PeerIdentity, PublicKey};

/// What happens to a call that no rule allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// Served: the rules are not consulted.
    #[default]
    Allow,
    /// Refused: 403, gRPC status 7, a TCP stream closed.
    Deny,
    /// Served, but logged and counted as a denial would be: to try rules safely.
    Audit,
}

/// Who a rule lets in: one part of the caller's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `service:NAME`: a caller whose certificate names that service.
    Service(String),
    /// `group:NAME`: a caller whose certificate names that group.
    Group(String),
    /// `node:NAME`: a caller whose certificate is for that node name.
    Node(String),
    /// `datacenter:NAME`: a caller whose certificate binds it to that datacenter.
    Datacenter(String),
    /// `key:BASE64`: a caller holding that key, with or without a certificate.
    Key(PublicKey),
}

impl Selector {
    /// Reads `KIND:VALUE`.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!("{text:?} is not a caller: write service:, group:, node:, datacenter: or key: and a value")
        })?;
        if value.is_empty() {
            return Err(format!("{text:?} names no {kind}"));
        }
        let value = value.to_owned();
        match kind {
            "service" => Ok(Selector::Service(value)),
            "group" => Ok(Selector::Group(value)),
            "node" => Ok(Selector::Node(value)),
            "datacenter" => Ok(Selector::Datacenter(value)),
            "key" => value
                .parse()
                .map(Selector::Key)
                .map_err(|e| format!("{text:?}: {e}")),
            _ => Err(format!(
                "{kind:?} is not a kind of caller: service, group, node, datacenter or key"
            )),
        }
    }

    /// Whether only a certificate can say it: all but `key:`.
    pub fn needs_certificate(&self) -> bool {
        !matches!(self, Selector::Key(_))
    }

    fn matches(&self, caller: &PeerIdentity) -> bool {
        if let Selector::Key(key) = self {
            return caller.key == *key;
        }
        let Some(certificate) = &caller.certificate else {
            return false;
        };
        let subject = &certificate.subject;
        let named = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        match self {
            Selector::Service(name) => named(&subject.services, name),
            Selector::Group(name) => named(&subject.groups, name),
            Selector::Node(name) => subject.name.eq_ignore_ascii_case(name),
            Selector::Datacenter(name) => subject.datacenter.eq_ignore_ascii_case(name),
            Selector::Key(_) => false,
        }
    }
}

/// One rule: the callers it lets call a service, optionally only with some methods and paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// A local service, or `*` for all of them.
    pub service: String,
    /// Any of these callers.
    pub from: Vec<Selector>,
    /// Only these methods (HTTP and gRPC); empty: any. A TCP connection has none, so a rule
    /// with methods never lets one in.
    pub methods: Vec<Method>,
    /// Only these paths: exact, or a prefix when ending in `*`; empty: any. As for methods, a
    /// rule with paths never lets a TCP connection in.
    pub paths: Vec<String>,
}

/// What a call is, as far as the rules look.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The local service it is for.
    pub service: &'a str,
    /// Its method; `None` for a TCP connection.
    pub method: Option<&'a Method>,
    /// Its path, without the query; `None` for a TCP connection.
    pub path: Option<&'a str>,
}

impl Rule {
    fn matches(&self, caller: &PeerIdentity, call: &Call) -> bool {
        let service = self.service == "*" || self.service.eq_ignore_ascii_case(call.service);
        let method =
            self.methods.is_empty() || call.method.is_some_and(|m| self.methods.contains(m));
        let path = self.paths.is_empty()
            || call
                .path
                .is_some_and(|path| self.paths.iter().any(|p| path_matches(p, path)));
        service && method && path && self.from.iter().any(|s| s.matches(caller))
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// The decision on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Served.
    Allow,
    /// Refused.
    Deny,
    /// No rule allows it, and the policy only audits: served, logged and counted.
    AuditDeny,
}

impl Decision {
    /// The `decision` label of `ferry_authorization_decisions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::AuditDeny => "audit-deny",
        }
    }
}

/// `[authorization]`: a default and the rules that allow calls past it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// What happens to a call no rule allows.
    pub default: Unmatched,
    /// The rules, any of which allows a call.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Whether the policy decides anything: under `allow`, every call is served unlooked-at.
    pub fn is_active(&self) -> bool {
        self.default != Unmatched::Allow
    }

    /// Decides on `call` from `caller`.
    pub fn decide(&self, caller: &PeerIdentity, call: &Call) -> Decision {
        if !self.is_active() || self.rules.iter().any(|r| r.matches(caller, call)) {
            return Decision::Allow;
        }
        match self.default {
            Unmatched::Audit => Decision::AuditDeny,
            _ => Decision::Deny,
        }
    }
}

/// The caller as a 403's body and the log name it: `web-1 of eu-west (key …)`, or its key.
pub struct CallerName<'a>(pub &'a PeerIdentity);

impl fmt::Display for CallerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.certificate {
            Some(c) if c.subject.datacenter.is_empty() => {
                write!(f, "{} (key {})", c.subject.name, self.0.key)
            }
            Some(c) => write!(
                f,
                "{} of {} (key {})",
                c.subject.name, c.subject.datacenter, self.0.key
            ),
            None => write!(f, "key {}", self.0.key),
        }
    }
}

#[cfg(test)]
mod tests;
