//! The one error type of the harness: each variant says what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tool} is not installed and this is not root, so it cannot be installed: run `apt-get install {package}` as root, or run the harness as root")]
    MissingTool { tool: String, package: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what} did not happen within {seconds} s{hint}")]
    Timeout {
        what: String,
        seconds: u64,
        hint: String,
    },
    #[error("{process} exited early ({status}); the end of its log {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("unexpected output from {what}: {detail}")]
    Output { what: String, detail: String },
    #[error("{0}")]
    Usage(String),
    #[error("interrupted; every process and namespace the harness made has been removed")]
    Interrupted,
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
