//! Ferry as a container (issue 20): the image (`Dockerfile`, built by `scripts/image --local`
//! with no registry) and the two-datacenter compose example (`examples/compose/`), driven by
//! real clients in the application containers' network namespaces: curl and `call_loop.py`
//! calling `http://127.0.0.1:7701` as an application beside its sidecar does. Needs a Docker
//! engine, root and `ip`: without them every test here fails, naming what is missing.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::call_loop::{epoch_seconds, CallLoop};
use support::docker::{docker, docker_ok, image, one_at_a_time, Compose};
use support::{assert_ferry_error, eventually, get_in, Response, TempDir};

/// The outbound of every application's sidecar, on the loopback they share.
const OUTBOUND: &str = "127.0.0.1:7701";
/// The size the image must stay under.
const MAX_IMAGE_BYTES: u64 = 30 * 1000 * 1000;

fn outbound() -> SocketAddr {
    OUTBOUND.parse().expect("an address")
}

/// `GET /hello` of `host` from the application in `netns`.
fn call(netns: &str, host: &str) -> Result<Response, String> {
    get_in(Some(netns), outbound(), host, "/hello")
}

/// Whose greeting a 200 carries: `greeter in dc2`.
fn served_by(response: &Response) -> Option<&str> {
    let rest = response.body.strip_prefix("hello from ")?;
    (response.status == 200).then(|| rest.split(" (").next().unwrap_or(rest))
}

/// Waits until `host` from `netns` is served by `greeter`; returns how long it took.
fn wait_served(netns: &str, host: &str, greeter: &str, within: Duration) -> Duration {
    let start = Instant::now();
    eventually(within, || match call(netns, host) {
        Ok(r) if served_by(&r) == Some(greeter) => Ok(()),
        Ok(r) => Err(format!("{host}: {} {}", r.status, r.body.trim())),
        Err(e) => Err(format!("{host}: {e}")),
    });
    start.elapsed()
}

/// A container started with `docker run -d`, removed (with its volumes) on drop.
struct Container(String);

impl Container {
    fn run(args: &[&str]) -> Container {
        Container(docker_ok(&[&["run", "--detach"], args].concat()))
    }

    fn exec(&self, command: &[&str]) -> String {
        docker_ok(&[&["exec", &self.0], command].concat())
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.0])
    }

    fn wait_healthy(&self) {
        eventually(Duration::from_secs(60), || {
            match self.inspect("{{.State.Health.Status}}").as_str() {
                "healthy" => Ok(()),
                status => Err(format!("health: {status}")),
            }
        });
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", "--volumes", &self.0]);
    }
}

#[test]
fn the_image_is_small_runs_as_non_root_keeps_its_key_and_drains_on_sigterm() {
    let image = image();
    let _serial = one_at_a_time();
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", image])
        .parse()
        .expect("a size in bytes");
    println!("image {image}: {size} bytes");
    assert!(size < MAX_IMAGE_BYTES, "the image is {size} bytes");

    // No config given: the image's /etc/ferry/ferry.toml (the embedded defaults).
    let node = Container::run(&[image]);
    node.wait_healthy();
    let status = node.exec(&["cat", "/proc/1/status"]);
    assert!(
        status.lines().any(|l| l
            .split_whitespace()
            .eq(["Uid:", "65532", "65532", "65532", "65532"])),
        "ferry runs as 65532: {status}"
    );
    // The key was made on first start, private, and is kept across a restart.
    let listing = node.exec(&["ls", "-ln", "/var/lib/ferry/node.key"]);
    assert!(listing.starts_with("-rw-------"), "{listing}");
    let pubkey = || node.exec(&["ferry", "pubkey", "--key", "/var/lib/ferry/node.key"]);
    let before = pubkey();
    docker_ok(&["restart", &node.0]);
    node.wait_healthy();
    assert_eq!(pubkey(), before, "the key survives a restart");

    // SIGTERM drains and exits 0, well before docker stop's 10 s would turn to SIGKILL.
    let asked = Instant::now();
    docker_ok(&["stop", "--time", "10", &node.0]);
    let took = asked.elapsed();
    assert_eq!(node.inspect("{{.State.ExitCode}}"), "0");
    assert!(took < Duration::from_secs(8), "docker stop took {took:?}");
    let logs = docker(&["logs", &node.0]);
    let logs = format!("{}{}", logs.stdout, logs.stderr);
    assert!(logs.contains("drain"), "the node said it drained: {logs}");

    // FERRY_CONFIG names another file; `check` reads it.
    let dir = TempDir::new("image-config");
    std::fs::write(
        dir.join("other.toml"),
        "[node]\nname = \"from-ferry-config\"\n",
    )
    .expect("write the config");
    let mount = format!("{}:/config:ro", dir.path().display());
    let checked = docker_ok(&[
        "run",
        "--rm",
        "--volume",
        &mount,
        "--env",
        "FERRY_CONFIG=/config/other.toml",
        image,
        "check",
    ]);
    assert!(checked.contains("from-ferry-config"), "{checked}");
}

