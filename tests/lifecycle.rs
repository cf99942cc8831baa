//! A node's life: reload on SIGHUP, drain on SIGTERM or POST /drain, logs, metrics, the admin
//! API, the embedded defaults, and the demo. Real `ferry` processes; no root needed.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::{
    assert_ferry_error, curl, eventually, ferry_bin, get, greeter_node, redis_cli, run, wait_ready,
    wait_routable, Backend, Node, Service, TempDir,
};

fn admin_get(node: &Node, path: &str) -> support::Response {
    curl(&[&format!("http://{}{path}", node.admin)])
}

fn append(node: &Node, toml: &str) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(node.config_path())
        .expect("the node's config file is writable");
    file.write_all(toml.as_bytes())
        .expect("can append to the config");
}

#[test]
fn sighup_with_a_bad_config_keeps_the_last_good_one_and_says_why() {
    let (_backend, node) = greeter_node("");
    append(&node, "\n[bogus]\nanswer = 42\n");
    node.signal("HUP");
    let readyz = eventually(Duration::from_secs(10), || {
        let r = admin_get(&node, "/readyz");
        if r.body.contains("reload refused") {
            Ok(r)
        } else {
            Err(format!(
                "/readyz does not mention the refused reload yet: {}",
                r.body
            ))
        }
    });
    assert_eq!(
        readyz.status, 200,
        "the node still serves, so it stays ready"
    );
    assert!(
        readyz.body.contains("bogus"),
        "names the key: {}",
        readyz.body
    );
    assert!(
        readyz.body.contains("node.toml:") || readyz.body.contains(".toml:"),
        "names the file and line: {}",
        readyz.body
    );
    assert!(node.log().contains("reload refused"), "and logs it");
    let response = get(node.outbound, "greeter", "/hello").expect("curl runs");
    assert_eq!(
        response.status, 200,
        "still serving on the last good config"
    );
}

#[test]
fn sighup_with_a_good_config_applies_new_deadlines_live() {
    let (_backend, node) = greeter_node("");
    let slow = get(node.outbound, "greeter", "/slow?ms=1500").expect("curl runs");
    assert_eq!(slow.status, 200, "the default deadline is 15 s");
    append(&node, "\n[deadlines]\ndefault = \"500ms\"\n");
    node.signal("HUP");
    eventually(Duration::from_secs(10), || {
        let r = get(node.outbound, "greeter", "/slow?ms=1500")?;
        if r.status == 504 {
            Ok(())
        } else {
            Err(format!("still {} after the reload", r.status))
        }
    });
    let late = get(node.outbound, "greeter", "/slow?ms=1500").expect("curl runs");
    assert_ferry_error(&late, 504, "timeout", "greeter");
}

#[test]
fn sigterm_lets_the_call_in_flight_finish_then_exits_zero() {
    let (backend, node) = greeter_node("");
    let outbound = node.outbound;
    let call = thread::spawn(move || get(outbound, "greeter", "/slow?ms=1500"));
    // The backend records a path when the request arrives: then the call is in flight.
    eventually(Duration::from_secs(10), || {
        let seen = reqwest_free_get(backend.address, "/seen")?;
        if seen.contains("/slow") {
            Ok(())
        } else {
            Err("the slow call has not reached the backend yet".to_owned())
        }
    });
    node.signal("TERM");
    let response = call.join().expect("the caller thread").expect("curl runs");
    assert_eq!(
        response.status, 200,
        "the call in flight finished: {}",
        response.body
    );
    assert_eq!(
        node.wait_exit(Duration::from_secs(15)),
        Some(0),
        "then the node exited 0"
    );
}

