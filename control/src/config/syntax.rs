//! Hints for TOML syntax errors. The parser stops at the first one and knows no key, so these
//! read the raw line to name the key and spot the usual slip, an unquoted string.

use std::collections::HashMap;

/// Best guess at the dotted key on a line the TOML parser rejected, from the nearest table
/// header above it: `listen = 0.0.0.0:7700` under `[tunnel]` gives `tunnel.listen`. Empty when
/// the line is not a simple `key = value` (the line number still says where to look).
pub(super) fn key_on_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(current) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return String::new();
    };
    let Some((key, _)) = current.split_once('=') else {
        return String::new();
    };
    let key = key.trim();
    let simple = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    if !simple(key) {
        return String::new();
    }
    // Walk the headers above, counting each [[array]] so its entries get their index.
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    for header in &lines[..line - 1] {
        let header = header.split_once('#').map_or(*header, |(h, _)| h).trim();
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            let name = name.trim().to_string();
            let count = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{count}]");
            *count += 1;
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // `[service.health]` belongs to the latest `[[service]]`.
            let name = name.trim();
            table = match name.split_once('.') {
                Some((array, rest)) if counts.contains_key(array) => {
                    format!("{array}[{}].{rest}", counts[array] - 1)
                }
                _ => name.to_string(),
            };
        }
    }
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// Whether the value on a `key = value` line starts like a bare word or an address rather than a
/// quoted string, array, table, bool or plain number.
pub(super) fn value_looks_unquoted(text: &str, line: usize) -> bool {
    let Some(current) = line.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return false;
    };
    let Some((_, value)) = current.split_once('=') else {
        return false;
    };
    let value = value.split_once('#').map_or(value, |(v, _)| v).trim();
    let quoted_or_nested = value.starts_with(['"', '\'', '[', '{']);
    // A malformed number (`1_`) is not a string someone forgot to quote; `1.2.3` or an address is.
    let number_like =
        value.chars().all(|c| "0123456789_+-.eExob".contains(c)) && value.matches('.').count() <= 1;
    let word = ["true", "false", "inf", "nan"].contains(&value);
    !value.is_empty() && !quoted_or_nested && !number_like && !word
}
