//! The `ferry` command line as the reference (`docs/reference.md`) promises it. Needs no root or namespaces.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use support::{ferry, wait_ready, wait_routable, Backend, Node, Service, TempDir};

/// A WireGuard-style key: 44 characters of standard base64 for 32 bytes.
fn assert_public_key(key: &str) {
    assert_eq!(key.len(), 44, "public key {key:?} is not 44 characters");
    assert!(
        key.ends_with('=') && !key.ends_with("=="),
        "{key:?} is not 32 bytes of base64"
    );
    assert!(
        key[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
        "{key:?} is not standard base64"
    );
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn keygen_writes_a_private_file_and_prints_the_public_key() {
    let dir = TempDir::new("keygen");
    let key = dir.join("node.key");
    let ran = ferry(&["keygen", "--out", key.to_str().unwrap()], dir.path());
    assert!(ran.success(), "keygen failed: {ran:?}");
    assert_public_key(&last_line(&ran.stdout));
    let mode = fs::metadata(&key)
        .expect("keygen wrote the key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode is {:o}", mode & 0o777);
}

#[test]
fn keygen_refuses_to_overwrite_an_existing_key() {
    let dir = TempDir::new("keygen-twice");
    let key = dir.join("node.key");
    let path = key.to_str().unwrap();
    assert!(ferry(&["keygen", "--out", path], dir.path()).success());
    let before = fs::read(&key).expect("the first keygen wrote the key file");
    let again = ferry(&["keygen", "--out", path], dir.path());
    assert!(
        !again.success(),
        "second keygen over {path} succeeded: {again:?}"
    );
    assert!(
        !again.stderr.trim().is_empty(),
        "refusal says nothing on stderr"
    );
    assert_eq!(
        fs::read(&key).unwrap(),
        before,
        "the existing key was changed"
    );
}

#[test]
fn pubkey_prints_the_key_that_keygen_printed() {
    let dir = TempDir::new("pubkey");
    let key = dir.join("node.key");
    let path = key.to_str().unwrap();
    let generated = ferry(&["keygen", "--out", path], dir.path());
    assert!(generated.success(), "keygen failed: {generated:?}");
    let shown = ferry(&["pubkey", "--key", path], dir.path());
    assert!(shown.success(), "pubkey failed: {shown:?}");
    assert_public_key(&last_line(&shown.stdout));
    assert_eq!(last_line(&shown.stdout), last_line(&generated.stdout));
}

/// A scratch directory holding `node.key`, for configs to name.
fn dir_with_key(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    let key = dir.join("node.key");
    let made = ferry(
        &["keygen", "--out", key.to_str().expect("a UTF-8 temp path")],
        dir.path(),
    );
    assert!(made.success(), "keygen failed: {made:?}");
    dir
}

#[test]
fn check_prints_the_effective_config_of_a_good_file() {
    let dir = dir_with_key("check-good");
    let config = dir.join("good.toml");
    // No datacenter given: the effective config must show the default one.
    fs::write(
        &config,
        "[node]\nname = \"checked-node\"\nkey_file = \"node.key\"\n\n\
         [[service]]\nname = \"greeter\"\naddress = \"127.0.0.1:18080\"\nprotocol = \"http\"\n\n\
         [[outbound]]\nkind = \"http\"\nlisten = \"127.0.0.1:17701\"\n",
    )
    .unwrap();
    let ran = ferry(&["check", "--config", config.to_str().unwrap()], dir.path());
    assert_eq!(ran.code, Some(0), "check rejected a good config: {ran:?}");
    for expected in ["checked-node", "greeter", "127.0.0.1:18080", "dc1"] {
        assert!(
            ran.stdout.contains(expected),
            "effective config lacks {expected}:\n{}",
            ran.stdout
        );
    }
}

/// True when, near a stderr line naming `key`, stderr also names the file and `line`.
fn names_error(stderr: &str, file: &str, line: usize, key: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().collect();
    let near = |i: usize| lines[i.saturating_sub(4)..(i + 5).min(lines.len())].join("\n");
    (0..lines.len())
        .filter(|&i| lines[i].contains(key))
        .map(near)
        .any(|text| text.contains(file) && has_number(&text.replace(file, ""), line))
}

/// True when `n` stands in `text` as a whole number, not part of a longer one.
fn has_number(text: &str, n: usize) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|word| word == n.to_string())
}