#[test]
fn a_sidecar_serves_at_once_and_announces_its_application_once_it_answers() {
    let image = image();
    let _serial = one_at_a_time();
    // The application takes 15 s to listen, longer than Docker takes to call the sidecar
    // healthy; its sidecar is started beside it at once.
    let app = Container::run(&[
        "--entrypoint",
        "sh",
        image,
        "-c",
        "sleep 15; exec ferry demo-service --listen 127.0.0.1:8080 --greeting 'hello from slow app'",
    ]);
    let network = format!("container:{}", app.0);
    let sidecar = Container::run(&[
        "--network",
        &network,
        image,
        "run",
        "--service",
        "greeter=127.0.0.1:8080/http",
    ]);
    // Ferry is up and healthy while the application is not listening yet...
    sidecar.wait_healthy();
    let services = || sidecar.exec(&["wget", "-q", "-O", "-", "http://127.0.0.1:7702/services"]);
    let health = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).expect("JSON")[0]["healthy"].as_bool()
    };
    let early = services();
    assert_eq!(health(&early), Some(false), "not listening yet: {early}");
    // ...and it announces the application as soon as it answers, with nobody restarted.
    eventually(Duration::from_secs(20), || match health(&services()) {
        Some(true) => Ok(()),
        other => Err(format!("greeter healthy: {other:?}")),
    });
    assert!(
        app.inspect("{{.State.Running}}") == "true" && app.inspect("{{.RestartCount}}") == "0",
        "the application ran on undisturbed"
    );
}

/// The compose mesh up, and the calls it is for working: each application reaches `greeter`
/// in its own datacenter and in the other.
struct Mesh {
    compose: Compose,
    dc1_app: String,
    dc2_app: String,
}

impl Mesh {
    fn up(name: &str) -> Mesh {
        let compose = Compose::up(name);
        let (dc1_app, dc2_app) = (compose.netns("dc1-app"), compose.netns("dc2-app"));
        let within = Duration::from_secs(90);
        let took = wait_served(&dc1_app, "greeter", "greeter in dc1", within);
        println!("compose up: dc1's app reached greeter after {took:?}");
        wait_served(&dc1_app, "greeter.dc2", "greeter in dc2", within);
        wait_served(&dc2_app, "greeter", "greeter in dc2", within);
        wait_served(&dc2_app, "greeter.dc1", "greeter in dc1", within);
        Mesh {
            compose,
            dc1_app,
            dc2_app,
        }
    }

