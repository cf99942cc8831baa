//! The load figures the balancer picks by: power of two choices over peak-EWMA latency, as
//! linkerd2-proxy and `tower::balance` do.
//!
//! Each endpoint's load is its latency estimate times its calls in flight plus one. The
//! estimate jumps up to any slower sample at once (the "peak") and decays toward faster ones,
//! so a struggling endpoint sheds load quickly and earns it back gradually. Picking the less
//! loaded of two random endpoints avoids the herd behaviour of always picking the least one.
//!
//! Time moves the figures even when no sample comes, as in tower's `PeakEwma`: an estimate
//! decays toward zero while its endpoint is not called, and a failure's penalty fades within
//! a few seconds. Without that, an endpoint that failed once would keep its bad figure for as
//! long as the others were preferred to it, which is forever: it would get no call, so no
//! sample, after it recovered. All time is tokio's clock, which tests can pause.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
// Two lookups a call: foldhash, not SipHash.
use foldhash::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::directory::{Endpoint, EndpointId};

/// The estimate an endpoint starts with, before any sample (linkerd2-proxy's default).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly an estimate forgets: after this long without a sample it weighs 1/e.
/// linkerd2-proxy takes 10 s; at that pace one slow answer (a peak) kept an endpoint out of
/// the running for ten seconds and more when few calls were in flight to weigh the others
/// down, so that after a rolling restart the load stayed on whichever endpoints happened to
/// be fast at the wrong moment. Over 2 s, a peak is forgotten within a few seconds.
const DECAY: Duration = Duration::from_secs(2);
/// A failed try makes its endpoint look at least this slow, so the next calls go elsewhere
/// while a health check confirms the failure or not.
const FAILURE_PENALTY: Duration = Duration::from_secs(1);
/// How quickly a failure's penalty fades: after this long it weighs 1/e, so a 1 s penalty is
/// below a millisecond's cost within about 3.5 s, and a recovered endpoint is tried again.
const PENALTY_FADE: Duration = Duration::from_millis(500);
/// Endpoints not used for this long are forgotten, so churn does not grow memory.
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// `e^(-elapsed/constant)`: what is left of something after `elapsed`, at rate `constant`.
fn remaining(elapsed: Duration, constant: Duration) -> f64 {
    (-elapsed.as_secs_f64() / constant.as_secs_f64()).exp()
}

#[derive(Debug)]
struct Load {
    /// The latency estimate when `updated`, in nanoseconds: [`DEFAULT_RTT`] until the first
    /// sample replaces it.
    ewma_ns: f64,
    updated: Instant,
    sampled: bool,
    /// The penalty of the last failure when `failed`, in nanoseconds.
    penalty_ns: f64,
    failed: Instant,
    pending: u32,
}

impl Load {
    fn new(now: Instant) -> Load {
        Load {
            ewma_ns: DEFAULT_RTT.as_nanos() as f64,
            updated: now,
            sampled: false,
            penalty_ns: 0.0,
            failed: now,
            pending: 0,
        }
    }

    /// The latency estimate at `now`: decayed toward zero since the last sample; `None`
    /// before the first.
    fn estimate(&self, now: Instant) -> Option<f64> {
        self.sampled
            .then(|| self.ewma_ns * remaining(now.saturating_duration_since(self.updated), DECAY))
    }

    /// What is left at `now` of the last failure's penalty.
    fn penalty(&self, now: Instant) -> f64 {
        if self.penalty_ns == 0.0 {
            return 0.0;
        }
        self.penalty_ns * remaining(now.saturating_duration_since(self.failed), PENALTY_FADE)
    }

    /// A call's latency. The first replaces the default; a slower sample than the estimate
    /// replaces it (the peak); a faster one is blended in by how long the estimate went
    /// without a sample.
    fn observe(&mut self, rtt: Duration, now: Instant) {
        let sample = rtt.as_nanos() as f64;
        let w = remaining(now.saturating_duration_since(self.updated), DECAY);
        let decayed = self.ewma_ns * w;
        self.ewma_ns = if sample > decayed || !self.sampled {
            sample
        } else {
            decayed + sample * (1.0 - w)
        };
        self.updated = now;
        self.sampled = true;
    }

