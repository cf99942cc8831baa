//! What travels down the outbound stacks: one call to a service, cheap to clone so that the
//! retry layer can hold on to it. An HTTP call ([`Call`]) carries its request; a TCP
//! connection ([`TcpCall`]) carries nothing but where it goes. The balancer and the retry
//! layer see both through [`Routed`].

use std::sync::{Arc, Mutex, MutexGuard};

use http::{Method, Request};
use hyper::upgrade::OnUpgrade;

use crate::body::{self, Body};
use crate::directory::EndpointId;
use crate::replay::Replay;
use crate::target::ServiceName;

/// What the balancer and the retry layer need of a call, whatever it carries.
pub(crate) trait Routed: Clone + Send + 'static {
    /// The service called.
    fn name(&self) -> &ServiceName;
    /// The endpoints earlier tries of this call went to, which a retry avoids while it can.
    fn tried(&self) -> Vec<EndpointId>;
    /// Records the endpoint this try goes to.
    fn trying(&self, endpoint: EndpointId);
    /// Whether another try has something to send after one that never reached the service.
    fn can_resend(&self) -> bool;
    /// Whether a try that may have reached the service, but had no answer begin, is tried
    /// again.
    fn repeatable(&self) -> bool;
    /// For a call that goes to each endpoint once at most, the reason to give up with once
    /// every eligible endpoint has been tried: the last try's failure. `None` for one that may
    /// go to an endpoint again (an HTTP call: its retry policy bounds it).
    fn given_up(&self) -> Option<String>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One HTTP call, shared by all its tries.
///
/// The request sits in a slot that the first try takes. A try that fails before the request
/// left this node puts it back, so the next try can send it, body and all. The request's head
/// is also kept as a template, and its body, up to [`MAX_REPLAY`](crate::replay::MAX_REPLAY),
/// as the first try reads it ([`Replay`]), so it can be sent again even after a try consumed it.
#[derive(Clone)]
pub(crate) struct Call {
    /// Everything behind one `Arc`: a call is cloned for each layer and each try.
    shared: Arc<Shared>,
}

struct Shared {
    name: ServiceName,
    tries: Mutex<Tries>,
    template: Option<Template>,
    /// The body as the first try read it; `None` for a bodiless request, or one too large.
    replay: Option<Replay>,
    upgrade: Mutex<Option<OnUpgrade>>,
    upgrading: bool,
}

/// What the tries of one call share, under one lock.
struct Tries {
    /// The request, until a try takes it; back if it never left.
    request: Option<Request<Body>>,
    tried: Vec<EndpointId>,
}

/// What it takes to send a bodiless request again.
struct Template {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl Call {
    pub(crate) fn new(
        name: ServiceName,
        request: Request<Body>,
        upgrade: Option<OnUpgrade>,
    ) -> Call {
        use http_body::Body as _;
        // Upgrades are never replayed: the caller's connection is handed over on the first.
        let (request, replay) = match upgrade.is_none() && !request.body().is_end_stream() {
            true => {
                let (head, body) = request.into_parts();
                let (body, replay) = Replay::record(body);
                (Request::from_parts(head, body), replay)
            }
            false => (request, None),
        };
        let bodiless = request.body().is_end_stream();
        let template = (upgrade.is_none() && (bodiless || replay.is_some())).then(|| Template {
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
                replay,
                upgrade: Mutex::new(upgrade),
            }),
        }
    }

    /// The request to send on this try, or `None` if it left on an earlier try and cannot be
    /// rebuilt.
    pub(crate) fn take_request(&self) -> Option<Request<Body>> {
        lock(&self.shared.tries).request.take().or_else(|| {
            let t = self.shared.template.as_ref()?;
            let body = match &self.shared.replay {
                None => body::empty(),
                Some(replay) => replay.body()?,
            };
            let mut request = Request::new(body);
            *request.method_mut() = t.method.clone();
            *request.uri_mut() = t.uri.clone();
            *request.version_mut() = t.version;
            *request.headers_mut() = t.headers.clone();
            Some(request)
        })
    }

    /// Whether the request can be built again from its template: bodiless, or its body kept
    /// whole.
    fn rebuildable(&self) -> bool {
        self.shared.template.is_some() && self.shared.replay.as_ref().is_none_or(Replay::whole)
    }

    /// Puts back a request that never left, for the next try.
    pub(crate) fn give_back(&self, request: Request<Body>) {
        lock(&self.shared.tries).request = Some(request);
    }

    pub(crate) fn take_upgrade(&self) -> Option<OnUpgrade> {
        lock(&self.shared.upgrade).take()
    }
}

impl Routed for Call {
    fn name(&self) -> &ServiceName {
        &self.shared.name
    }

    fn tried(&self) -> Vec<EndpointId> {
        lock(&self.shared.tries).tried.clone()
    }

    fn trying(&self, endpoint: EndpointId) {
        lock(&self.shared.tries).tried.push(endpoint);
    }

    /// A call that upgrades never can: the caller's side of the upgrade went with the first
    /// try.
    fn can_resend(&self) -> bool {
        !self.shared.upgrading && (self.rebuildable() || lock(&self.shared.tries).request.is_some())
    }

    /// Idempotent by its method (RFC 9110 §9.2.2) and bodiless; or, whatever its method, with
    /// its body kept whole: a POST or a gRPC call that met a killed workload or a dead node
    /// before any answer began goes elsewhere rather than failing, as Envoy's `retry_on:
    /// reset` and linkerd2-proxy's retries of bodies up to 64 KiB do.
    fn repeatable(&self) -> bool {
        let Some(template) = &self.shared.template else {
            return false;
        };
        match &self.shared.replay {
            Some(replay) => replay.whole(),
            None => matches!(
                template.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            ),
        }
    }

    fn given_up(&self) -> Option<String> {
        None
    }
}

/// One TCP connection to a service, shared by all its tries: a try that cannot open a stream
/// to one endpoint goes to another, and none goes twice to the same (a second round would only
/// double the wait on one that times out).
#[derive(Clone)]
pub(crate) struct TcpCall {
    shared: Arc<TcpShared>,
}

struct TcpShared {
    name: ServiceName,
    tried: Mutex<Vec<EndpointId>>,
    last_failure: Mutex<Option<String>>,
}

impl TcpCall {
    pub(crate) fn new(name: ServiceName) -> TcpCall {
        TcpCall {
            shared: Arc::new(TcpShared {
                name,
                tried: Mutex::new(Vec::new()),
                last_failure: Mutex::new(None),
            }),
        }
    }

    /// Records why a try failed.
    pub(crate) fn failed(&self, reason: &str) {
        *lock(&self.shared.last_failure) = Some(reason.to_owned());
    }
}

impl Routed for TcpCall {
    fn name(&self) -> &ServiceName {
        &self.shared.name
    }

    fn tried(&self) -> Vec<EndpointId> {
        lock(&self.shared.tried).clone()
    }

    fn trying(&self, endpoint: EndpointId) {
        lock(&self.shared.tried).push(endpoint);
    }

    /// The client's bytes wait in its socket until a stream is open: nothing is lost.
    fn can_resend(&self) -> bool {
        true
    }

    /// A stream that opened carries the connection; there is nothing to repeat.
    fn repeatable(&self) -> bool {
        false
    }

    fn given_up(&self) -> Option<String> {
        let last = lock(&self.shared.last_failure).clone();
        Some(last.unwrap_or_else(|| "no endpoint could be reached".into()))
    }
}
