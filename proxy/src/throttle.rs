//! A log that cannot flood the node's output: a peer or subscriber that fails every call must
//! not fill the disk with the same line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one line through a second and counts those held back since.
#[derive(Default)]
pub(crate) struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Default)]
struct ThrottleState {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(held back since the last line)` when a line may be logged now, else `None`.
    pub(crate) fn pass(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            state.held += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_passes_and_the_rest_are_counted() {
        let throttle = Throttle::default();
        assert_eq!(throttle.pass(), Some(0));
        assert_eq!(throttle.pass(), None);
        assert_eq!(throttle.pass(), None);
        throttle
            .state
            .lock()
            .expect("not poisoned")
            .last
            .replace(Instant::now() - Duration::from_secs(2));
        assert_eq!(throttle.pass(), Some(2));
    }
}
