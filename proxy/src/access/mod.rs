//! What the node that fronts a service lets through to it, decided from the caller's
//! authenticated identity: first the authorization policy ([`policy`]), then the service's
//! rate limit ([`bucket`]). Both are replaced whole when the config reloads.

mod bucket;
mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use metrics::counter;
use tracing::warn;

use ferry_tunnel::PeerIdentity;

pub use policy::{Call, CallerName, Decision, Policy, Rule, Selector, Unmatched};

use crate::throttle::Throttle;
use bucket::TokenBucket;

/// `[[rate_limit]]`: how many calls a second a local service takes from other nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// The local service.
    pub service: String,
    /// Calls (HTTP requests, gRPC calls, TCP connections) a second, on average.
    pub requests_per_second: f64,
    /// How many may come at once after a quiet spell.
    pub burst: u32,
}

/// What becomes of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    Serve,
    /// Refused by the policy; names the caller.
    Forbidden(String),
    /// Over the service's rate: a token comes after this long.
    Limited(Duration),
}

/// The policy and the rate limits of a node, shared by every inbound stream.
#[derive(Default)]
pub struct Access {
    policy: RwLock<Arc<Policy>>,
    limits: RwLock<HashMap<String, Arc<Mutex<TokenBucket>>>>,
    denials: Throttle,
}

impl Access {
    /// Replaces the policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Replaces the rate limits; a service whose limit did not change keeps its bucket, so a
    /// reload gives no one a fresh burst.
    pub fn set_rate_limits(&self, limits: &[RateLimit]) {
        let mut buckets = self.limits.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut next = HashMap::with_capacity(limits.len());
        for limit in limits {
            let service = limit.service.to_ascii_lowercase();
            let kept = buckets.remove(&service).filter(|bucket| {
                bucket
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .same_settings(limit.requests_per_second, limit.burst)
            });
            let bucket = kept.unwrap_or_else(|| {
                let bucket = TokenBucket::new(limit.requests_per_second, limit.burst, now);
                Arc::new(Mutex::new(bucket))
            });
            next.insert(service, bucket);
        }
        *buckets = next;
    }

    /// Decides on `call` from `caller`, counting and logging what is not plainly served.
    pub fn check(&self, caller: &PeerIdentity, call: &Call) -> Verdict {
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if policy.is_active() {
            let decision = policy.decide(caller, call);
            counter!(
                "ferry_authorization_decisions_total",
                "service" => call.service.to_ascii_lowercase(),
                "decision" => decision.label()
            )
            .increment(1);
            if decision != Decision::Allow {
                if let Some(unlogged) = self.denials.pass() {
                    warn!(
                        service = call.service,
                        caller = %CallerName(caller),
                        method = call.method.map(|m| m.as_str()),
                        path = call.path,
                        decision = decision.label(),
                        unlogged_since_last = unlogged,
                        "no authorization rule allows this call"
                    );
                }
            }
            if decision == Decision::Deny {
                return Verdict::Forbidden(CallerName(caller).to_string());
            }
        }
        let bucket = {
            let limits = self.limits.read().unwrap_or_else(|e| e.into_inner());
            if limits.is_empty() {
                return Verdict::Serve;
            }
            limits.get(&call.service.to_ascii_lowercase()).cloned()
        };
        let Some(bucket) = bucket else {
            return Verdict::Serve;
        };
        let taken = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now());
        match taken {
            Ok(()) => Verdict::Serve,
            Err(wait) => {
                counter!("ferry_rate_limited_total", "service" => call.service.to_ascii_lowercase())
                    .increment(1);
                Verdict::Limited(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_tunnel::PublicKey;
    use http::Method;

    use super::*;

    fn caller() -> PeerIdentity {
        PeerIdentity {
            key: PublicKey([1; 32]),
            certificate: None,
        }
    }

    #[test]
    fn the_policy_comes_before_the_rate_limit() {
        let access = Access::default();
        let get = Method::GET;
        let call = Call {
            service: "Billing",
            method: Some(&get),
            path: Some("/"),
        };
        assert_eq!(access.check(&caller(), &call), Verdict::Serve);
        access.set_rate_limits(&[RateLimit {
            service: "billing".into(),
            requests_per_second: 0.5,
            burst: 1,
        }]);
        assert_eq!(access.check(&caller(), &call), Verdict::Serve);
        assert!(
            matches!(access.check(&caller(), &call), Verdict::Limited(wait) if wait > Duration::from_secs(1))
        );
        // A reload with the same limit keeps the empty bucket.
        access.set_rate_limits(&[RateLimit {
            service: "billing".into(),
            requests_per_second: 0.5,
            burst: 1,
        }]);
        assert!(matches!(
            access.check(&caller(), &call),
            Verdict::Limited(_)
        ));
        access.set_policy(Policy {
            default: Unmatched::Deny,
            rules: vec![],
        });
        assert!(
            matches!(access.check(&caller(), &call), Verdict::Forbidden(name) if name.starts_with("key "))
        );
        access.set_rate_limits(&[]);
        access.set_policy(Policy::default());
        assert_eq!(access.check(&caller(), &call), Verdict::Serve);
    }
}
