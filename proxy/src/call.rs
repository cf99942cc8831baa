//! The unit that travels down the outbound stack: one call to a service, cheap to clone so
//! that the retry layer can hold on to it.

use std::sync::{Arc, Mutex};

use http::{Method, Request};
use hyper::upgrade::OnUpgrade;

use crate::body::{self, Body};
use crate::directory::EndpointId;
use crate::error::ProxyError;
use crate::target::ServiceName;

/// One call, shared by all its tries.
///
/// The request sits in a slot that the first try takes. A try that fails before the request
/// left this node puts it back, so the next try can send it, body and all. A bodiless request
/// is also kept as a template, so it can be sent again even after a try consumed it.
#[derive(Clone)]
pub(crate) struct Call {
    /// Everything behind one `Arc`: a call is cloned for each layer and each try.
    shared: Arc<Shared>,
}

struct Shared {
    name: ServiceName,
    tries: Mutex<Tries>,
    template: Option<Template>,
    upgrade: Mutex<Option<OnUpgrade>>,
    upgrading: bool,
}

/// What the tries of one call share, under one lock.
struct Tries {
    /// The request, until a try takes it; back if it never left.
    request: Option<Request<Body>>,
    /// The endpoints earlier tries went to, which a retry avoids while it can.
    tried: Vec<EndpointId>,
}

/// What it takes to send a bodiless request again.
struct Template {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Call {
    pub fn new(name: ServiceName, request: Request<Body>, upgrade: Option<OnUpgrade>) -> Call {
        use http_body::Body as _;
        // Upgrades are never replayed: the caller's connection is handed over on the first.
        let template = (upgrade.is_none() && request.body().is_end_stream()).then(|| Template {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        });
        Call {
            shared: Arc::new(Shared {
                upgrading: upgrade.is_some(),
                name,
                tries: Mutex::new(Tries {
                    request: Some(request),
                    tried: Vec::new(),
                }),
                template,
                upgrade: Mutex::new(upgrade),
            }),
        }
    }

    /// The service called.
    pub fn name(&self) -> &ServiceName {
        &self.shared.name
    }

    /// The request to send on this try, or `None` if it left on an earlier try and cannot be
    /// rebuilt.
    pub fn take_request(&self) -> Option<Request<Body>> {
        lock(&self.shared.tries).request.take().or_else(|| {
            self.shared.template.as_ref().map(|t| {
                let mut request = Request::new(body::empty());
                *request.method_mut() = t.method.clone();
                *request.uri_mut() = t.uri.clone();
                *request.version_mut() = t.version;
                *request.headers_mut() = t.headers.clone();
                request
            })
        })
    }

    /// Puts back a request that never left, for the next try.
    pub fn give_back(&self, request: Request<Body>) {
        lock(&self.shared.tries).request = Some(request);
    }

    /// The endpoints earlier tries of this call went to.
    pub fn tried(&self) -> Vec<EndpointId> {
        lock(&self.shared.tries).tried.clone()
    }

    /// Records the endpoint this try goes to.
    pub fn trying(&self, endpoint: EndpointId) {
        lock(&self.shared.tries).tried.push(endpoint);
    }

    pub fn take_upgrade(&self) -> Option<OnUpgrade> {
        lock(&self.shared.upgrade).take()
    }

    /// Whether another try has a request to send. A call that upgrades never has: the
    /// caller's side of the upgrade went with the first try.
    pub fn can_retry(&self) -> bool {
        !self.shared.upgrading
            && (self.shared.template.is_some() || lock(&self.shared.tries).request.is_some())
    }

    /// Whether a try that may have reached the service can be repeated safely: idempotent
    /// (RFC 9110 §9.2.2) and rebuilt from its template.
    pub fn idempotent(&self) -> bool {
        self.shared.template.as_ref().is_some_and(|t| {
            matches!(
                t.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            )
        })
    }
}

/// Why a try failed, and whether its request ever left this node.
#[derive(Debug)]
pub(crate) struct CallError {
    pub error: ProxyError,
    /// The request never reached the service: any call whose request can be sent again
    /// may be tried again.
    pub unsent: bool,
}

impl From<ProxyError> for CallError {
    fn from(error: ProxyError) -> Self {
        CallError {
            error,
            unsent: false,
        }
    }
}
