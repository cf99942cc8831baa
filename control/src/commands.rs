//! What each `ferry` subcommand does.

use std::path::Path;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use tracing::error;

use ferry_tunnel::Identity;

use crate::admin_client::{exchange, fetch, print_fields, print_table};
use crate::cli::{AdminArgs, Cli, Command, InterceptCommand, PublishArgs, RunArgs};
use crate::config::{Config, Overrides};
use crate::node::{reload_with, Node, StartOptions};
use crate::telemetry;

/// Exit status for a bad config or flag, as the reference has it ("Exit codes") for `check`
/// and `run`.
const EXIT_CONFIG: u8 = 2;

/// Runs the subcommand `cli` names; its exit status is the process's.
pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Demo { once } => crate::demo::main(once),
        Command::DemoService { listen, greeting } => crate::demo::serve(listen, greeting),
        Command::Keygen { out } => keygen(out.as_deref()),
        Command::Pubkey { key } => pubkey(&key),
        Command::Check { config } => check(&config),
        Command::Status(args) => admin(&args, "/status", &[]),
        Command::Peers(args) => admin(
            &args,
            "/peers",
            &[
                "name",
                "datacenter",
                "address",
                "state",
                "rtt_ms",
                "path",
                "key",
            ],
        ),
        Command::Routes(args) => admin(
            &args,
            "/routes",
            &[
                "service",
                "datacenter",
                "node",
                "endpoint",
                "via",
                "metric",
                "healthy",
            ],
        ),
        Command::Services(args) => admin(
            &args,
            "/services",
            &["name", "address", "protocol", "healthy", "check"],
        ),
        Command::Subscriptions(args) => admin(
            &args,
            "/subscriptions",
            &[
                "topic",
                "group",
                "service",
                "path",
                "node",
                "datacenter",
                "healthy",
                "max_attempts",
                "dead_letter",
                "batch",
            ],
        ),
        Command::Publish(args) => publish(&args),
        Command::Ca(command) => crate::ca::run(command),
        Command::Intercept(command) => intercept(command),
    }
}

/// `ferry publish`: one message through the application API; prints its id.
fn publish(args: &PublishArgs) -> ExitCode {
    let data = match args.data.strip_prefix('@') {
        Some("-") => {
            let mut data = Vec::new();
            match std::io::Read::read_to_end(&mut std::io::stdin(), &mut data) {
                Ok(_) => data,
                Err(e) => return fail(format!("cannot read standard input: {e}")),
            }
        }
        Some(file) => match std::fs::read(file) {
            Ok(data) => data,
            Err(e) => return fail(format!("cannot read {file}: {e}")),
        },
        None => args.data.clone().into_bytes(),
    };
    let mut request = http::Request::post(format!("/v1/publish/{}", args.topic))
        .header(http::header::HOST, args.api.to_string());
    if let Some(content_type) = &args.content_type {
        request = request.header(http::header::CONTENT_TYPE, content_type);
    }
    let request = match request.body(http_body_util::Full::new(bytes::Bytes::from(data))) {
        Ok(request) => request,
        Err(e) => return fail(format!("bad topic or content type: {e}")),
    };
    match exchange(args.api, "the application API", request) {
        Ok((status, body)) if status.is_success() => {
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned));
            println!(
                "{}",
                id.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
            );
            ExitCode::SUCCESS
        }
        Ok((status, body)) => fail(format!(
            "publish answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
        Err(e) => fail(e),
    }
}

fn intercept(command: InterceptCommand) -> ExitCode {
    use crate::intercept_rules::{run_command, Plan};
    match command {
        InterceptCommand::Install { config, uid, dns } => {
            let config = match load_config(config.as_deref(), &Overrides::default()) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{}", e.trim_end());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let uid = uid.or_else(current_uid).unwrap_or(0);
            run_command(Some(Plan::new(&config, uid, dns)))
        }
        InterceptCommand::Uninstall => run_command(None),
    }
}

/// This process's real UID, from `/proc/self/status`.
fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ferry: {message}");
    ExitCode::FAILURE
}

/// The effective config: the file (or the embedded defaults) with the flags on top.
fn load_config(path: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
    let mut config = match path {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::defaults(),
    };
    config.apply(overrides).map_err(|e| e.to_string())?;
    Ok(config)
}

/// The runtime that carries a node's traffic. One worker (the default) is a current-thread
/// runtime: every task of a call then runs on one thread, and no call pays for waking another.
/// Measured on two cores under 32 connections of HTTP/1.1, a two-worker runtime spent about a
/// fifth more CPU per request, most of it in those wake-ups.
fn traffic_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    builder
        .max_io_events_per_tick(IO_EVENTS_PER_TICK)
        .enable_all()
        .build()
}

