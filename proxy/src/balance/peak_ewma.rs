//! The load figures the balancer picks by: power of two choices over peak-EWMA latency, as
//! linkerd2-proxy and `tower::balance` do.
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

use crate::directory::{Endpoint, EndpointId};

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

/// Load figures per endpoint id, shared by every call, and the pick they decide.
#[derive(Clone, Default, Debug)]
pub struct PeakEwma {
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

impl PeakEwma {
    /// Picks one of `candidates`, or `None` if there are none.
    pub fn pick<'a>(&self, candidates: &'a [Endpoint]) -> Option<&'a Endpoint> {
        Some(&candidates[self.pick_index(candidates)?])
    }

    /// [`PeakEwma::pick`], taking the endpoint out of `candidates` rather than cloning it.
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
            loads: self.clone(),
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
    loads: PeakEwma,
    endpoint: EndpointId,
    started: Instant,
    finished: bool,
}

impl InFlight {
    /// The call got its response (head): its latency becomes a sample.
    pub fn done(mut self) {
        self.finished = true;
        self.loads.finish(self.endpoint, self.started.elapsed());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.loads
                .finish(self.endpoint, self.started.elapsed().max(FAILURE_PENALTY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

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
        let loads = PeakEwma::default();
        drop(loads.start(id(2))); // a failure: counts as a 1 s call
        loads.start(id(1)).done();
        let eps = [ep(1), ep(2)];
        let bad = (0..1000)
            .filter(|_| loads.pick(&eps).map(|e| e.id) == Some(id(2)))
            .count();
        assert_eq!(bad, 0, "with two endpoints P2C always compares both");
    }

    #[test]
    fn pending_calls_add_load() {
        let loads = PeakEwma::default();
        let _busy: Vec<InFlight> = (0..5).map(|_| loads.start(id(1))).collect();
        let eps = [ep(1), ep(2)];
        assert_eq!(loads.pick(&eps).map(|e| e.id), Some(id(2)));
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
        let loads = PeakEwma::default();
        let eps: Vec<Endpoint> = (0..4).map(ep).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(loads.pick(&eps).map(|e| e.id));
        }
        assert_eq!(seen.len(), 4);
        assert!(loads.estimate(id(0)).is_none());
    }
}
