//! How soon a silent peer is given up: a link whose peer sends nothing for a while that
//! follows its measured round-trip time is closed, so that a node killed without a word is
//! noticed in about a fifth of a second on a LAN, while a slow or lossy WAN link is given the
//! time its round trips need. Plain state, judged from what a caller observes (the count of
//! datagrams received, the smoothed RTT, the time): no I/O, tested on its own.
//!
//! QUIC's idle timeout stays as the backstop, but it is one value for every link, fixed at
//! the handshake: short enough for a LAN, it would close WAN links that merely lost a few
//! packets in a row.

use std::time::{Duration, Instant};

/// How often each side sends a keep-alive when it has nothing else to send: four fit in the
/// shortest silence allowed, so a LAN link survives three lost in a row.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_millis(50);

/// The shortest silence that closes a link, whatever its RTT.
const SHORTEST: Duration = Duration::from_millis(200);

/// How often a link's silence is looked at, as a share of the silence allowed.
const LOOKS: u32 = 8;

/// The silence allowed on a link with smoothed round-trip time `rtt`: three round trips and
/// four keep-alives, never less than [`SHORTEST`] nor more than `longest` (QUIC's own idle
/// timeout, which would close it anyway).
pub(crate) fn silence_allowed(rtt: Duration, longest: Duration) -> Duration {
    (rtt * 3 + KEEP_ALIVE * 4).clamp(SHORTEST, longest)
}

/// What a look at a link found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Heard from recently enough; look again after this long.
    Alive(Duration),
    /// Silent for this long, more than its RTT allows: close it.
    Silent(Duration),
}

/// The silence watch of one link.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// Datagrams received, as counted at the last look.
    received: u64,
    /// When the count last moved, or when the watch could last trust what it saw.
    heard: Instant,
    /// When the last look was.
    looked: Instant,
    longest: Duration,
}

impl Liveness {
    /// A watch starting at `now` with `received` datagrams counted so far; no link is closed
    /// for silence longer than `longest`'s worth of it.
    pub(crate) fn new(now: Instant, received: u64, longest: Duration) -> Liveness {
        Liveness {
            received,
            heard: now,
            looked: now,
            longest,
        }
    }

    /// Looks at the link at `now`, when `received` datagrams have been counted and its
    /// smoothed RTT is `rtt`.
    pub(crate) fn look(&mut self, now: Instant, received: u64, rtt: Duration) -> Verdict {
        let allowed = silence_allowed(rtt, self.longest);
        let every = allowed / LOOKS;
        // A look that comes far later than asked means this process was not running: the
        // peer's packets may be waiting unread in the socket. Silence that the watch could not
        // see is not the peer's.
        let starved = now.saturating_duration_since(self.looked) > every * 2;
        self.looked = now;
        if received != self.received || starved {
            self.received = received;
            self.heard = now;
            return Verdict::Alive(every);
        }
        let silent = now.saturating_duration_since(self.heard);
        match silent > allowed {
            true => Verdict::Silent(silent),
            false => Verdict::Alive(every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGEST: Duration = Duration::from_secs(1);
    const LAN: Duration = Duration::from_micros(300);
    const WAN: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Looks every time the watch asks, with nothing received after `start`, until it says
    /// silent; returns how long after `start` that was.
    fn silent_after(rtt: Duration) -> Duration {
        let start = Instant::now();
        let mut watch = Liveness::new(start, 10, LONGEST);
        let mut now = start;
        loop {
            match watch.look(now, 10, rtt) {
                Verdict::Alive(next) => now += next,
                Verdict::Silent(_) => return now - start,
            }
        }
    }

    #[test]
    fn a_silent_lan_peer_is_given_up_within_a_quarter_second() {
        let found = silent_after(LAN);
        assert!(found > ms(200) && found <= ms(230), "{found:?}");
    }

    #[test]
    fn a_wan_link_is_allowed_its_round_trips() {
        assert_eq!(silence_allowed(WAN, LONGEST), ms(500));
        let found = silent_after(WAN);
        assert!(found > ms(500) && found <= ms(570), "{found:?}");
        // Never longer than QUIC's own timeout would take.
        assert_eq!(silence_allowed(Duration::from_secs(2), LONGEST), LONGEST);
    }

    #[test]
    fn any_datagram_received_keeps_the_link() {
        let start = Instant::now();
        let mut watch = Liveness::new(start, 0, LONGEST);
        for i in 1..100u64 {
            // One datagram every 150 ms: never 200 ms of silence.
            let verdict = watch.look(start + ms(150 * i), i, LAN);
            assert!(matches!(verdict, Verdict::Alive(_)), "{i}: {verdict:?}");
        }
    }

    #[test]
    fn silence_the_watch_slept_through_is_not_held_against_the_peer() {
        let start = Instant::now();
        let mut watch = Liveness::new(start, 5, LONGEST);
        // The process was descheduled for 600 ms: its first look since comes late.
        assert!(matches!(
            watch.look(start + ms(600), 5, LAN),
            Verdict::Alive(_)
        ));
        // From then on the silence counts again.
        assert!(matches!(
            watch.look(start + ms(625), 5, LAN),
            Verdict::Alive(_)
        ));
        let mut now = start + ms(625);
        let verdict = loop {
            now += ms(25);
            match watch.look(now, 5, LAN) {
                Verdict::Alive(_) => continue,
                silent => break silent,
            }
        };
        assert_eq!(verdict, Verdict::Silent(now - (start + ms(600))));
    }
}
