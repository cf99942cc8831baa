//! `[authorization]` and `[[rate_limit]]` handed to the proxy's [`Access`], at start and on
//! every reload. The config reader has checked every value, so what does not convert here
//! cannot happen; it is left out rather than trusted.

use ferry_proxy::access::{Access, Policy, RateLimit, Rule, Selector, Unmatched};

use crate::config::{AuthorizationDefault, Config};

/// Makes `access` enforce what `config` says.
pub(super) fn apply(access: &Access, config: &Config) {
    let authorization = &config.authorization;
    let rules = authorization
        .rules
        .iter()
        .map(|rule| Rule {
            service: rule.service.clone(),
            from: rule
                .from
                .iter()
                .filter_map(|s| Selector::parse(s).ok())
                .collect(),
            methods: rule
                .methods
                .iter()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            paths: rule.paths.clone(),
        })
        .collect();
    access.set_policy(Policy {
        default: match authorization.default {
            AuthorizationDefault::Allow => Unmatched::Allow,
            AuthorizationDefault::Deny => Unmatched::Deny,
            AuthorizationDefault::Audit => Unmatched::Audit,
        },
        rules,
    });
    let limits: Vec<RateLimit> = config
        .rate_limits
        .iter()
        .map(|limit| RateLimit {
            service: limit.service.clone(),
            requests_per_second: f64::from(limit.requests_per_second),
            burst: limit.burst,
        })
        .collect();
    access.set_rate_limits(&limits);
}