    /// A failed try that took `took`: penalized by at least [`FAILURE_PENALTY`], fading.
    fn fail(&mut self, took: Duration, now: Instant) {
        let penalty = took.max(FAILURE_PENALTY).as_nanos() as f64;
        self.penalty_ns = self.penalty(now).max(penalty);
        self.failed = now;
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
                let now = Instant::now();
                let loads = self.lock();
                let weigh = |e: &Endpoint| match loads.get(&e.id) {
                    Some(l) => (l.estimate(now), l.penalty(now), l.pending),
                    None => (None, 0.0, 0),
                };
                let ((est_a, pen_a, pending_a), (est_b, pen_b, pending_b)) =
                    (weigh(&candidates[a]), weigh(&candidates[b]));
                // An endpoint with no sample yet (new, or never picked) is taken to be as fast
                // as the one it is weighed against: it gets its turn soon, and its calls in
                // flight still keep a burst from piling onto it before its first answer.
                let default = DEFAULT_RTT.as_nanos() as f64;
                let cost = |est: Option<f64>, other: Option<f64>, penalty: f64, pending: u32| {
                    (est.or(other).unwrap_or(default) + penalty) * (pending as f64 + 1.0)
                };
                let cost_a = cost(est_a, est_b, pen_a, pending_a);
                let cost_b = cost(est_b, est_a, pen_b, pending_b);
                Some(if cost_a <= cost_b { a } else { b })
            }
        }
    }

    /// Marks a call to `endpoint` as started; finish it with [`InFlight::done`].
    pub fn start(&self, endpoint: EndpointId) -> InFlight {
        let now = Instant::now();
        let mut loads = self.lock();
        if loads.len() > 1024 {
            loads.retain(|_, l| {
                l.pending > 0 || now.saturating_duration_since(l.updated) < FORGET_AFTER
            });
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

    /// A call to `endpoint` that took `took` ended: answered (`ok`), or failed.
    fn finish(&self, endpoint: EndpointId, took: Duration, ok: bool) {
        let now = Instant::now();
        if let Some(load) = self.lock().get_mut(&endpoint) {
            load.pending = load.pending.saturating_sub(1);
            if ok {
                load.observe(took, now);
            } else {
                load.fail(took, now);
            }
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
        self.loads
            .finish(self.endpoint, self.started.elapsed(), true);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.loads
                .finish(self.endpoint, self.started.elapsed(), false);
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
    fn an_estimate_decays_toward_zero_while_no_sample_comes() {
        let t0 = Instant::now();
        let mut load = Load::new(t0);
        load.observe(Duration::from_millis(100), t0);
        let at = |d: Duration| load.estimate(t0 + d).unwrap_or_default() / 1e6;
        assert!((at(DECAY) - 36.8).abs() < 0.1, "{} ms", at(DECAY));
        assert!(at(DECAY * 5) < 1.0, "{} ms", at(DECAY * 5));
    }

    #[test]
    fn a_failures_penalty_fades_within_a_few_seconds() {
        let t0 = Instant::now();
        let mut load = Load::new(t0);
        load.fail(Duration::from_millis(3), t0);
        assert_eq!(load.penalty(t0), FAILURE_PENALTY.as_nanos() as f64);
        let left = load.penalty(t0 + Duration::from_millis(3500)) / 1e6;
        assert!(left < 1.0, "{left} ms left after 3.5 s");
        // A slow failure (a connect that timed out) weighs its whole time.
        load.fail(Duration::from_secs(2), t0);
        assert_eq!(load.penalty(t0), 2e9);
    }

    /// One call a millisecond, for `period` of tokio's (paused) clock, each taking 1 ms at
    /// whichever endpoint it picked. Returns how many went to each.
    async fn steady_calls(loads: &PeakEwma, eps: &[Endpoint], period: Duration) -> Vec<usize> {
        let mut picked = vec![0; eps.len()];
        let end = Instant::now() + period;
        while Instant::now() < end {
            let endpoint = loads.pick(eps).expect("an endpoint").id;
            let call = loads.start(endpoint);
            tokio::time::advance(Duration::from_millis(1)).await;
            call.done();
            picked[eps
                .iter()
                .position(|e| e.id == endpoint)
                .expect("one of them")] += 1;
        }
        picked
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_failed_gets_its_share_back_while_its_competitor_is_healthy() {
        let loads = PeakEwma::default();
        let eps = [ep(1), ep(2)];
        steady_calls(&loads, &eps, Duration::from_secs(2)).await;
        // Endpoint 2 fails a call (its workload restarting), then is fine again.
        drop(loads.start(id(2)));
        let first = steady_calls(&loads, &eps, Duration::from_millis(500)).await;
        assert!(
            first[1] < 5,
            "the failed endpoint is avoided at first: {first:?}"
        );
        let back = steady_calls(&loads, &eps, Duration::from_secs(5)).await;
        assert!(back[1] > 0, "chosen again within 5 s: {back:?}");
        let after = steady_calls(&loads, &eps, Duration::from_secs(5)).await;
        let share = after[1] as f64 / (after[0] + after[1]) as f64;
        assert!(
            (0.3..=0.7).contains(&share),
            "a fair share once back: {after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_spread_over_equal_endpoints() {
        let loads = PeakEwma::default();
        let eps: Vec<Endpoint> = (0..4).map(ep).collect();
        let picked = steady_calls(&loads, &eps, Duration::from_secs(10)).await;
        for n in &picked {
            let share = *n as f64 / 10_000.0;
            assert!((0.15..=0.35).contains(&share), "{picked:?}");
        }
    }

    #[test]
    fn an_endpoint_never_sampled_is_weighed_as_fast_as_its_competitor() {
        let loads = PeakEwma::default();
        loads.start(id(0)).done();
        let eps = [ep(0), ep(1)];
        let new = (0..200)
            .filter(|_| loads.pick(&eps).map(|e| e.id) == Some(id(1)))
            .count();
        assert!(
            (50..=150).contains(&new),
            "{new} of 200 picks went to the new one"
        );
        assert_eq!(loads.estimate(id(1)), None, "weighing adds nothing");
    }
}
