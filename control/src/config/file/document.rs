//! The parsed TOML document as the reader walks it: tables with the dotted key that leads to
//! them, and the [`Reader`]'s ways of fetching a key's value, converted, or recording why it
//! cannot, at its line and under its dotted key.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::convert::expected;
use super::Reader;
use crate::config::syntax::{key_on_line, value_looks_unquoted};
use crate::config::ConfigError;

type Span = Range<usize>;

/// A table of the document with the dotted key that leads to it.
pub(super) struct Table<'t, 'i> {
    /// `""` for the root, else like `service[1].health`.
    pub(super) key: String,
    /// Its `[header]` or `{ inline }` braces: where a missing key is reported.
    pub(super) span: Span,
    pub(super) entries: &'t DeTable<'i>,
}

impl Table<'_, '_> {
    pub(super) fn child_key(&self, key: &str) -> String {
        if self.key.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.key)
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The span of `key` itself (not its value), for errors about the key being there.
    pub(super) fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.get_key_value(key).map(|(k, _)| k.span())
    }
}

/// Turns a value into `T`, or says why it cannot.
pub(super) type Convert<'c, T> = &'c dyn Fn(&DeValue<'_>) -> Result<T, String>;

impl Reader<'_> {
    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        // An error at the very end of a file that ends in a newline belongs to the last line,
        // not to an empty one after it.
        let offset = if offset >= self.text.len() && self.text.ends_with('\n') {
            self.text.len() - 1
        } else {
            offset
        };
        self.line_starts.partition_point(|&start| start <= offset)
    }

    pub(super) fn push(&mut self, line: usize, key: String, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key,
            message: message.into(),
        });
    }

    pub(super) fn error(&mut self, span: Span, key: String, message: impl Into<String>) {
        let line = self.line(span.start);
        self.push(line, key, message);
    }

    pub(super) fn syntax_error(&mut self, error: &toml::de::Error) {
        let line = self.line(error.span().map_or(0, |span| span.start));
        let key = key_on_line(self.text, line);
        let mut message = format!(
            "invalid TOML: {}",
            error.message().trim().replace('\n', "; ")
        );
        if !message.contains("quoted") && !key.is_empty() && value_looks_unquoted(self.text, line) {
            // The most common slip: `listen = 127.0.0.1:7701`, which TOML reads as a bad number.
            message.push_str(" (a string value must be quoted)");
        }
        self.push(line, key, message);
    }

    /// Reports every key of `table` that is not in `known`.
    pub(super) fn known_keys(&mut self, table: &Table, known: &[&str]) {
        for key in table.entries.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                let message = format!("unknown key; expected one of: {}", known.join(", "));
                self.error(key.span(), table.child_key(key.get_ref()), message);
            }
        }
    }

    /// `key` of `table` converted, with the line of its value; `None` when absent or bad (bad is
    /// reported).
    pub(super) fn field_at<T>(
        &mut self,
        table: &Table,
        key: &str,
        convert: Convert<T>,
    ) -> Option<(T, usize)> {
        let value = table.entries.get(key)?;
        match convert(value.get_ref()) {
            Ok(converted) => Some((converted, self.line(value.span().start))),
            Err(message) => {
                self.error(value.span(), table.child_key(key), message);
                None
            }
        }
    }

    pub(super) fn field<T>(&mut self, table: &Table, key: &str, convert: Convert<T>) -> Option<T> {
        self.field_at(table, key, convert).map(|(value, _)| value)
    }

    /// Like [`Reader::field_at`], and reports a missing key at the table's header.
    pub(super) fn required_at<T>(
        &mut self,
        table: &Table,
        key: &str,
        convert: Convert<T>,
    ) -> Option<(T, usize)> {
        if !table.has(key) {
            self.error(
                table.span.clone(),
                table.child_key(key),
                "missing; this key is required",
            );
        }
        self.field_at(table, key, convert)
    }

    pub(super) fn required<T>(
        &mut self,
        table: &Table,
        key: &str,
        convert: Convert<T>,
    ) -> Option<T> {
        self.required_at(table, key, convert)
            .map(|(value, _)| value)
    }

    /// An array, each element converted; bad elements are reported as `key[i]` and left out.
    pub(super) fn list<T>(
        &mut self,
        table: &Table,
        key: &str,
        convert: Convert<T>,
    ) -> Option<Vec<T>> {
        let value = table.entries.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            let message = expected("an array", value.get_ref());
            self.error(value.span(), table.child_key(key), message);
            return None;
        };
        let mut converted = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match convert(item.get_ref()) {
                Ok(value) => converted.push(value),
                Err(message) => {
                    let key = format!("{}[{i}]", table.child_key(key));
                    self.error(item.span(), key, message);
                }
            }
        }
        Some(converted)
    }

    /// The sub-table `key`, if present; anything else there is reported.
    pub(super) fn table<'t, 'i>(
        &mut self,
        parent: &Table<'t, 'i>,
        key: &str,
    ) -> Option<Table<'t, 'i>> {
        let value = parent.entries.get(key)?;
        match value.get_ref() {
            DeValue::Table(entries) => Some(Table {
                key: parent.child_key(key),
                span: value.span(),
                entries,
            }),
            other => {
                let message = expected("a table", other);
                self.error(value.span(), parent.child_key(key), message);
                None
            }
        }
    }

    /// The array of tables `key` (`[[key]]` or an array of inline tables).
    pub(super) fn tables<'t, 'i>(
        &mut self,
        parent: &Table<'t, 'i>,
        key: &str,
    ) -> Vec<Table<'t, 'i>> {
        let Some(value) = parent.entries.get(key) else {
            return Vec::new();
        };
        let full_key = parent.child_key(key);
        let DeValue::Array(items) = value.get_ref() else {
            let found = expected("an array of tables", value.get_ref());
            let message = format!("{found}; write [[{full_key}]] for each entry");
            self.error(value.span(), full_key, message);
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let key = format!("{full_key}[{i}]");
            match item.get_ref() {
                DeValue::Table(entries) => tables.push(Table {
                    key,
                    span: item.span(),
                    entries,
                }),
                other => {
                    let message = expected("a table", other);
                    self.error(item.span(), key, message);
                }
            }
        }
        tables
    }
}