    fn assert_served(&self, netns: &str, host: &str, greeter: &str) {
        let response = call(netns, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(served_by(&response), Some(greeter), "{host}: {response:?}");
    }
}

#[test]
fn compose_mesh_calls_across_datacenters_and_fails_over_when_the_local_service_stops() {
    let mesh = Mesh::up("ferry-failover");
    for _ in 0..5 {
        mesh.assert_served(&mesh.dc1_app, "greeter", "greeter in dc1");
        mesh.assert_served(&mesh.dc1_app, "greeter.dc2", "greeter in dc2");
    }
    // Interception: the application calls names as if they were hosts, with busybox's wget
    // and nothing of Ferry's (its resolver is the sidecar's DNS; an init container put the
    // rules in).
    for (name, greeter) in [("greeter", "dc1"), ("greeter.dc2", "dc2")] {
        let url = format!("http://{name}/hello");
        let body = mesh
            .compose
            .exec("dc1-app", &["wget", "-q", "-O", "-", &url]);
        let expected = format!("hello from greeter in {greeter}");
        assert!(body.starts_with(&expected), "{url}: {body}");
    }
    // The CA and the keys were made by the setup container, into volumes: nothing committed.
    let certificates = mesh.compose.logs("setup");
    assert!(
        certificates.contains("keys and certificates"),
        "{certificates}"
    );

    mesh.compose.container_do("stop", "dc1-greeter");
    let took = wait_served(
        &mesh.dc1_app,
        "greeter",
        "greeter in dc2",
        Duration::from_secs(10),
    );
    println!("dc1's greeter stopped: served by dc2 after {took:?}");
    for _ in 0..5 {
        mesh.assert_served(&mesh.dc1_app, "greeter", "greeter in dc2");
    }

    // Back: the greeter and, in its new network namespace, its sidecar.
    mesh.compose.container_do("start", "dc1-greeter");
    mesh.compose.container_do("restart", "dc1-greeter-ferry");
    let took = wait_served(
        &mesh.dc1_app,
        "greeter",
        "greeter in dc1",
        Duration::from_secs(30),
    );
    println!("dc1's greeter back: served by dc1 again after {took:?}");
}

#[test]
fn a_gateway_container_killed_under_load_loses_no_call() {
    let mesh = Mesh::up("ferry-gateway-kill");
    let load = CallLoop::start(Some(&mesh.dc1_app), OUTBOUND, "greeter.dc2", 4);
    load.wait_for_calls(40);
    mesh.compose.container_do("kill", "dc1-gw-a");
    let killed_at = epoch_seconds();
    load.wait_for_a_call_after(killed_at + 3.0);
    mesh.compose.container_do("kill", "dc2-gw-b");
    let killed_again = epoch_seconds();
    load.wait_for_a_call_after(killed_again + 3.0);
    let calls = load.stop();
    let failed: Vec<_> = calls
        .iter()
        .filter(|c| !c.ok_from("greeter in dc2"))
        .collect();
    let after = calls.iter().filter(|c| c.started >= killed_again).count();
    println!(
        "{} calls while dc1-gw-a, then dc2-gw-b, were killed; {} failed",
        calls.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    assert!(after >= 8, "calls went on after the kills");
}

#[test]
fn a_datacenter_cut_off_the_wan_is_withdrawn_fast_and_back_within_2_s_of_reconnecting() {
    let mesh = Mesh::up("ferry-partition");
    let wan = mesh.compose.network("wan");
    let dc2_gateways = ["dc2-gw-a", "dc2-gw-b"].map(|s| mesh.compose.container(s));
    for gateway in &dc2_gateways {
        docker_ok(&["network", "disconnect", &wan, gateway]);
    }
    let cut = Instant::now();
    eventually(Duration::from_secs(5), || {
        match call(&mesh.dc1_app, "greeter.dc2") {
            Ok(r) if r.status == 503 => Ok(r),
            Ok(r) => Err(format!("greeter.dc2: {} {}", r.status, r.body.trim())),
            Err(e) => Err(e),
        }
    });
    println!(
        "dc2 cut off: greeter.dc2 withdrawn after {:?}",
        cut.elapsed()
    );
    // Each answer is a fast 503, not a wait on the lost datacenter.
    let asked = Instant::now();
    let refused = call(&mesh.dc1_app, "greeter.dc2").expect("an answer");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_ferry_error(&refused, 503, "no-route", "greeter");
    // Each side still serves what it has locally.
    for _ in 0..5 {
        mesh.assert_served(&mesh.dc1_app, "greeter", "greeter in dc1");
        mesh.assert_served(&mesh.dc2_app, "greeter", "greeter in dc2");
    }

    for gateway in &dc2_gateways {
        docker_ok(&["network", "connect", &wan, gateway]);
    }
    let took = wait_served(
        &mesh.dc1_app,
        "greeter.dc2",
        "greeter in dc2",
        Duration::from_secs(10),
    );
    println!("WAN reconnected: greeter.dc2 served again after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "greeter.dc2 back after {took:?}"
    );
}

#[test]
fn docker_stop_of_a_sidecar_lets_its_calls_in_flight_finish() {
    let mesh = Mesh::up("ferry-drain");
    // A call that takes 3 s at dc1's greeter, through its sidecar, is under way...
    let netns = mesh.dc1_app.clone();
    let slow = std::thread::spawn(move || {
        get_in(Some(&netns), outbound(), "greeter", "/hello?delay=3000")
    });
    eventually(Duration::from_secs(10), || {
        let logs = mesh.compose.logs("dc1-greeter");
        match logs.contains("holding /hello for 3000 ms") {
            true => Ok(()),
            false => Err(format!("the slow call has not reached the greeter: {logs}")),
        }
    });
    // ...when the greeter's sidecar is stopped.
    let stopped = Instant::now();
    mesh.compose.container_do("stop", "dc1-greeter-ferry");
    println!(
        "docker stop of dc1-greeter-ferry took {:?}",
        stopped.elapsed()
    );
    let response = slow.join().expect("the caller thread").expect("an answer");
    assert_eq!(served_by(&response), Some("greeter in dc1"), "{response:?}");
    let sidecar = mesh.compose.container("dc1-greeter-ferry");
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &sidecar]),
        "0"
    );
    // New calls go to dc2 meanwhile.
    wait_served(
        &mesh.dc1_app,
        "greeter",
        "greeter in dc2",
        Duration::from_secs(5),
    );
}