/// How many ready sockets a node takes from the kernel before it runs what they woke and
/// lets the tunnel send the result. tokio's default, 1,024, lets a node serve a whole wave
/// of requests (about 30 under the benchmark's 32 connections) before its QUIC driver sends
/// the first of them: the next node waits for all of it, then works while this one waits,
/// and the pair moves in lock-step. With 8, the next node starts on the first few requests
/// while this one serves the rest. On two cores under that load, idle CPU fell from 22% to
/// 15% at the same CPU per request (one more `epoll_wait` per 8 requests, smaller GSO
/// batches), and tail latency at a fixed rate fell: figures in docs/architecture.md. Measured
/// with one worker, the default; a work-stealing runtime gets the same bound.
const IO_EVENTS_PER_TICK: usize = 8;

fn run(args: RunArgs) -> ExitCode {
    let overrides = args.overrides();
    let config = match load_config(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", errors.trim_end());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init_logs(config.log.format, "info");
    raise_open_file_limit();
    let metrics = match telemetry::init_metrics() {
        Ok(handle) => Some(handle),
        Err(e) => return fail(e),
    };
    let identity = match Identity::load_or_create(&config.node.key_file) {
        Ok(identity) => identity,
        Err(e) => return fail(e),
    };
    let runtime = match traffic_runtime(config.node.workers) {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let path = args.config.clone();
    runtime.block_on(async move {
        let node = match Node::start(
            config,
            identity,
            StartOptions {
                metrics,
                admin: true,
            },
        )
        .await
        {
            Ok(node) => node,
            Err(e) => {
                error!("{e}");
                return fail(e);
            }
        };
        let state = node.state.clone();
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = signals else {
            return fail("cannot install signal handlers");
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => state.drain(),
                    _ = int.recv() => state.drain(),
                    _ = hup.recv() => match &path {
                        Some(path) => reload_with(&state, load_config(Some(path), &overrides)),
                        None => tracing::warn!("SIGHUP: no config file to reload"),
                    },
                }
            }
        });
        node.run().await;
        ExitCode::SUCCESS
    })
}

/// Every proxied connection holds two sockets, and Linux's usual soft limit of 1,024 open files
/// would cap a node near 500 connections. The hard limit is the administrator's real bound:
/// raise the soft one to it, as Go's runtime does for every Go server.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

fn keygen(out: Option<&Path>) -> ExitCode {
    let path = out.map_or_else(|| Config::defaults().node.key_file, Path::to_path_buf);
    if path.exists() {
        return fail(format!(
            "{} exists; refusing to overwrite a node key",
            path.display()
        ));
    }
    let identity = match Identity::generate() {
        Ok(identity) => identity,
        Err(e) => return fail(e),
    };
    if let Err(e) = identity.save_new(&path) {
        return fail(e);
    }
    eprintln!("wrote {}", path.display());
    println!("{}", identity.public());
    ExitCode::SUCCESS
}

fn pubkey(key: &Path) -> ExitCode {
    match Identity::load(key) {
        Ok(identity) => {
            println!("{}", identity.public());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            // A key file that exists must be usable; a missing one is created on first run.
            if config.node.key_file.exists() {
                if let Err(e) = Identity::load(&config.node.key_file) {
                    let line = key_file_line(path);
                    eprintln!("{}:{line}: node.key_file: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            // The static registry's file is read at start like the config: check it too.
            if let Some(file) = config.registry.file.as_deref() {
                if let Err(e) = crate::registry::read_static_file(file) {
                    let line = registry_file_line(path);
                    eprintln!("{}:{line}: registry.file: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            // What `run` needs of the tunnel's trust: every peer's key, a readable trust
            // file, CAs and a certificate for this node's key, name and datacenter.
            let key = Identity::load(&config.node.key_file)
                .ok()
                .map(|id| id.public());
            match crate::node::TrustConfig::read(&config, key) {
                Ok(trust) => {
                    for warning in &trust.warnings {
                        eprintln!("{}: warning: {warning}", path.display());
                    }
                }
                Err(e) => {
                    let line = line_of(path, e.key);
                    eprintln!("{}:{line}: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}", errors.to_string().trim_end());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The line of `key_file` in a config file, for an error about the file it names.
fn key_file_line(path: &Path) -> usize {
    line_of(path, "key_file")
}

/// The line of `[registry] file`, for an error about the services file it names.
fn registry_file_line(path: &Path) -> usize {
    line_of(path, "file")
}

/// The first line of a config file that sets `key` (0 when none does).
fn line_of(path: &Path, key: &str) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().position(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        })
        .map_or(0, |i| i + 1)
}

fn admin(args: &AdminArgs, path: &str, columns: &[&str]) -> ExitCode {
    match fetch(args.admin, path) {
        Ok(value) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(value) => {
            if columns.is_empty() {
                print_fields(&value);
            } else {
                print_table(&value, columns);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
