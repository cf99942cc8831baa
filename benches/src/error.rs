//! The one error type of the harness: each variant says what to do about it.

use std::path::PathBuf;

/// What stopped the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A peer or load tool is missing and cannot be installed.
    #[error("{tool} is not installed and this is not root, so it cannot be installed: run `apt-get install {package}` as root, or run the harness as root")]
    MissingTool {
        /// The command.
        tool: String,
        /// The Debian package that has it.
        package: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A command the harness ran failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The command.
        what: String,
        /// Its exit status and what it printed.
        detail: String,
    },
    /// Something the harness waited for did not come.
    #[error("{what} did not happen within {seconds} s{hint}")]
    Timeout {
        /// What it waited for.
        what: String,
        /// How long it waited.
        seconds: u64,
        /// What to look at, if anything.
        hint: String,
    },
    /// A process the harness started died.
    #[error("{process} exited early ({status}); the end of its log {log}:\n{tail}")]
    Exited {
        /// Which process.
        process: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// A tool printed what the harness could not read.
    #[error("unexpected output from {what}: {detail}")]
    Output {
        /// The tool.
        what: String,
        /// What was wrong with its output.
        detail: String,
    },
    /// A bad command line.
    #[error("{0}")]
    Usage(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted; every process and namespace the harness made has been removed")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with what the harness was doing.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