#[test]
fn check_names_every_error_with_file_line_and_key() {
    let dir = dir_with_key("check-bad");
    let config = dir.join("bad.toml");
    let text = "[node]\n\
                name = \"bad\"\n\
                colour = \"blue\"\n\
                key_file = \"node.key\"\n\
                \n\
                [admin]\n\
                listen = \"not-an-address\"\n";
    assert_eq!(text.lines().nth(2), Some("colour = \"blue\""));
    assert_eq!(text.lines().nth(6), Some("listen = \"not-an-address\""));
    fs::write(&config, text).unwrap();
    let ran = ferry(&["check", "--config", config.to_str().unwrap()], dir.path());
    assert_eq!(ran.code, Some(2), "check of a bad config: {ran:?}");
    assert!(
        names_error(&ran.stderr, "bad.toml", 3, "colour"),
        "stderr does not name bad.toml, line 3, key colour:\n{}",
        ran.stderr
    );
    assert!(
        names_error(&ran.stderr, "bad.toml", 7, "listen"),
        "stderr does not name bad.toml, line 7, key listen:\n{}",
        ran.stderr
    );
}

/// `run` refuses a peer it cannot authenticate (no key) and a trust file it cannot read;
/// `check` must refuse them too, rather than pass a config that cannot run.
#[test]
fn check_refuses_what_run_would_refuse_of_the_tunnel_keys() {
    let dir = dir_with_key("check-keys");
    let cases = [
        (
            "keyless.toml",
            "[node]\nkey_file = \"node.key\"\n\n[tunnel]\npeers = [{ address = \"127.0.0.1:7700\" }]\n",
            5,
            "peers",
            "has no key",
        ),
        (
            "no-trust-file.toml",
            "[node]\nkey_file = \"node.key\"\n\n[tunnel]\n\ntrust_file = \"missing-keys.txt\"\n",
            6,
            "trust_file",
            "missing-keys.txt",
        ),
    ];
    for (name, text, line, key, says) in cases {
        let config = dir.join(name);
        fs::write(&config, text).unwrap();
        let ran = ferry(&["check", "--config", config.to_str().unwrap()], dir.path());
        assert_eq!(ran.code, Some(2), "check of {name}: {ran:?}");
        assert!(
            names_error(&ran.stderr, name, line, key) && ran.stderr.contains(says),
            "stderr does not name {name}, line {line}, key {key} and say {says:?}:\n{}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "check of {name} printed a config");
    }
}

#[test]
fn every_command_has_help() {
    let dir = TempDir::new("help");
    let top = ferry(&["--help"], dir.path());
    assert!(top.success(), "ferry --help: {top:?}");
    let commands: [(&str, &[&str]); 9] = [
        ("run", &["--config", "--peer", "--service"]),
        ("demo", &["--once"]),
        ("keygen", &["--out"]),
        ("pubkey", &["--key"]),
        ("check", &["--config"]),
        ("status", &["--admin", "--json"]),
        ("peers", &["--admin", "--json"]),
        ("routes", &["--admin", "--json"]),
        ("services", &["--admin", "--json"]),
    ];
    for (command, flags) in commands {
        assert!(
            top.stdout.contains(command),
            "ferry --help does not list {command}"
        );
        let ran = ferry(&[command, "--help"], dir.path());
        assert!(ran.success(), "ferry {command} --help: {ran:?}");
        for flag in flags {
            assert!(
                ran.stdout.contains(flag),
                "ferry {command} --help lacks {flag}:\n{}",
                ran.stdout
            );
        }
    }
}

#[test]
fn inspection_commands_read_a_running_node() {
    let backend = Backend::http("greeter-backend");
    let node = Node::builder("inspected")
        .service(Service::http("greeter", backend.address).health("/healthz"))
        .start();
    wait_ready(&node);
    wait_routable(&node, "greeter");
    let admin = node.admin.to_string();
    let state = node.dir().path();

    let table = ferry(&["services", "--admin", &admin], state);
    assert!(
        table.success() && table.stdout.contains("greeter"),
        "services: {table:?}"
    );

    let json = |command: &str| -> serde_json::Value {
        let ran = ferry(&[command, "--admin", &admin, "--json"], state);
        assert!(ran.success(), "ferry {command} --json: {ran:?}");
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("ferry {command} --json is not JSON ({e}):\n{}", ran.stdout))
    };
    assert!(json("services").to_string().contains("greeter"));
    let routes = json("routes");
    let routes = routes.as_array().expect("routes --json is an array");
    assert!(
        routes.iter().any(|r| r["service"] == "greeter"),
        "no route for greeter in {routes:?}"
    );
    assert!(json("peers").is_array(), "peers --json is not an array");
    assert!(
        json("status").to_string().contains("inspected"),
        "status does not name the node"
    );

    let status = ferry(&["status", "--admin", &admin], state);
    assert!(
        status.success() && status.stdout.contains("inspected"),
        "status: {status:?}"
    );
}
