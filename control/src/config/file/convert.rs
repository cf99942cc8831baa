//! Turning one TOML value into a typed one, or into the message that says why it is not one:
//! the [`Convert`](super::document::Convert)s that the reader applies to a key's value.

use toml::de::DeValue;

/// "expected a string, found an integer"
pub(super) fn expected(what: &str, found: &DeValue) -> String {
    let kind = found.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("expected {what}, found {article} {kind}")
}

/// Adapts a check of a string value into a [`Convert`](super::document::Convert).
pub(super) fn text<T>(
    check: fn(&str) -> Result<T, String>,
) -> impl Fn(&DeValue<'_>) -> Result<T, String> {
    move |value| match value.as_str() {
        Some(s) => check(s),
        None => Err(expected("a string", value)),
    }
}

/// Like [`text`], for values people tend to write unquoted (`interval = 1`).
pub(super) fn quoted<T>(
    check: fn(&str) -> Result<T, String>,
    example: &'static str,
) -> impl Fn(&DeValue<'_>) -> Result<T, String> {
    move |value| match value.as_str() {
        Some(s) => check(s),
        None => Err(expected(&format!("a string such as {example}"), value)),
    }
}

pub(super) fn boolean(value: &DeValue) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| expected("true or false", value))
}

/// The most worker threads a node accepts: far beyond any core count, short of a typo's.
const MAX_WORKERS: i64 = 1024;

pub(super) fn workers(value: &DeValue) -> Result<usize, String> {
    let Some(integer) = value.as_integer() else {
        return Err(expected("a number of threads", value));
    };
    i64::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .filter(|n| (1..=MAX_WORKERS).contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{integer} is not a number of threads (1-{MAX_WORKERS})"))
}

pub(super) fn port(value: &DeValue) -> Result<u16, String> {
    let Some(integer) = value.as_integer() else {
        return Err(expected("a port number", value));
    };
    i64::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("{integer} is not a port (1-65535)"))
}
