//! Which incoming handshakes a node takes on, so that a flood of them cannot exhaust it.
//!
//! Plain state fed with a clock, like the route table. A handshake costs four X25519 operations,
//! and quinn runs a new connection's first step on the endpoint's own task, so a flood of them
//! would starve the links already up. Three limits keep that cost bounded:
//!
//! - above [`RETRY_ABOVE`] new handshakes a second, a client whose address QUIC has not
//!   validated gets a Retry: a stateless cookie it must echo from the address it claims, which
//!   costs the node no connection state and defeats spoofed floods (WireGuard's cookie reply
//!   does the same);
//! - one source address gets at most [`PER_SOURCE`] handshakes a second, and all sources
//!   together at most [`PER_SECOND`]: a flood from real addresses passes validation, so beyond
//!   these it is dropped unanswered;
//! - beyond [`MAX_PENDING`] handshakes in progress, new ones are dropped.
//!
//! A node's own peers handshake once per link, far below any of these.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// New handshakes per second above which unvalidated clients must prove their address.
pub(crate) const RETRY_ABOVE: usize = 64;
/// Handshakes per second from one address.
pub(crate) const PER_SOURCE: u32 = 16;
/// Handshakes per second from all addresses.
pub(crate) const PER_SECOND: usize = 256;
/// Addresses remembered for [`PER_SOURCE`]; beyond, idle ones are forgotten.
const SOURCES: usize = 4096;
/// Handshakes in progress beyond which new ones are dropped.
pub(crate) const MAX_PENDING: usize = 1024;
const WINDOW: Duration = Duration::from_secs(1);

/// What to do with one incoming handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Accept = 0,
    Retry = 1,
    Drop = 2,
}

impl Admission {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Admission::Accept => "accept",
            Admission::Retry => "retry",
            Admission::Drop => "drop",
        }
    }
}

/// Recent handshakes and those still in progress.
#[derive(Debug, Default)]
pub(crate) struct Admissions {
    recent: VecDeque<Instant>,
    /// Per source: when its current one-second window began, and handshakes in it.
    sources: HashMap<IpAddr, (Instant, u32)>,
    pending: usize,
}

impl Admissions {
    /// Decides for a handshake from `source` arriving at `now`; `validated` says whether QUIC
    /// has already validated the client's address (it echoed a Retry token).
    pub(crate) fn admit(&mut self, now: Instant, source: IpAddr, validated: bool) -> Admission {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.recent.pop_front();
        }
        if self.pending >= MAX_PENDING || self.recent.len() >= PER_SECOND {
            return Admission::Drop;
        }
        if !validated && self.recent.len() >= RETRY_ABOVE {
            return Admission::Retry;
        }
        if self.sources.len() >= SOURCES {
            self.sources
                .retain(|_, (start, _)| now.duration_since(*start) <= WINDOW);
        }
        let (start, count) = self.sources.entry(source).or_insert((now, 0));
        if now.duration_since(*start) > WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= PER_SOURCE {
            return Admission::Drop;
        }
        *count += 1;
        self.recent.push_back(now);
        self.pending += 1;
        Admission::Accept
    }

    /// An accepted handshake finished, either way.
    pub(crate) fn done(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct address for each `i`.
    fn source(i: usize) -> IpAddr {
        IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
    }

    #[test]
    fn a_calm_node_accepts_everyone() {
        let mut a = Admissions::default();
        let t0 = Instant::now();
        for i in 0..RETRY_ABOVE {
            let at = t0 + Duration::from_millis(i as u64);
            assert_eq!(a.admit(at, source(i), false), Admission::Accept);
            a.done();
        }
    }

    #[test]
    fn a_burst_makes_unvalidated_clients_prove_their_address() {
        let mut a = Admissions::default();
        let t0 = Instant::now();
        for i in 0..RETRY_ABOVE {
            a.admit(t0, source(i), false);
            a.done();
        }
        assert_eq!(a.admit(t0, source(1000), false), Admission::Retry);
        assert_eq!(
            a.admit(t0, source(1000), true),
            Admission::Accept,
            "a client that echoed its token is let in"
        );
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(
            a.admit(later, source(1001), false),
            Admission::Accept,
            "the burst passed"
        );
    }

    #[test]
    fn one_address_gets_a_bounded_share_even_when_validated() {
        let mut a = Admissions::default();
        let t0 = Instant::now();
        let flooder = source(7);
        let accepted = (0..100)
            .filter(|_| a.admit(t0, flooder, true) == Admission::Accept)
            .count();
        assert_eq!(accepted, PER_SOURCE as usize);
        assert_eq!(
            a.admit(t0, source(8), true),
            Admission::Accept,
            "others still get in"
        );
        let next_second = t0 + Duration::from_millis(1100);
        assert_eq!(a.admit(next_second, flooder, true), Admission::Accept);
    }

    #[test]
    fn all_addresses_together_are_capped_per_second() {
        let mut a = Admissions::default();
        let t0 = Instant::now();
        let accepted = (0..1000)
            .filter(|i| {
                let admitted = a.admit(t0, source(*i), true) == Admission::Accept;
                a.done();
                admitted
            })
            .count();
        assert_eq!(accepted, PER_SECOND);
    }

    #[test]
    fn too_many_handshakes_in_progress_are_dropped_even_if_validated() {
        let mut a = Admissions::default();
        let t0 = Instant::now();
        for i in 0..MAX_PENDING {
            // Spread over time so that only the pending count matters.
            let at = t0 + Duration::from_secs(2 * i as u64);
            assert_eq!(a.admit(at, source(i), true), Admission::Accept);
        }
        let later = t0 + Duration::from_secs(4 * MAX_PENDING as u64);
        assert_eq!(a.admit(later, source(0), true), Admission::Drop);
        a.done();
        assert_eq!(a.admit(later, source(0), true), Admission::Accept);
    }
}
