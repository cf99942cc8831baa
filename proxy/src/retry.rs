//! The retry layer's policy: when a failed try may be tried again.
//!
//! A call is tried again when its request never left (the connection or stream could not be
//! opened), or when it is idempotent and bodiless, so sending it twice is safe. At most
//! [`MAX_ATTEMPTS`] tries, and every retry draws on a budget shared by all calls, as
//! linkerd2-proxy's do: 20% on top of recent calls plus 10 a second, so that retries can never
//! multiply the load on a service that is already failing. The balancer below this layer
//! picks again on every try, and a failed endpoint scores badly there, so a retry lands
//! elsewhere when there is anywhere else.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::Body;
use crate::call::{Call, CallError};
use crate::error::ProxyError;

/// At most this many tries of one call, the first included.
pub const MAX_ATTEMPTS: usize = 3;

/// The retry policy of one call; the budget is shared by all.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    budget: Arc<TpsBudget>,
    attempts: usize,
}

impl RetryPolicy {
    pub fn new() -> RetryPolicy {
        RetryPolicy {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            attempts: 0,
        }
    }
}

impl tower::retry::Policy<Call, Response<Body>, CallError> for RetryPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        call: &mut Call,
        result: &mut Result<Response<Body>, CallError>,
    ) -> Option<Self::Future> {
        let Err(failure) = result else { return None };
        // No route and no healthy endpoint are answers, not accidents: a retry would get them
        // again.
        if !matches!(failure.error, ProxyError::UpstreamFailed { .. }) {
            return None;
        }
        let safe = (failure.unsent && call.can_retry()) || call.idempotent();
        if !safe || self.attempts >= MAX_ATTEMPTS || !self.budget.withdraw() {
            return None;
        }
        Some(ready(()))
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        if self.attempts == 0 {
            self.budget.deposit();
        }
        self.attempts += 1;
        Some(call.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use crate::target::ServiceName;
    use tower::retry::Policy;

    fn call(method: http::Method, body: Body) -> Call {
        let request = http::Request::builder()
            .method(method)
            .body(body)
            .expect("valid");
        let name = ServiceName {
            service: "greeter".into(),
            datacenter: None,
        };
        Call::new(name, request, None)
    }

    fn failed(unsent: bool) -> Result<Response<Body>, CallError> {
        let error = ProxyError::UpstreamFailed {
            service: "greeter".into(),
            reason: "refused".into(),
        };
        Err(CallError { error, unsent })
    }

    #[test]
    fn an_idempotent_bodiless_call_is_retried_up_to_the_limit() {
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::GET, body::empty());
        let mut tries = 0;
        while policy.clone_request(&c).is_some() {
            tries += 1;
            if policy.retry(&mut c, &mut failed(false)).is_none() {
                break;
            }
        }
        assert_eq!(tries, MAX_ATTEMPTS);
    }

    #[test]
    fn a_post_that_reached_the_service_is_not_retried_but_an_unsent_one_is() {
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::POST, body::full("data"));
        policy.clone_request(&c);
        assert!(c.take_request().is_some());
        assert!(
            policy.retry(&mut c, &mut failed(false)).is_none(),
            "sent: not retried"
        );
        let mut c = call(http::Method::POST, body::full("data"));
        policy.clone_request(&c);
        assert!(
            policy.retry(&mut c, &mut failed(true)).is_some(),
            "still in the slot: retried"
        );
    }

    #[test]
    fn answers_are_not_retried() {
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::GET, body::empty());
        policy.clone_request(&c);
        let mut no_route = Err(CallError {
            error: ProxyError::NoRoute {
                service: "g".into(),
            },
            unsent: true,
        });
        assert!(policy.retry(&mut c, &mut no_route).is_none());
    }

    #[test]
    fn the_budget_stops_retries_when_most_calls_fail() {
        let mut policy = RetryPolicy::new();
        let mut retried = 0;
        for _ in 0..1000 {
            let mut p = policy.clone();
            p.attempts = 0;
            let mut c = call(http::Method::GET, body::empty());
            p.clone_request(&c);
            if p.retry(&mut c, &mut failed(false)).is_some() {
                retried += 1;
            }
            policy = RetryPolicy {
                budget: p.budget.clone(),
                attempts: 0,
            };
        }
        // 20% of 1000 calls plus the 10/s reserve over the 10 s window.
        assert!(retried <= 200 + 100 + 1, "{retried} retries");
        assert!(retried >= 150, "{retried} retries");
    }
}
