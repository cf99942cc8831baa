//! The container image and the compose example under test: the image is built once per test
//! binary with `scripts/image --local` (no registry needed), and each [`Compose`] is one
//! project of `examples/compose/compose.yaml`, taken down with its volumes on drop.
//! A container's network namespace is attached under a name (`ip netns attach`), so that the
//! `*_in` clients and [`command_in`] run inside it as an application beside Ferry would.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::netns::{ip, ip_ran};
use super::{require_tool, run, Ran};

/// The tag the tests build: not `ferry`, which is the user's.
pub(crate) const IMAGE: &str = "ferry-test";

/// The repository's root.
pub(crate) fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Fails the test, naming Docker, when no engine can be reached: never a quiet skip.
pub(crate) fn require_docker() {
    require_tool("docker");
    let ran = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        ran.success(),
        "Docker: cannot reach the Docker engine (docker info: {})",
        ran.stderr.trim()
    );
}

/// `docker ARGS`, within two minutes.
pub(crate) fn docker(args: &[&str]) -> Ran {
    run(Command::new("docker").args(args), Duration::from_secs(120))
}

/// Like [`docker`], and panics unless it succeeded; its standard output, trimmed.
pub(crate) fn docker_ok(args: &[&str]) -> String {
    let ran = docker(args);
    assert!(
        ran.success(),
        "docker {args:?} failed: {}",
        ran.stderr.trim()
    );
    ran.stdout.trim().to_owned()
}

/// Builds [`IMAGE`] once for this test binary (the release binary, as users get it); returns
/// its tag.
pub(crate) fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_docker();
        let script = repository().join("scripts/image");
        let ran = run(
            Command::new(&script).args(["--local", IMAGE]),
            Duration::from_secs(1800),
        );
        assert!(
            ran.success(),
            "scripts/image --local {IMAGE} failed:\n{}\n{}",
            ran.stdout,
            ran.stderr
        );
    });
    IMAGE
}

/// One test at a time drives containers: each mesh is thirteen of them on two cores.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running project of `examples/compose/compose.yaml`.
pub(crate) struct Compose {
    project: String,
    attached: Mutex<Vec<String>>,
    _serial: MutexGuard<'static, ()>,
}

impl Compose {
    /// `docker compose up -d` of the example under project `name`, on the test image.
    pub(crate) fn up(name: &str) -> Compose {
        let image = image();
        let serial = one_at_a_time();
        let compose = Compose {
            project: format!("{name}-{}", std::process::id()),
            attached: Mutex::default(),
            _serial: serial,
        };
        // Leftovers of a run that was killed would hold the names.
        compose.compose(&["down", "--volumes", "--remove-orphans", "--timeout", "1"]);
        let ran = compose.compose_with(&["up", "--detach", "--no-build"], image);
        assert!(ran.success(), "compose up failed:\n{}", ran.stderr);
        compose
    }

    /// Runs the compose tool (`docker compose`, else `docker-compose`) on this project.
    pub(crate) fn compose(&self, args: &[&str]) -> Ran {
        self.compose_with(args, IMAGE)
    }

    fn compose_with(&self, args: &[&str], image: &str) -> Ran {
        let file = repository().join("examples/compose/compose.yaml");
        let mut command = compose_tool();
        command
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(file)
            .args(args)
            .env("FERRY_IMAGE", image);
        run(&mut command, Duration::from_secs(300))
    }

    /// The id of `service`'s container.
    pub(crate) fn container(&self, service: &str) -> String {
        let ran = self.compose(&["ps", "--quiet", service]);
        let id = ran.stdout.trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}: {}", ran.stderr);
        id
    }

    /// `docker ACTION CONTAINER` for `service`'s container (stop, start, kill, restart).
    pub(crate) fn container_do(&self, action: &str, service: &str) {
        docker_ok(&[action, &self.container(service)]);
    }

    /// Runs `command` in `service`'s container (as its user); its standard output.
    pub(crate) fn exec(&self, service: &str, command: &[&str]) -> String {
        docker_ok(&[&["exec", &self.container(service)], command].concat())
    }

    /// The name of the project's network `network` (`dc1`, `dc2`, `wan`).
    pub(crate) fn network(&self, network: &str) -> String {
        format!("{}_{network}", self.project)
    }

    /// Attaches `service`'s network namespace (as it is now: a restarted container has a new
    /// one) under a name for `ip netns exec`, and returns the name.
    pub(crate) fn netns(&self, service: &str) -> String {
        let pid = docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.container(service),
        ]);
        let name = format!("{}-{service}", self.project);
        let _ = ip_ran(&["netns", "delete", &name]);
        ip(&["netns", "attach", &name, &pid]);
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        name
    }

    /// What `service` logged.
    pub(crate) fn logs(&self, service: &str) -> String {
        let ran = self.compose(&["logs", "--no-color", service]);
        format!("{}{}", ran.stdout, ran.stderr)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        for name in self
            .attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = ip_ran(&["netns", "delete", &name]);
        }
        let ran = self.compose(&["down", "--volumes", "--remove-orphans", "--timeout", "2"]);
        if !ran.success() {
            eprintln!("compose down {}: {}", self.project, ran.stderr.trim());
        }
    }
}

/// `docker compose` where the plugin is installed, else `docker-compose`.
fn compose_tool() -> Command {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if plugin {
        let mut command = Command::new("docker");
        command.arg("compose");
        command
    } else {
        require_tool("docker-compose");
        Command::new("docker-compose")
    }
}
