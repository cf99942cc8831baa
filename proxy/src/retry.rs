//! When a failed call may be tried again.
//!
//! A call is retried on another endpoint when it never left (the connection or stream could
//! not be opened), or when it is idempotent and has no body to replay. Retries draw on a
//! budget, as linkerd2-proxy's do: 20% on top of recent calls plus 10 a second, so that
//! retries can never multiply load on a service that is already failing.

use std::time::Duration;

use http::{HeaderMap, Method, Request, Uri, Version};
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::{self, Body};

/// At most this many tries of one call, the first included.
pub const MAX_ATTEMPTS: usize = 3;

/// The shared retry budget.
#[derive(Debug)]
pub struct RetryBudget(TpsBudget);

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget(TpsBudget::new(Duration::from_secs(10), 10, 0.2))
    }
}

impl RetryBudget {
    /// Every first try earns a fraction of a retry.
    pub fn deposit(&self) {
        self.0.deposit();
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

/// A bodiless request kept so that it can be sent again.
#[derive(Debug, Clone)]
pub struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// Keeps a copy of `request` if it can be replayed: no body and not an upgrade.
    pub fn of(request: &Request<Body>, upgrade: bool) -> Option<Replay> {
        use http_body::Body as _;
        (!upgrade && request.body().is_end_stream()).then(|| Replay {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        })
    }

    /// Whether a call that may have reached the service can be sent again safely.
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
    }

    pub fn request(&self) -> Request<Body> {
        let mut request = Request::new(body::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}
