//! What becomes of a message for one group after each try, as plain state without I/O: the
//! driver (`broker/mod.rs`) tries, reports the outcome here, and does what it is told.

use std::time::Duration;

use ferry_tunnel::backoff::{Backoff, Jitter};

/// How one try to hand a message to a member ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The member's service answered with this status.
    Answered(u16),
    /// No answer: the connection was refused, the stream reset, the node died, or the
    /// deadline passed. The text says which, for the log.
    Failed(String),
    /// The group had no healthy member to try.
    NoMember,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Acknowledged: the message is done for this group.
    Done,
    /// Try again (on another member when there is one) after this wait.
    Retry(Duration),
    /// The message cannot succeed, or its attempts are spent: it goes to the group's
    /// dead-letter topic, or, when there is none, is dropped. The text says why.
    GiveUp(String),
}

/// How a service's answer counts, as the reference says: `2xx` done; `408`, `429` and `5xx`
/// worth trying again; any other answer cannot succeed, however often it is tried.
fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        408 | 429 | 500..=599 => Verdict::Retryable,
        _ => Verdict::Final,
    }
}

enum Verdict {
    Done,
    Retryable,
    Final,
}

/// Waits between tries: 100 ms to 10 s. Doubling from 200 ms and spread over half to all of
/// each wait keeps the first at least 100 ms and the last at most 10 s. (Only `min` and `max`
/// are used: the wait follows from the number of tries made, which NATS counts too.)
const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(200),
    max: Duration::from_secs(10),
};

/// What follows try number `made` (counted from 1) of at most `max`, which ended with
/// `outcome`. The mesh broker counts its tries ([`Attempts`]); with NATS, the server counts
/// them, and a node that dies mid-try still used one.
pub(crate) fn decide(made: u32, max: u32, outcome: &Outcome, jitter: &mut Jitter) -> Next {
    let reason = match outcome {
        Outcome::Answered(status) => match verdict(*status) {
            Verdict::Done => return Next::Done,
            Verdict::Final => return Next::GiveUp(format!("the service answered {status}")),
            Verdict::Retryable => format!("the service answered {status}"),
        },
        Outcome::Failed(reason) => reason.clone(),
        Outcome::NoMember => "no member of the group was reachable".to_owned(),
    };
    if made >= max.max(1) {
        return Next::GiveUp(format!("{made} attempts spent; the last: {reason}"));
    }
    Next::Retry(jitter.spread(wait_after(made)))
}

/// The wait after try number `made` (from 1), before jitter: doubling from the least.
fn wait_after(made: u32) -> Duration {
    let doublings = made.saturating_sub(1).min(16);
    (BACKOFF.min * (1u32 << doublings)).min(BACKOFF.max)
}

/// The tries of one message for one group.
#[derive(Debug)]
pub(crate) struct Attempts {
    max: u8,
    made: u8,
    jitter: Jitter,
}

impl Attempts {
    /// At most `max` tries (at least one); `seed` spreads the waits.
    pub(crate) fn new(max: u8, seed: u64) -> Attempts {
        Attempts {
            max: max.max(1),
            made: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// The number the next try carries in `ferry-attempt`, from 1.
    pub(crate) fn next_number(&self) -> u8 {
        self.made.saturating_add(1)
    }

    /// A try ended with `outcome`.
    pub(crate) fn record(&mut self, outcome: &Outcome) -> Next {
        self.made = self.made.saturating_add(1);
        decide(
            u32::from(self.made),
            u32::from(self.max),
            outcome,
            &mut self.jitter,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_is_done_at_once() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(
                Attempts::new(5, 1).record(&Outcome::Answered(status)),
                Next::Done
            );
        }
    }

    #[test]
    fn a_final_answer_gives_up_at_once_whatever_attempts_are_left() {
        for status in [400, 401, 403, 404, 410, 422, 301, 100] {
            let next = Attempts::new(5, 1).record(&Outcome::Answered(status));
            assert!(matches!(next, Next::GiveUp(_)), "{status}: {next:?}");
        }
    }

    #[test]
    fn retryable_answers_and_failures_are_retried_until_the_attempts_are_spent() {
        for outcome in [
            Outcome::Answered(408),
            Outcome::Answered(429),
            Outcome::Answered(500),
            Outcome::Answered(503),
            Outcome::Failed("connection refused".into()),
            Outcome::NoMember,
        ] {
            let mut attempts = Attempts::new(3, 7);
            assert_eq!(attempts.next_number(), 1);
            assert!(matches!(attempts.record(&outcome), Next::Retry(_)));
            assert_eq!(attempts.next_number(), 2);
            assert!(matches!(attempts.record(&outcome), Next::Retry(_)));
            let last = attempts.record(&outcome);
            assert!(
                matches!(&last, Next::GiveUp(why) if why.starts_with("3 attempts spent")),
                "{outcome:?}: {last:?}"
            );
        }
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let next = Attempts::new(0, 1).record(&Outcome::Answered(503));
        assert!(matches!(next, Next::GiveUp(_)), "{next:?}");
    }

    #[test]
    fn waits_grow_from_100_ms_to_at_most_10_s() {
        for seed in 0..200 {
            let mut attempts = Attempts::new(u8::MAX, seed);
            let mut waits = Vec::new();
            for _ in 0..20 {
                match attempts.record(&Outcome::Answered(503)) {
                    Next::Retry(wait) => waits.push(wait),
                    other => panic!("{other:?}"),
                }
            }
            assert!(waits[0] >= Duration::from_millis(100), "{waits:?}");
            assert!(waits[0] <= Duration::from_millis(200), "{waits:?}");
            assert!(waits.iter().all(|w| *w <= Duration::from_secs(10)));
            assert!(waits[19] >= Duration::from_secs(5), "{waits:?}");
            // Each wait's range starts where the one before it ended: on average they grow.
            assert!(waits[3] > waits[0], "{waits:?}");
        }
    }
}
