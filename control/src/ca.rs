//! `ferry ca init`, `sign` and `show`: the mesh certificate authority, as files an operator
//! keeps (`docs/certificates.md`). The certificate format and its checks are the tunnel's
//! (`ferry_tunnel::certificate`); this is the command line around them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use ferry_tunnel::certificate::{CaKey, Certificate, Kind, Subject};
use ferry_tunnel::{write_secret, Identity, PublicKey};

use crate::cli::{CaCommand, CaSignArgs};
use crate::config::{check_datacenter_name, check_node_name, check_service_name, parse_duration};

const CA_KEY: &str = "ca.key";
const CA_CERT: &str = "ca.crt";

/// Runs one `ferry ca` command.
pub fn run(command: CaCommand) -> ExitCode {
    let done = match command {
        CaCommand::Init { name, out, valid } => init(&name, &out, &valid),
        CaCommand::Sign(args) => sign(&args),
        CaCommand::Show { file, ca, json } => show(&file, ca.as_deref(), json),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry ca: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validity(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(format!("--valid {text}: at least a second")),
        Err(e) => Err(format!("--valid: {e}")),
    }
}

fn init(name: &str, out: &Path, valid: &str) -> Result<(), String> {
    check_node_name(name).map_err(|e| format!("--name: {e}"))?;
    let valid_for = validity(valid)?;
    let (key_path, cert_path) = (out.join(CA_KEY), out.join(CA_CERT));
    for path in [&key_path, &cert_path] {
        if path.exists() {
            return Err(format!(
                "{} exists; refusing to overwrite a CA",
                path.display()
            ));
        }
    }
    let key = CaKey::generate().map_err(|e| e.to_string())?;
    let subject = Subject {
        kind: Kind::Ca,
        key: key.public(),
        name: name.to_owned(),
        datacenter: String::new(),
        services: vec![],
        groups: vec![],
    };
    let certificate = key
        .sign(subject, SystemTime::now(), valid_for)
        .map_err(|e| e.to_string())?;
    write_secret(&key_path, &key.to_base64()).map_err(|e| e.to_string())?;
    write_file(&cert_path, &certificate.to_pem())?;
    eprintln!("wrote {} and {}", key_path.display(), cert_path.display());
    println!("CA {name}, valid {}", certificate.validity());
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read_certificate(path: &Path) -> Result<Certificate, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Certificate::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The CA in `dir`: its key and its certificate, which must belong together.
fn read_ca(dir: &Path) -> Result<(CaKey, Certificate), String> {
    let key_path = dir.join(CA_KEY);
    let text = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
    let key = CaKey::from_base64(&text).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let certificate = read_certificate(&dir.join(CA_CERT))?;
    if certificate.subject.kind != Kind::Ca || certificate.subject.key != key.public() {
        return Err(format!(
            "{} is not the certificate of the key in {}",
            dir.join(CA_CERT).display(),
            key_path.display()
        ));
    }
    Ok((key, certificate))
}

fn names(list: &[String], what: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in list.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        names.push(check_service_name(name).map_err(|e| format!("--{what}: {e}"))?);
    }
    Ok(names)
}

fn sign(args: &CaSignArgs) -> Result<(), String> {
    let (key, ca) = read_ca(&args.ca)?;
    let public: PublicKey = match (&args.key, &args.pubkey) {
        (Some(file), _) => Identity::load(file).map_err(|e| e.to_string())?.public(),
        (None, Some(text)) => text.parse().map_err(|e| format!("--pubkey: {e}"))?,
        (None, None) => return Err("give the node's --key FILE or --pubkey KEY".into()),
    };
    check_node_name(&args.name).map_err(|e| format!("--name: {e}"))?;
    let datacenter = match &args.datacenter {
        Some(dc) => check_datacenter_name(dc).map_err(|e| format!("--datacenter: {e}"))?,
        None => String::new(),
    };
    let now = SystemTime::now();
    if let Err(why) = ca.verify(&ca, now) {
        return Err(format!("the CA cannot sign: {why}"));
    }
    let mut valid_for = validity(&args.valid)?;
    let ca_left = Duration::from_secs(ca.not_after.saturating_sub(seconds(now)));
    if valid_for > ca_left {
        // A certificate that outlives its CA would be refused from the CA's expiry on
        // anyway; say so now rather than let it look valid.
        eprintln!("ferry ca: the CA expires first; the certificate is valid until then");
        valid_for = ca_left;
    }
    let subject = Subject {
        kind: Kind::Node,
        key: public.0,
        name: args.name.clone(),
        datacenter,
        services: names(&args.services, "services")?,
        groups: names(&args.groups, "groups")?,
    };
    let certificate = key
        .sign(subject, now, valid_for)
        .map_err(|e| e.to_string())?;
    write_file(&args.out, &certificate.to_pem())?;
    eprintln!("wrote {}", args.out.display());
    println!("{} ({public}), valid {}", args.name, certificate.validity());
    Ok(())
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn show(file: &Path, ca_dir: Option<&Path>, json: bool) -> Result<(), String> {
    let certificate = read_certificate(file)?;
    let now = SystemTime::now();
    let checked_by: Option<PathBuf> = ca_dir.map(|dir| dir.join(CA_CERT));
    let status = match &checked_by {
        Some(path) => {
            let ca = read_certificate(path)?;
            match certificate.verify(&ca, now) {
                Ok(()) => format!("valid, signed by CA {}", ca.subject.name),
                Err(why) => format!("refused: {why}"),
            }
        }
        None => {
            let at = seconds(now);
            if at < certificate.not_before || at > certificate.not_after {
                "expired or not yet valid (signature not checked: --ca DIR checks it)".into()
            } else {
                "within its validity (signature not checked: --ca DIR checks it)".into()
            }
        }
    };
    let encode = |key: &[u8; 32]| PublicKey(*key).to_string();
    let subject = &certificate.subject;
    let fields = serde_json::json!({
        "kind": subject.kind.to_string(),
        "key": encode(&subject.key),
        "name": subject.name,
        "datacenter": subject.datacenter,
        "services": subject.services,
        "groups": subject.groups,
        "issuer": encode(&certificate.issuer),
        "not_before": ferry_tunnel::rfc3339(certificate.not_before),
        "not_after": ferry_tunnel::rfc3339(certificate.not_after),
        "status": status,
    });
    if json {
        println!("{fields}");
    } else {
        crate::admin_client::print_fields(&fields);
    }
    Ok(())
}
