//! Whom the node trusts and what it presents: the keys of `peers`, `trust` and `trust_file`,
//! the CAs of `[tunnel] ca`, and its own certificate, `[tunnel] certificate`. All are read
//! from files that change under a running node, so they are read together, checked before
//! anything is replaced, and reread when a file changes (a bad edit keeps what was trusted).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_tunnel::certificate::{Certificate, Kind, Refusal};
use ferry_tunnel::{PublicKey, Trust, MAX_CERTIFICATE};

use crate::config::Config;

/// A certificate this close to its end is a warning in the log and in `/status`.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86_400);

/// Everything the tunnel's `Trust` takes from the config, read and checked.
#[derive(Debug)]
pub struct TrustConfig {
    /// The keys allowed to connect: peers', `trust` and `trust_file`.
    pub keys: Vec<PublicKey>,
    /// The CAs whose certificates vouch for keys.
    pub authorities: Vec<Certificate>,
    /// This node's certificate.
    pub certificate: Option<Certificate>,
    /// What is usable but wrong: an expired or nearly expired certificate, a certificate
    /// from a CA this node does not trust, a service the certificate does not name.
    pub warnings: Vec<String>,
}

/// Why the trust could not be read: the `[tunnel]` key whose value or file is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustError {
    /// `peers`, `trust`, `trust_file`, `ca` or `certificate`.
    pub key: &'static str,
    /// What is wrong, naming the file.
    pub message: String,
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tunnel.{}: {}", self.key, self.message)
    }
}

impl From<TrustError> for String {
    fn from(e: TrustError) -> String {
        e.to_string()
    }
}

fn at(key: &'static str) -> impl Fn(String) -> TrustError {
    move |message| TrustError { key, message }
}

impl TrustConfig {
    /// Reads every file `config` names. `key`: this node's public key, which its certificate
    /// must name (unknown before the key file exists).
    pub fn read(config: &Config, key: Option<PublicKey>) -> Result<TrustConfig, TrustError> {
        let now = SystemTime::now();
        let mut warnings = Vec::new();
        let authorities = config
            .tunnel
            .ca
            .iter()
            .map(|path| read_authority(path, now, &mut warnings))
            .collect::<Result<Vec<_>, _>>()
            .map_err(at("ca"))?;
        let certificate = match &config.tunnel.certificate {
            Some(path) => Some(
                read_own(path, config, key, &authorities, now, &mut warnings)
                    .map_err(at("certificate"))?,
            ),
            None => None,
        };
        Ok(TrustConfig {
            keys: trusted_keys(config)?,
            authorities,
            certificate,
            warnings,
        })
    }

    /// Makes `trust` hold what was read.
    pub fn apply(self, trust: &Trust) {
        trust.replace(self.keys);
        trust.set_authorities(self.authorities);
        trust.set_certificate(self.certificate);
        record_expiry(trust);
    }
}

/// The keys allowed to open links to this node: its peers', its `trust` list and its
/// `trust_file`.
fn trusted_keys(config: &Config) -> Result<Vec<PublicKey>, TrustError> {
    let mut keys: Vec<PublicKey> = super::peer_addresses(config)
        .map_err(at("peers"))?
        .into_iter()
        .map(|p| p.key)
        .collect();
    for key in &config.tunnel.trust {
        keys.push(
            key.parse()
                .map_err(|e| at("trust")(format!("trust key {key}: {e}")))?,
        );
    }
    if let Some(path) = &config.tunnel.trust_file {
        keys.extend(read_trust_file(path).map_err(at("trust_file"))?);
    }
    Ok(keys)
}

/// A trust file: one base64 key a line; blank lines and `#` comments are skipped.
fn read_trust_file(path: &Path) -> Result<Vec<PublicKey>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("trust file {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            line.parse()
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn read_certificate(path: &Path) -> Result<Certificate, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    Certificate::from_pem(&text).map_err(|e| format!("certificate {}: {e}", path.display()))
}

