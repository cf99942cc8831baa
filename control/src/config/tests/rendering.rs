//! The config printed back, as `ferry check` prints it (TOML) and `/config` serves it (JSON).

use std::path::{Path, PathBuf};

use super::{parse, FILE, REFERENCE_EXAMPLE};
use crate::config::*;

#[test]
fn to_toml_round_trips() {
    let text = format!(
        "{REFERENCE_EXAMPLE}\n[deadlines]\ndefault = \"10s\"\n\
         per_service = {{ greeter = \"1.5s\" }}\n[log]\nformat = \"json\"\n"
    );
    let text = text.replace(
        "# trust_file = \"trusted.keys\"",
        "trust_file = \"trusted.keys\"",
    );
    let config = parse(&text);
    assert_eq!(config.log.format, LogFormat::Json);
    let rendered = config.to_toml();
    assert_eq!(parse(&rendered), config, "rendered:\n{rendered}");
    // In another directory too: the paths in it are absolute.
    let elsewhere = Config::parse(&rendered, Path::new("/tmp/other.toml")).expect("valid");
    assert_eq!(elsewhere.node, config.node);
    assert_eq!(elsewhere.tunnel, config.tunnel);

    let mut defaults = Config::defaults();
    let rendered = defaults.to_toml();
    defaults.source = Some(PathBuf::from(FILE));
    assert_eq!(parse(&rendered), defaults, "rendered:\n{rendered}");
}

#[test]
fn to_toml_uses_the_file_key_names() {
    let rendered = parse(REFERENCE_EXAMPLE).to_toml();
    for needle in [
        "[[service]]",
        "[[outbound]]",
        "[service.health]",
        "http = \"/healthz\"",
        "interval = \"1s\"",
        "kind = \"tcp\"",
        "key_file = \"/etc/ferry/node.key\"",
        "default = \"15s\"",
        "format = \"text\"",
    ] {
        assert!(
            rendered.contains(needle),
            "{needle} missing from:\n{rendered}"
        );
    }
    let json = serde_json::to_value(parse(REFERENCE_EXAMPLE)).expect("json");
    assert_eq!(json["service"][0]["health"]["interval"], "1s");
    assert_eq!(json["registry"]["kind"], "mesh");
}
