//! What Ferry's tests share: waiting for a condition by polling it with a deadline, never with
//! a bare sleep. One helper in two flavors, the same in what they take and what they do:
//! [`eventually`] blocks its thread (the end-to-end tests, which drive processes), and
//! [`eventually_async`] awaits on tokio's clock (the in-process tests, whose clock may be
//! paused). [`throughout_async`] is the converse: a condition that must keep holding.
#![forbid(unsafe_code)]

use std::fmt::Display;
use std::time::Duration;

/// How often [`eventually`] polls: the end-to-end tests poll through curl and admin APIs,
/// which cost a process or a connection each.
const BLOCKING_POLL: Duration = Duration::from_millis(100);
/// How often [`eventually_async`] polls: in-process state is cheap to look at.
const ASYNC_POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it returns `Ok`, and returns its value. After `within` it panics with
/// the last error, so a failing test says what it was waiting for.
pub fn eventually<T, E: Display>(within: Duration, check: impl FnMut() -> Result<T, E>) -> T {
    eventually_every(BLOCKING_POLL, within, check)
}

/// [`eventually`], polling every `interval`: for tests that time how soon something happens,
/// where the default interval would blur the measure.
pub fn eventually_every<T, E: Display>(
    interval: Duration,
    within: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= within => given_up(within, last),
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// [`eventually`] for async tests, on tokio's clock.
pub async fn eventually_async<T, E: Display>(
    within: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let started = tokio::time::Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= within => given_up(within, last),
            Err(_) => tokio::time::sleep(ASYNC_POLL).await,
        }
    }
}

/// Polls `check` for `period` and panics, naming `what`, the first time it does not hold: a
/// quiet spell that must change nothing.
pub async fn throughout_async(what: &str, period: Duration, mut check: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < period {
        assert!(check(), "{what} stopped holding");
        tokio::time::sleep(ASYNC_POLL).await;
    }
}

fn given_up(within: Duration, last: impl Display) -> ! {
    panic!("condition still false after {within:?}: {last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn returns_the_value_once_the_check_holds() {
        let polls = Cell::new(0);
        let value = eventually_every(Duration::from_millis(1), Duration::from_secs(5), || {
            polls.set(polls.get() + 1);
            if polls.get() < 3 {
                Err("not yet")
            } else {
                Ok(polls.get())
            }
        });
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "condition still false after 20ms: the thing never came")]
    fn panics_with_the_last_error_after_the_deadline() {
        eventually_every(Duration::from_millis(1), Duration::from_millis(20), || {
            Err::<(), _>("the thing never came")
        });
    }

    #[tokio::test(start_paused = true)]
    async fn the_async_flavor_waits_on_tokios_clock() {
        let started = tokio::time::Instant::now();
        let polls = Cell::new(0);
        eventually_async(Duration::from_secs(60), || {
            polls.set(polls.get() + 1);
            (polls.get() == 100).then_some(()).ok_or("not yet")
        })
        .await;
        assert_eq!(started.elapsed(), ASYNC_POLL * 99);
    }
}
