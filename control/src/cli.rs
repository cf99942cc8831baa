//! The command line, as the reference lists it (`docs/reference.md`: "Binary and CLI").

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ferry: a sidecar service-mesh proxy. Call services by name over HTTP, gRPC or TCP; Ferry
/// finds them and carries the calls between nodes over an encrypted tunnel.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The `ferry` subcommands; [`crate::commands::dispatch`] runs each.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node. With no config file, runs on the embedded defaults.
    Run(Box<RunArgs>),
    /// Start a self-contained mesh on loopback and show calls going through it.
    Demo {
        /// Exit after the script: 0 if every step worked, 1 otherwise.
        #[arg(long)]
        once: bool,
    },
    /// Serve the demo's workload: a small HTTP service for examples and containers. A GET is
    /// answered with the greeting (after `?delay=MS` milliseconds, at most 60 s); a POST is
    /// answered 200 and its body dropped. Runs until SIGTERM or SIGINT.
    DemoService {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The first words of every answer to a GET.
        #[arg(long, default_value = "hello from ferry demo-service")]
        greeting: String,
    },
    /// Create a node key (mode 0600; never overwrites) and print its public key.
    Keygen {
        /// Where to write the key (default: the embedded default key path).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The key file to read.
        #[arg(long)]
        key: PathBuf,
    },
    /// Validate a config: print the effective config, or every error with its file, line and
    /// key (exit 2).
    Check {
        /// The config file to check.
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Show a running node's state.
    Status(AdminArgs),
    /// Show a running node's peers.
    Peers(AdminArgs),
    /// Show a running node's routes.
    Routes(AdminArgs),
    /// Show a running node's local services and their health.
    Services(AdminArgs),
    /// Show the subscriptions a running node knows: its own and the mesh's.
    Subscriptions(AdminArgs),
    /// Publish one message through the local node's application API.
    Publish(PublishArgs),
    /// The mesh certificate authority: make one, sign node certificates, show certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Transparent interception: the packet filter rules that send an application's traffic
    /// to Ferry (what a pod's init container runs).
    #[command(subcommand)]
    Intercept(InterceptCommand),
}

/// `ferry intercept ...`.
#[derive(Subcommand, Debug)]
pub enum InterceptCommand {
    /// Add the rules (replacing any an earlier install left): TCP to `[intercept]
    /// virtual_network` goes to `listen`; with `--dns`, DNS queries go to `dns`.
    Install {
        /// Config file whose `[intercept]` gives the addresses. Default: $FERRY_CONFIG, else
        /// the embedded defaults.
        #[arg(long, env = "FERRY_CONFIG")]
        config: Option<PathBuf>,
        /// Ferry's UID, whose own traffic is left alone. Default: the caller's.
        #[arg(long)]
        uid: Option<u32>,
        /// Also send DNS queries (UDP and TCP port 53) to Ferry's DNS.
        #[arg(long)]
        dns: bool,
    },
    /// Remove exactly the rules `install` adds.
    Uninstall,
}

/// `ferry ca ...`.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Create a CA: its key (DIR/ca.key, mode 0600, never overwritten) and its certificate
    /// (DIR/ca.crt).
    Init {
        /// The CA's name, shown in the certificates it signs.
        #[arg(long)]
        name: String,
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// How long the CA is valid, e.g. 365d.
        #[arg(long, default_value = "365d")]
        valid: String,
    },
    /// Sign a node certificate binding a node's public key to a name, a datacenter, the
    /// services it may front and its groups.
    Sign(CaSignArgs),
    /// Print a certificate: key, attributes, issuer, validity.
    Show {
        /// The certificate file.
        file: PathBuf,
        /// Also check it against the CA in this directory (its ca.crt).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// `ferry ca sign`.
#[derive(Args, Debug)]
pub struct CaSignArgs {
    /// The CA's directory (ca.key and ca.crt).
    #[arg(long)]
    pub ca: PathBuf,
    /// The node's key file (its public key is what is signed).
    #[arg(long, conflicts_with = "pubkey", required_unless_present = "pubkey")]
    pub key: Option<PathBuf>,
    /// The node's public key, base64.
    #[arg(long)]
    pub pubkey: Option<String>,
    /// The node's name.
    #[arg(long)]
    pub name: String,
    /// The node's datacenter.
    #[arg(long)]
    pub datacenter: Option<String>,
    /// The services the node may front, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub services: Vec<String>,
    /// The node's groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// How long the certificate is valid, e.g. 30d (never beyond the CA's own validity).
    #[arg(long, default_value = "30d")]
    pub valid: String,
    /// Where to write the certificate.
    #[arg(long)]
    pub out: PathBuf,
}

/// `ferry publish TOPIC [--data STRING|@FILE] [--api ADDR]`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The topic: tokens of letters, digits, '_' and '-' joined by '.'.
    pub topic: String,
    /// The message: a string, or @FILE for a file's contents, or @- for standard input.
    /// Default: empty.
    #[arg(long, default_value = "")]
    pub data: String,
    /// The message's content type.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// The node's application API address.
    #[arg(long, default_value = "127.0.0.1:7703")]
    pub api: SocketAddr,
}

/// How the commands that ask a running node (`status`, `peers`, `routes`, `services`) reach it.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The node's admin API address.
    #[arg(long, default_value = "127.0.0.1:7702")]
    pub admin: SocketAddr,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `ferry run`: the config file, and values that override it.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Config file (TOML). Default: $FERRY_CONFIG, else the embedded defaults.
    #[arg(long, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node name.
    #[arg(long)]
    pub name: Option<String>,
    /// Datacenter this node is in.
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Node key file.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Tunnel listen address (UDP).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Carry traffic between this datacenter and others.
    #[arg(long)]
    pub gateway: bool,
    /// A peer to dial: ADDR#PUBKEY. Repeatable.
    #[arg(long = "peer", value_name = "ADDR#PUBKEY")]
    pub peers: Vec<String>,
    /// A key allowed to open links to this node, besides its peers'. Repeatable.
    #[arg(long = "trust", value_name = "PUBKEY")]
    pub trust: Vec<String>,
    /// A local service: NAME=HOST:PORT[/http|/grpc|/tcp]. Repeatable.
    #[arg(long = "service", value_name = "NAME=HOST:PORT[/PROTO]")]
    pub services: Vec<String>,
    /// Outbound HTTP listen address.
    #[arg(long)]
    pub outbound: Option<SocketAddr>,
    /// Admin API listen address.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Application API listen address (publishing).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Registry kind: mesh, static, dns, mdns, etcd.
    #[arg(long)]
    pub registry: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
}

impl RunArgs {
    /// The flags that override the config, as [`Config::apply`](crate::config::Config::apply)
    /// takes them.
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            name: self.name.clone(),
            datacenter: self.datacenter.clone(),
            key: self.key.clone(),
            listen: self.listen,
            gateway: self.gateway,
            peers: self.peers.clone(),
            trust: self.trust.clone(),
            services: self.services.clone(),
            outbound: self.outbound,
            admin: self.admin,
            api: self.api,
            registry: self.registry.clone(),
            log_format: self.log_format.clone(),
        }
    }
}
