//! Waits between tries: exponential backoff with jitter. Peers redial by it; the broker
//! retries deliveries by it.

use std::time::Duration;

/// The first wait after a failed dial or a lost link, doubled on each failure up to `max`, and
/// back to `min` once a dial succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait, and the least.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// 100 ms to 5 s: a peer back from a restart is linked again within a few seconds, and a
    /// dead one costs a handshake attempt every few seconds.
    pub const DEFAULT: Backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    /// The wait after `current`.
    pub fn after(&self, current: Duration) -> Duration {
        (current * 2).clamp(self.min, self.max)
    }
}

/// Spreads waits over half to all of their length, so that peers that lost each other at the
/// same moment do not redial in lockstep. Seeded by its owner: tests give a fixed seed and
/// see the same waits every run.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A jitter whose waits follow from `seed`.
    pub fn new(seed: u64) -> Jitter {
        Jitter { state: seed | 1 }
    }

    /// Half of `wait`, plus a random part of the other half.
    pub fn spread(&mut self, wait: Duration) -> Duration {
        let half = wait / 2;
        half + half.mul_f64((self.next() % 1000) as f64 / 1000.0)
    }

    /// xorshift64*: fast, and random enough to spread redials.
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
