//! Power of two choices over peak-EWMA latency, as linkerd2-proxy and `tower::balance` do.
//!
//! Each endpoint's load is its latency estimate times its calls in flight plus one. The
//! estimate jumps up to any slower sample at once (the "peak") and decays toward faster ones,
//! so a struggling endpoint sheds load quickly and earns it back gradually. Picking the less
//! loaded of two random endpoints avoids the herd behaviour of always picking the least one.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use tower::{Service, ServiceExt};

use crate::body::Body;
use crate::call::{Call, CallError};
use crate::directory::{candidates, Directory, Endpoint, EndpointId, Target};
use crate::error::ProxyError;

/// The estimate an endpoint starts with, before any sample (linkerd2-proxy's default).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly an estimate forgets: after this long a sample weighs 1/e.
const DECAY: Duration = Duration::from_secs(10);
/// A failed call counts as this slow, so failing endpoints are avoided.
const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// Endpoints not used for this long are forgotten, so churn does not grow memory.
const FORGET_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Load {
    ewma_ns: f64,
    updated: Instant,
    pending: u32,
}

impl Load {
    fn new(now: Instant) -> Load {
        Load {
            ewma_ns: DEFAULT_RTT.as_nanos() as f64,
            updated: now,
            pending: 0,
        }
    }

    fn cost(&self) -> f64 {
        self.ewma_ns * (self.pending as f64 + 1.0)
    }

    fn observe(&mut self, rtt: Duration, now: Instant) {
        let sample = rtt.as_nanos() as f64;
        if sample > self.ewma_ns {
            self.ewma_ns = sample;
        } else {
            let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
            let w = (-elapsed / DECAY.as_secs_f64()).exp();
            self.ewma_ns = self.ewma_ns * w + sample * (1.0 - w);
        }
        self.updated = now;
    }
}

/// Load figures per endpoint id, shared by every call.
#[derive(Clone, Default, Debug)]
pub struct Balancer {
    loads: Arc<Mutex<HashMap<EndpointId, Load>>>,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

/// xorshift64*: fast and good enough to pick between endpoints.
fn random(bound: usize) -> usize {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound as u64) as usize
    })
}

