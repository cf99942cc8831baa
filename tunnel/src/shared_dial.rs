//! Dials that every caller wanting the same thing at the same time shares.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::{BoxFuture, FutureExt, Shared};

type Dial<T> = Shared<BoxFuture<'static, T>>;

/// Dials under way, by what they reach.
///
/// The first caller that wants `key` while no dial to it is under way starts one; every caller
/// that wants it before that dial ends waits for the same dial and gets its outcome, success
/// or failure. A burst of calls to an address that does not answer thus costs one timeout, not
/// one per call in turn, and one handshake serves them all when it does answer. A caller that
/// comes after the dial ended starts a new one. The dial runs on a task of its own, so it
/// finishes (and whatever it sets up is kept or closed as if a caller had waited) even when
/// every caller gives up: no dial is left half-done for a later caller to find.
///
/// Used by the tunnel to reach nodes, and by the proxy's HTTP/2 pool to reach upstreams.
pub struct SharedDials<K, T> {
    under_way: Arc<Mutex<UnderWay<K, T>>>,
}

struct UnderWay<K, T> {
    dials: HashMap<K, (u64, Dial<T>)>,
    started: u64,
}

impl<K, T> Default for SharedDials<K, T> {
    fn default() -> Self {
        SharedDials {
            under_way: Arc::new(Mutex::new(UnderWay {
                dials: HashMap::new(),
                started: 0,
            })),
        }
    }
}

impl<K, T> std::fmt::Debug for SharedDials<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDials").finish_non_exhaustive()
    }
}

fn lock<K, T>(under_way: &Mutex<UnderWay<K, T>>) -> MutexGuard<'_, UnderWay<K, T>> {
    under_way.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K, T> SharedDials<K, T>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// The outcome of the dial to `key` under way, or of a new one that `start` makes.
    pub async fn dial<F, D>(&self, key: K, start: F) -> T
    where
        F: FnOnce() -> D,
        D: Future<Output = T> + Send + 'static,
    {
        let dial = {
            let mut under_way = lock(&self.under_way);
            match under_way.dials.get(&key) {
                Some((_, dial)) => dial.clone(),
                None => {
                    under_way.started += 1;
                    let id = under_way.started;
                    let dial = finish(Arc::downgrade(&self.under_way), key.clone(), id, start())
                        .boxed()
                        .shared();
                    under_way.dials.insert(key, (id, dial.clone()));
                    tokio::spawn(dial.clone());
                    dial
                }
            }
        };
        dial.await
    }

    /// How many callers wait for the dial to `key` under way (for tests).
    pub fn waiting(&self, key: &K) -> usize {
        let under_way = lock(&self.under_way);
        let count = under_way
            .dials
            .get(key)
            .and_then(|(_, dial)| dial.strong_count());
        // The map holds one handle itself, and the task that drives the dial another.
        count.map_or(0, |n| n.saturating_sub(2))
    }
}

/// Runs `dial`, then takes it off the dials under way before anyone sees its outcome, so that
/// the next caller starts afresh.
async fn finish<K, T, D>(
    under_way: std::sync::Weak<Mutex<UnderWay<K, T>>>,
    key: K,
    id: u64,
    dial: D,
) -> T
where
    K: Eq + Hash,
    D: Future<Output = T>,
{
    let outcome = dial.await;
    if let Some(under_way) = under_way.upgrade() {
        let mut under_way = lock(&under_way);
        if under_way.dials.get(&key).is_some_and(|(i, _)| *i == id) {
            under_way.dials.remove(&key);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn callers_during_a_dial_share_it_and_later_ones_dial_again() {
        let dials: Arc<SharedDials<u8, Result<u32, String>>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let call = |outcome: Result<u32, String>| {
            let dials = dials.clone();
            let started = started.clone();
            tokio::spawn(async move {
                dials
                    .dial(1, move || async move {
                        started.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        outcome
                    })
                    .await
            })
        };
        let first = call(Err("timed out".into()));
        tokio::task::yield_now().await;
        let waiting: Vec<_> = (0..7).map(|_| call(Ok(7))).collect();
        tokio::task::yield_now().await;
        assert_eq!(dials.waiting(&1), 8);
        assert_eq!(first.await.expect("task"), Err("timed out".into()));
        for call in waiting {
            assert_eq!(call.await.expect("task"), Err("timed out".into()));
        }
        assert_eq!(
            started.load(Ordering::Relaxed),
            1,
            "one dial for eight callers"
        );
        assert_eq!(dials.waiting(&1), 0);
        assert_eq!(call(Ok(7)).await.expect("task"), Ok(7));
        assert_eq!(started.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dial_every_caller_gave_up_on_still_finishes() {
        let dials: Arc<SharedDials<u8, u32>> = Arc::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let caller = {
            let (dials, finished) = (dials.clone(), finished.clone());
            tokio::spawn(async move {
                dials
                    .dial(1, move || async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        finished.fetch_add(1, Ordering::Relaxed);
                        5
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        caller.abort();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            finished.load(Ordering::Relaxed),
            1,
            "the dial ran to its end"
        );
        assert_eq!(dials.waiting(&1), 0);
        assert_eq!(
            dials.dial(1, || async { 6 }).await,
            6,
            "and a new one starts"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_dial_goes_on_when_its_first_caller_gives_up() {
        let dials: Arc<SharedDials<u8, u32>> = Arc::default();
        let first = {
            let dials = dials.clone();
            tokio::spawn(async move {
                dials
                    .dial(1, || async {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        5
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let second = {
            let dials = dials.clone();
            tokio::spawn(async move { dials.dial(1, || async { 6 }).await })
        };
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.expect("task"), 5);
    }
}
