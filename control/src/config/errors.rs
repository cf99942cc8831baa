//! Config errors: each names the file, line and key it is about, so an operator can go straight
//! to it.

use std::fmt;
use std::path::PathBuf;

/// The `file` of errors about `ferry run` flags.
pub const COMMAND_LINE: &str = "<command line>";

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, or [`COMMAND_LINE`] for a flag.
    pub file: PathBuf,
    /// 1-based line; 0 when there is no line (a flag, an unreadable file).
    pub line: usize,
    /// Dotted key such as `service[1].address` (indices count from 0), or the flag such as
    /// `--service`. Empty when no key is known (some syntax errors, an unreadable file).
    pub key: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl ConfigError {
    /// An error about a `ferry run` flag.
    pub(crate) fn flag(flag: &str, message: impl fmt::Display) -> Self {
        Self {
            file: PathBuf::from(COMMAND_LINE),
            line: 0,
            key: flag.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: KEY: MESSAGE`, the form compilers use so editors can jump to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one pass over a config, in line order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// Never empty when returned as an error.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The errors, in line order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never, for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
        }
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    /// Sorts by line, keeping the order of errors on the same line.
    fn from(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| e.line);
        Self { errors }
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