impl Balancer {
    /// Picks one of `candidates`, or `None` if there are none.
    pub fn pick<'a>(&self, candidates: &'a [Endpoint]) -> Option<&'a Endpoint> {
        Some(&candidates[self.pick_index(candidates)?])
    }

    /// [`Balancer::pick`], taking the endpoint out of `candidates` rather than cloning it.
    pub fn pick_owned(&self, mut candidates: Vec<Endpoint>) -> Option<Endpoint> {
        let index = self.pick_index(&candidates)?;
        Some(candidates.swap_remove(index))
    }

    fn pick_index(&self, candidates: &[Endpoint]) -> Option<usize> {
        match candidates.len() {
            0 => None,
            1 => Some(0),
            n => {
                let a = random(n);
                let b = (a + 1 + random(n - 1)) % n;
                let loads = self.lock();
                let cost = |e: &Endpoint| {
                    loads
                        .get(&e.id)
                        .map_or(DEFAULT_RTT.as_nanos() as f64, Load::cost)
                };
                Some(if cost(&candidates[a]) <= cost(&candidates[b]) {
                    a
                } else {
                    b
                })
            }
        }
    }

    /// Marks a call to `endpoint` as started; finish it with [`InFlight::done`].
    pub fn start(&self, endpoint: EndpointId) -> InFlight {
        let now = Instant::now();
        let mut loads = self.lock();
        if loads.len() > 1024 {
            loads.retain(|_, l| l.pending > 0 || now.duration_since(l.updated) < FORGET_AFTER);
        }
        loads
            .entry(endpoint)
            .or_insert_with(|| Load::new(now))
            .pending += 1;
        InFlight {
            balancer: self.clone(),
            endpoint,
            started: now,
            finished: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Load>> {
        self.loads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, endpoint: EndpointId, rtt: Duration) {
        let now = Instant::now();
        if let Some(load) = self.lock().get_mut(&endpoint) {
            load.pending = load.pending.saturating_sub(1);
            load.observe(rtt, now);
        }
    }

    #[cfg(test)]
    fn estimate(&self, endpoint: EndpointId) -> Option<f64> {
        self.lock().get(&endpoint).map(|l| l.ewma_ns)
    }
}

/// A call in flight. Dropping it without [`done`](InFlight::done) counts as a failure.
#[derive(Debug)]
pub struct InFlight {
    balancer: Balancer,
    endpoint: EndpointId,
    started: Instant,
    finished: bool,
}

impl InFlight {
    /// The call got its response (head): its latency becomes a sample.
    pub fn done(mut self) {
        self.finished = true;
        self.balancer.finish(self.endpoint, self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.balancer
                .finish(self.endpoint, self.started.elapsed().max(FAILURE_PENALTY));
        }
    }
}

/// The balancer layer: resolves the call's service, keeps the eligible endpoints (healthy,
/// nearest datacenter first), picks one, and times the try for the latency estimate.
#[derive(Clone)]
pub(crate) struct Balance<S> {
    directory: Arc<dyn Directory>,
    balancer: Balancer,
    inner: S,
}

impl<S> Balance<S> {
    pub fn new(directory: Arc<dyn Directory>, balancer: Balancer, inner: S) -> Self {
        Balance {
            directory,
            balancer,
            inner,
        }
    }
}

impl<S> Service<Call> for Balance<S>
where
    S: Service<(Endpoint, Call), Response = Response<Body>, Error = CallError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, CallError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let directory = self.directory.clone();
        let balancer = self.balancer.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let picked = candidates(directory.as_ref(), call.name(), &call.tried())
                .await
                .and_then(|eligible| {
                    balancer
                        .pick_owned(eligible)
                        .ok_or_else(|| ProxyError::NoHealthyEndpoint {
                            service: call.name().to_string(),
                        })
                });
            let endpoint = match picked {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    return Err(CallError {
                        error,
                        unsent: true,
                    })
                }
            };
            call.trying(endpoint.id);
            let in_flight = balancer.start(endpoint.id);
            // A second handle on the call (one `Arc`), for its name once the try has it.
            let same_call = call.clone();
            let address = match endpoint.target {
                Target::Address(address) => Some(address),
                Target::Node { .. } => None,
            };
            let result = inner.oneshot((endpoint, call)).await;
            match (&result, address) {
                (Ok(_), _) => in_flight.done(),
                // A plain address that could not be reached: maybe one of this node's own
                // services, whose health check should look now.
                (Err(e), Some(address)) if e.unsent => {
                    directory.unreachable(&same_call.name().service, address)
                }
                _ => {}
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Target;

    fn id(port: u16) -> EndpointId {
        EndpointId::Address(([127, 0, 0, 1], port).into())
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            id: id(port),
            target: Target::Address(([127, 0, 0, 1], 1).into()),
            protocol: ferry_tunnel::Protocol::Http,
            datacenter: "dc1".into(),
            healthy: true,
        }
    }

    #[test]
    fn a_failing_endpoint_gets_almost_no_traffic() {
        let balancer = Balancer::default();
        drop(balancer.start(id(2))); // a failure: counts as a 1 s call
        balancer.start(id(1)).done();
        let eps = [ep(1), ep(2)];
        let bad = (0..1000)
            .filter(|_| balancer.pick(&eps).map(|e| e.id) == Some(id(2)))
            .count();
        assert_eq!(bad, 0, "with two endpoints P2C always compares both");
    }

    #[test]
    fn pending_calls_add_load() {
        let balancer = Balancer::default();
        let _busy: Vec<InFlight> = (0..5).map(|_| balancer.start(id(1))).collect();
        let eps = [ep(1), ep(2)];
        assert_eq!(balancer.pick(&eps).map(|e| e.id), Some(id(2)));
    }

    #[test]
    fn the_estimate_jumps_to_peaks_and_decays_toward_fast_samples() {
        let mut load = Load::new(Instant::now());
        let t0 = Instant::now();
        load.observe(Duration::from_millis(500), t0);
        assert_eq!(load.ewma_ns, 500e6);
        load.observe(Duration::from_millis(1), t0 + DECAY);
        assert!(load.ewma_ns < 500e6 * 0.4 && load.ewma_ns > 1e6);
    }

    #[test]
    fn picks_spread_over_equal_endpoints() {
        let balancer = Balancer::default();
        let eps: Vec<Endpoint> = (0..4).map(ep).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(balancer.pick(&eps).map(|e| e.id));
        }
        assert_eq!(seen.len(), 4);
        assert!(balancer.estimate(id(0)).is_none());
    }
}
