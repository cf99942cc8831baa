//! The retry layer's policy, the same for HTTP calls and TCP connections: when a failed try
//! may be tried again.
//!
//! A call is tried again when its request never reached the service (unreached: the
//! connection or stream could not be opened, or the serving node could not hand it over) and
//! it has the request to send again, or when no answer to it began and it can be sent again
//! whole: idempotent and bodiless, or with its body (up to 64 KiB) kept ([`crate::replay`]).
//! At most
//! [`MAX_ATTEMPTS`] tries, and every retry draws on a budget shared by all calls, as
//! linkerd2-proxy's do: 20% on top of recent calls plus 10 a second, so that retries can never
//! multiply the load on a service that is already failing. The balancer below this layer
//! picks again on every try, and a failed endpoint scores badly there, so a retry lands
//! elsewhere when there is anywhere else.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use crate::call::Routed;
use crate::error::{CallError, TryError};

/// At most this many tries of one call, the first included.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// The retry policy of one call; the budget is shared by all.
#[derive(Clone)]
pub(crate) struct RetryPolicy {
    budget: Arc<TpsBudget>,
    attempts: usize,
}

impl RetryPolicy {
    pub(crate) fn new() -> RetryPolicy {
        RetryPolicy {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            attempts: 0,
        }
    }
}

impl<C: Routed, T> tower::retry::Policy<C, T, CallError> for RetryPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, call: &mut C, result: &mut Result<T, CallError>) -> Option<Self::Future> {
        let safe = match result {
            Ok(_) => return None,
            // No route and no healthy endpoint are answers, not accidents: a retry would get
            // them again.
            Err(CallError::Answer(_)) => return None,
            Err(CallError::Try(TryError::Unreached { .. })) => {
                call.can_resend() || call.repeatable()
            }
            Err(CallError::Try(TryError::Unanswered { .. })) => call.repeatable(),
        };
        if !safe || self.attempts >= MAX_ATTEMPTS || !self.budget.withdraw() {
            return None;
        }
        Some(ready(()))
    }

    fn clone_request(&mut self, call: &C) -> Option<C> {
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
    use crate::body::{self, Body};
    use crate::call::Call;
    use crate::error::ProxyError;
    use crate::target::ServiceName;
    use http::Response;
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

    fn clone_request(policy: &mut RetryPolicy, call: &Call) -> Option<Call> {
        Policy::<Call, Response<Body>, CallError>::clone_request(policy, call)
    }

    fn failed(unreached: bool) -> Result<Response<Body>, CallError> {
        let reason = "refused".to_string();
        Err(CallError::Try(if unreached {
            TryError::Unreached {
                reason,
                request: None,
            }
        } else {
            TryError::Unanswered { reason }
        }))
    }

    #[test]
    fn an_idempotent_bodiless_call_is_retried_up_to_the_limit() {
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::GET, body::empty());
        let mut tries = 0;
        while clone_request(&mut policy, &c).is_some() {
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
        clone_request(&mut policy, &c);
        assert!(c.take_request().is_some());
        assert!(
            policy.retry(&mut c, &mut failed(false)).is_none(),
            "sent: not retried"
        );
        let mut c = call(http::Method::POST, body::full("data"));
        clone_request(&mut policy, &c);
        assert!(
            policy.retry(&mut c, &mut failed(true)).is_some(),
            "still in the slot: retried"
        );
    }

    #[tokio::test]
    async fn a_post_whose_body_was_sent_whole_is_retried_with_it_when_no_answer_began() {
        use http_body_util::BodyExt;
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::POST, body::full("data"));
        clone_request(&mut policy, &c);
        let first = c.take_request().expect("the first try's");
        let sent = first.into_body().collect().await.expect("sent whole");
        assert_eq!(sent.to_bytes(), "data");
        assert!(policy.retry(&mut c, &mut failed(false)).is_some());
        let again = c.take_request().expect("built again");
        assert_eq!(*again.method(), http::Method::POST);
        let resent = again.into_body().collect().await.expect("whole");
        assert_eq!(resent.to_bytes(), "data");
    }

    #[test]
    fn answers_are_not_retried() {
        let mut policy = RetryPolicy::new();
        let mut c = call(http::Method::GET, body::empty());
        clone_request(&mut policy, &c);
        let mut no_route: Result<Response<Body>, CallError> =
            Err(CallError::Answer(ProxyError::NoRoute {
                service: "g".into(),
            }));
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
            clone_request(&mut p, &c);
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