#[test]
fn post_drain_stops_the_node() {
    let (_backend, node) = greeter_node("");
    let drained = curl(&["-X", "POST", &format!("http://{}/drain", node.admin)]);
    assert_eq!(drained.status, 202);
    assert_eq!(node.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn json_logs_are_one_json_object_a_line() {
    let (_backend, node) = greeter_node("\n[log]\nformat = \"json\"\n");
    get(node.outbound, "greeter", "/hello").expect("curl runs");
    let log = node.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "the node logged something: {log}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
    }
}

#[test]
fn admin_endpoints_answer_as_the_reference_says() {
    let (_backend, node) = greeter_node("");
    let healthz = admin_get(&node, "/healthz");
    assert_eq!((healthz.status, healthz.body.trim()), (200, "ok"));
    assert_eq!(admin_get(&node, "/readyz").status, 200);

    let services: serde_json::Value =
        serde_json::from_str(&admin_get(&node, "/services").body).expect("JSON");
    assert_eq!(services[0]["name"], "greeter");
    assert_eq!(services[0]["healthy"], true);

    let routes: serde_json::Value =
        serde_json::from_str(&admin_get(&node, "/routes").body).expect("JSON");
    let row = &routes[0];
    for field in [
        "service",
        "datacenter",
        "node",
        "endpoint",
        "via",
        "metric",
        "healthy",
    ] {
        assert!(row.get(field).is_some(), "/routes rows have {field}: {row}");
    }

    let config: serde_json::Value =
        serde_json::from_str(&admin_get(&node, "/config").body).expect("JSON");
    assert_eq!(config["node"]["name"], "solo");
    assert!(config["service"].is_array());

    let peers: serde_json::Value =
        serde_json::from_str(&admin_get(&node, "/peers").body).expect("JSON");
    assert!(peers.is_array());
    assert_eq!(admin_get(&node, "/no-such-thing").status, 404);
    assert_eq!(admin_get(&node, "/drain").status, 405, "drain needs POST");
}

#[test]
fn metrics_name_what_the_reference_lists_on_both_nodes() {
    let web = Backend::http("web");
    let redis = Backend::redis("redis");
    let b = Node::builder("b")
        .service(Service::http("greeter", web.address).health("/healthz"))
        .service(Service::tcp("redis", redis.address));
    let a = Node::builder("a")
        .peer(b.tunnel(), b.public_key())
        .tcp_outbound("redis");
    let b = b.trust(a.public_key()).start();
    let a = a.start();
    wait_ready(&b);
    wait_ready(&a);
    wait_routable(&a, "greeter");
    assert_eq!(
        get(a.outbound, "greeter", "/hello")
            .expect("curl runs")
            .status,
        200
    );
    let set = eventually(Duration::from_secs(10), || {
        redis_cli(a.tcp_outbound("redis"), &["SET", "k", "v"])
    });
    assert_eq!(set.trim(), "OK");

    let scrape = |node: &Node| admin_get(node, "/metrics").body;
    let on_a = eventually(Duration::from_secs(10), || {
        let text = scrape(&a);
        if text.contains("ferry_bytes_total") {
            Ok(text)
        } else {
            Err("no byte counts yet")
        }
    });
    for wanted in [
        r#"ferry_requests_total{service="greeter",datacenter="dc1",code="200",direction="outbound"}"#,
        "ferry_request_duration_seconds_bucket{",
        "ferry_tcp_connections_total{",
        r#"ferry_bytes_total{direction="sent"}"#,
        r#"ferry_tunnel_peers{state="up"} 1"#,
        &format!(r#"ferry_tunnel_rtt_seconds{{peer="{}"}}"#, b.public_key),
        r#"ferry_tunnel_handshakes_total{result="ok"}"#,
        r#"ferry_routes{datacenter="dc1"}"#,
    ] {
        assert!(
            on_a.contains(wanted),
            "node a's /metrics lacks {wanted}:\n{on_a}"
        );
    }
    let on_b = scrape(&b);
    assert!(
        on_b.contains(r#"ferry_requests_total{service="greeter",datacenter="dc1",code="200",direction="inbound"}"#),
        "node b counts the inbound call:\n{on_b}"
    );
}

#[test]
fn the_demo_runs_every_step_and_exits_zero() {
    let state = TempDir::new("demo");
    let ran = run(
        Command::new(ferry_bin())
            .args(["demo", "--once"])
            .env("FERRY_STATE_DIR", state.path()),
        Duration::from_secs(120),
    );
    assert!(
        ran.success(),
        "ferry demo --once failed ({:?}):\n{}\n{}",
        ran.code,
        ran.stdout,
        ran.stderr
    );
    assert!(ran.stdout.contains("Every step worked"), "{}", ran.stdout);
    assert!(!ran.stdout.contains('✗'), "{}", ran.stdout);
}

#[test]
fn with_no_config_file_a_node_runs_on_the_embedded_defaults() {
    let state = TempDir::new("defaults");
    let mut child = Command::new(ferry_bin())
        .arg("run")
        .env("FERRY_STATE_DIR", state.path())
        .env_remove("FERRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry runs");
    let ready = std::panic::catch_unwind(|| {
        eventually(Duration::from_secs(20), || {
            let r = support::curl_ran(&["http://127.0.0.1:7702/readyz"]).response()?;
            if r.status == 200 {
                Ok(())
            } else {
                Err(format!("/readyz {}", r.status))
            }
        })
    });
    let key = state.join("node.key");
    let mode = fs::metadata(&key)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    let no_route =
        support::curl_ran(&["http://127.0.0.1:7701/", "-H", "Host: nothing-here"]).response();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_ok(), "admin on 127.0.0.1:7702 never became ready");
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "the key was created at $FERRY_STATE_DIR/node.key, mode 0600"
    );
    let no_route = no_route.expect("the outbound on 127.0.0.1:7701 answers");
    assert_ferry_error(&no_route, 503, "no-route", "nothing-here");
}

/// A GET straight to a backend (no Ferry in between), returning the body.
fn reqwest_free_get(address: std::net::SocketAddr, path: &str) -> Result<String, String> {
    let r = support::curl_ran(&[&format!("http://{address}{path}")]).response()?;
    Ok(r.body)
}

#[test]
fn ferry_config_names_the_file_and_flags_override_it() {
    let web = Backend::http("web");
    let builder = Node::builder("from-env");
    let dir = TempDir::new("env-config");
    let config = dir.join("node.toml");
    fs::write(&config, builder.config_text()).expect("can write the config");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_tcp_port()));
    let mut child = Command::new(ferry_bin())
        .args(["run", "--admin", &admin.to_string(), "--name", "renamed"])
        .args(["--service", &format!("flagged={}/http", web.address)])
        .env("FERRY_CONFIG", &config)
        .env("FERRY_STATE_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry runs");
    let status = std::panic::catch_unwind(|| {
        eventually(Duration::from_secs(20), || {
            let r = support::curl_ran(&[&format!("http://{admin}/status")]).response()?;
            serde_json::from_str::<serde_json::Value>(&r.body).map_err(|e| e.to_string())
        })
    });
    let services = support::curl_ran(&[&format!("http://{admin}/services")]).response();
    let _ = child.kill();
    let _ = child.wait();
    let status = status.unwrap_or_else(|_| panic!("no admin API on the --admin address {admin}"));
    assert_eq!(
        status["name"], "renamed",
        "--name overrides the file: {status}"
    );
    let services = services.expect("/services answers").body;
    assert!(
        services.contains("\"flagged\""),
        "--service adds a service: {services}"
    );
}