fn read_authority(
    path: &Path,
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<Certificate, String> {
    let ca = read_certificate(path)?;
    let name = path.display();
    if ca.subject.kind != Kind::Ca {
        return Err(format!("{name} is a node's certificate, not a CA's"));
    }
    match ca.verify(&ca, now) {
        Ok(()) => warn_if_near_end(&ca, &format!("CA {name}"), now, warnings),
        Err(Refusal::Expired(validity)) => warnings.push(format!(
            "CA {name} is not valid now (valid {validity}): nothing it signed is trusted"
        )),
        Err(e) => return Err(format!("CA {name}: {e}")),
    }
    Ok(ca)
}

fn read_own(
    path: &Path,
    config: &Config,
    key: Option<PublicKey>,
    authorities: &[Certificate],
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<Certificate, String> {
    let cert = read_certificate(path)?;
    let name = path.display();
    let subject = &cert.subject;
    if subject.kind != Kind::Node {
        return Err(format!("{name} is a CA's certificate, not a node's"));
    }
    if let Some(key) = key.filter(|key| key.0 != subject.key) {
        return Err(format!(
            "{name} is for the key {}, not this node's {key}",
            PublicKey(subject.key)
        ));
    }
    if subject.name != config.node.name {
        return Err(format!(
            "{name} is for the node {}, and this node is named {} ([node] name)",
            subject.name, config.node.name
        ));
    }
    if !subject.datacenter.is_empty()
        && !subject
            .datacenter
            .eq_ignore_ascii_case(&config.node.datacenter)
    {
        return Err(format!(
            "{name} is for datacenter {}, and this node is in {} ([node] datacenter)",
            subject.datacenter, config.node.datacenter
        ));
    }
    if cert.encode().len() > MAX_CERTIFICATE {
        return Err(format!(
            "{name} is larger than the {MAX_CERTIFICATE} bytes a handshake carries"
        ));
    }
    match authorities.iter().find(|ca| ca.subject.key == cert.issuer) {
        Some(ca) => match cert.verify(ca, now) {
            Ok(()) => warn_if_near_end(&cert, &format!("certificate {name}"), now, warnings),
            Err(Refusal::Expired(validity)) => warnings.push(format!(
                "certificate {name} is not valid now (valid {validity}): peers refuse it"
            )),
            Err(e) => return Err(format!("certificate {name}: {e}")),
        },
        None if !authorities.is_empty() => warnings.push(format!(
            "certificate {name} was not signed by any CA in [tunnel] ca"
        )),
        None => {}
    }
    for service in &config.services {
        let named = subject
            .services
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&service.name));
        if !named {
            warnings.push(format!(
                "service {} is not named in certificate {name}: peers will ignore it",
                service.name
            ));
        }
    }
    Ok(cert)
}

fn warn_if_near_end(cert: &Certificate, what: &str, now: SystemTime, warnings: &mut Vec<String>) {
    if let Some(warning) = expires_in(cert, now).and_then(expiry_warning) {
        warnings.push(format!("{what} {warning} (valid {})", cert.validity()));
    }
}

/// Seconds until `cert` expires (negative once it has), `None` for a clock before 1970.
pub fn expires_in(cert: &Certificate, now: SystemTime) -> Option<f64> {
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(cert.not_after as f64 - now)
}

/// The certificates `trust` holds, by kind (`node`, `ca`): this node's own, then its CAs.
pub(super) fn held(trust: &Trust) -> Vec<(&'static str, Certificate)> {
    let own = trust.certificate().map(|c| ("node", (*c).clone()));
    own.into_iter()
        .chain(trust.authorities().into_iter().map(|c| ("ca", c)))
        .collect()
}

/// What to say of a certificate with `left` seconds to go: nothing until 7 days before.
pub(super) fn expiry_warning(left: f64) -> Option<String> {
    if left >= EXPIRY_WARNING.as_secs_f64() {
        None
    } else if left < 0.0 {
        Some("expired".to_owned())
    } else {
        Some(format!("expires in {:.1} days", left / 86_400.0))
    }
}

/// Sets `ferry_certificate_expiry_seconds` (the node's own certificate and the soonest CA)
/// and returns the certificates within 7 days of their end, as `KIND certificate NAME: …`.
pub(super) fn record_expiry(trust: &Trust) -> Vec<String> {
    let now = SystemTime::now();
    let held: Vec<_> = held(trust)
        .into_iter()
        .filter_map(|(kind, cert)| Some((kind, expires_in(&cert, now)?, cert)))
        .collect();
    for kind in ["node", "ca"] {
        let soonest = held
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, left, _)| *left)
            .reduce(f64::min);
        if let Some(left) = soonest {
            metrics::gauge!("ferry_certificate_expiry_seconds", "kind" => kind).set(left);
        }
    }
    held.iter()
        .filter_map(|(kind, left, cert)| {
            let warning = expiry_warning(*left)?;
            Some(format!(
                "{kind} certificate {}: {warning}",
                cert.subject.name
            ))
        })
        .collect()
}

/// The files whose change rereads the trust: the trust file, the CAs and the certificate.
pub(super) fn watched_files(config: &Config) -> Vec<PathBuf> {
    let tunnel = &config.tunnel;
    tunnel
        .trust_file
        .iter()
        .chain(&tunnel.ca)
        .chain(&tunnel.certificate)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_a_warning_from_7_days_before_its_end() {
        let day = 86_400.0;
        assert_eq!(expiry_warning(8.0 * day), None);
        assert_eq!(expiry_warning(7.0 * day), None);
        assert_eq!(
            expiry_warning(2.0 * day).as_deref(),
            Some("expires in 2.0 days")
        );
        assert_eq!(expiry_warning(-1.0).as_deref(), Some("expired"));
    }
}
