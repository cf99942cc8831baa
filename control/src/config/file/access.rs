//! `[authorization]` and `[[rate_limit]]`.

use ferry_proxy::access::Selector;

use super::convert::{expected, text};
use super::document::Table;
use super::Reader;
use crate::config::values;
use crate::config::{AuthorizationConfig, AuthorizationRule, RateLimitConfig, ServiceConfig};

/// A local service a section names, and where: checked against the file's `[[service]]`s once
/// they are all read.
#[derive(Clone)]
pub(super) struct Named {
    service: String,
    key: String,
    line: usize,
}

impl Named {
    pub(super) fn new(service: String, key: String, line: usize) -> Named {
        Named { service, key, line }
    }
}

impl Reader<'_> {
    /// `[authorization]`. `has_ca`: whether `[tunnel] ca` names a CA, without which only
    /// `key:` can name a caller.
    pub(super) fn authorization(
        &mut self,
        table: &Table,
        has_ca: bool,
        named: &mut Vec<Named>,
    ) -> AuthorizationConfig {
        self.known_keys(table, &["default", "rule"]);
        let default = self.field(table, "default", &text(values::keyword));
        let rules = self.tables(table, "rule");
        AuthorizationConfig {
            default: default.unwrap_or_default(),
            rules: rules
                .iter()
                .filter_map(|rule| self.authorization_rule(rule, has_ca, named))
                .collect(),
        }
    }

    fn authorization_rule(
        &mut self,
        table: &Table,
        has_ca: bool,
        named: &mut Vec<Named>,
    ) -> Option<AuthorizationRule> {
        self.known_keys(table, &["service", "from", "methods", "paths"]);
        let service = self.required_at(table, "service", &text(rule_service));
        if let Some((service, line)) = &service {
            if service != "*" {
                named.push(Named {
                    service: service.clone(),
                    key: table.child_key("service"),
                    line: *line,
                });
            }
        }
        let caller = move |text: &str| caller(text, has_ca);
        if !table.has("from") {
            self.error(
                table.span.clone(),
                table.child_key("from"),
                "missing; a rule names the callers it allows",
            );
        }
        let from = self.list(table, "from", &self::text_with(&caller));
        let empty = table
            .entries
            .get("from")
            .is_some_and(|v| v.get_ref().as_array().is_some_and(|a| a.is_empty()));
        if let Some(span) = table.key_span("from").filter(|_| empty) {
            self.error(span, table.child_key("from"), "names no caller");
        }
        let methods = self.list(table, "methods", &text(method));
        let paths = self.list(table, "paths", &text(path_pattern));
        Some(AuthorizationRule {
            service: service?.0,
            from: from.filter(|from| !from.is_empty())?,
            methods: methods.unwrap_or_default(),
            paths: paths.unwrap_or_default(),
        })
    }

    /// A `[[rate_limit]]`.
    pub(super) fn rate_limit(
        &mut self,
        table: &Table,
        named: &mut Vec<Named>,
    ) -> Option<RateLimitConfig> {
        self.known_keys(table, &["service", "requests_per_second", "burst"]);
        let service = self.required_at(table, "service", &text(values::service_name));
        if let Some((service, line)) = &service {
            named.push(Named {
                service: service.clone(),
                key: table.child_key("service"),
                line: *line,
            });
        }
        let rate = self.required(table, "requests_per_second", &count("calls a second"));
        let burst = self.field(table, "burst", &count("calls"));
        let rate = rate?;
        Some(RateLimitConfig {
            service: service?.0,
            requests_per_second: rate,
            burst: burst.unwrap_or(rate),
        })
    }

    /// Each named service must be a `[[service]]` of the file: these sections are about the
    /// services this node fronts.
    pub(super) fn check_local_services(
        &mut self,
        named: &[Named],
        services: &[ServiceConfig],
        what: &str,
    ) {
        for Named { service, key, line } in named {
            if !services
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(service))
            {
                let message = format!("no [[service]] named \"{service}\": {what}");
                self.push(*line, key.clone(), message);
            }
        }
    }

    /// Two rate limits for one service: the second would silently win.
    pub(super) fn check_rate_limits(&mut self, limits: &[Named]) {
        for (i, later) in limits.iter().enumerate() {
            let earlier = limits[..i]
                .iter()
                .find(|l| l.service.eq_ignore_ascii_case(&later.service));
            if let Some(earlier) = earlier {
                let message = format!(
                    "a second rate limit for \"{}\" (the first is on line {})",
                    later.service, earlier.line
                );
                self.push(later.line, later.key.clone(), message);
            }
        }
    }
}

fn text_with<'f>(
    check: &'f dyn Fn(&str) -> Result<String, String>,
) -> impl Fn(&toml::de::DeValue<'_>) -> Result<String, String> + 'f {
    move |value| match value.as_str() {
        Some(s) => check(s),
        None => Err(expected("a string", value)),
    }
}

fn rule_service(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok(text.to_owned());
    }
    values::service_name(text)
}

/// A caller selector; those only a certificate can prove need a CA to trust.
fn caller(text: &str, has_ca: bool) -> Result<String, String> {
    let selector = Selector::parse(text)?;
    if selector.needs_certificate() && !has_ca {
        return Err(format!(
            "\"{text}\" needs callers' certificates, and [tunnel] ca names no CA to trust them: \
             add one, or name the caller by key:"
        ));
    }
    Ok(text.to_owned())
}

fn method(text: &str) -> Result<String, String> {
    match http::Method::from_bytes(text.as_bytes()) {
        Ok(method) if text.bytes().all(|b| b.is_ascii_uppercase()) => Ok(method.to_string()),
        _ => Err(format!(
            "\"{text}\" is not an HTTP method: write it in capitals, as GET or POST"
        )),
    }
}

fn path_pattern(text: &str) -> Result<String, String> {
    let body = text.strip_suffix('*').unwrap_or(text);
    if !text.starts_with('/') || body.contains('*') || text.contains(char::is_whitespace) {
        return Err(format!(
            "\"{text}\" is not a path: it starts with '/', and '*' may only end it"
        ));
    }
    Ok(text.to_owned())
}

/// A whole number above zero, of `what`.
fn count(what: &'static str) -> impl Fn(&toml::de::DeValue<'_>) -> Result<u32, String> {
    move |value| {
        let Some(integer) = value.as_integer() else {
            return Err(expected(&format!("a number of {what}"), value));
        };
        i64::from_str_radix(integer.as_str(), integer.radix())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{integer} is not a number of {what} (at least 1)"))
    }
}
