//! Replication lag measured against the primary's own history.
//!
//! **Definition.** A replica's time lag is how long ago the primary was last at a position the
//! replica has replayed: if the replica has replayed the primary's latest known position its
//! lag is zero, otherwise it is `now - t`, where `t` is when the primary moved past the
//! replica's replay position. Byte lag is the primary's latest position minus the replica's
//! replay position. (A replica waiting for WAL counts as having replayed all it received:
//! the primary's written WAL may end inside a record, which no replica can replay yet; see
//! `PROBE_SQL` in [`super::health`].)
//!
//! Why not `now() - pg_last_xact_replay_timestamp()`: that is the age of the last *commit*
//! replayed, so an idle primary (or one running a long COPY with no commit) looks like lag,
//! and a replica cut from the primary (WAL receiver stopped: replay equals receive) looks
//! fresh forever. Comparing with the primary's position has neither problem: an idle primary
//! does not move, so a replica that has its position has zero lag however old its last commit;
//! a cut replica stops while the primary moves on, and its lag grows with the clock.
//!
//! **How `t` is found.** The health checker records the primary's position every round
//! ([`LagHistory::record`]): a bounded list of positions, each with the first and last time the
//! primary was seen there. For a replay position `R` between two recorded positions `a <= R <
//! b`, the primary passed `R` after it was last seen at `a` and before it was first seen at
//! `b`; `t` is interpolated linearly by position in that window (exact for a steady write rate,
//! wrong by at most the window, one health interval, otherwise). A position below everything
//! recorded gives `t` = the first time the oldest entry was seen, a lower bound on the lag
//! ("at least this much"); entries are kept for at least [`retention`] so that this bound can
//! exceed `max_lag`. A replica on an older timeline than the primary's (following a demoted
//! primary, or not switched yet) has none of the new timeline's WAL: it counts as below
//! everything recorded.
//!
//! **When the primary is not seen** (down, slow, or not known yet), the history keeps its last
//! entry: replicas are measured against the last position the primary was seen at. One that
//! has replayed it has lag zero (no write went through the proxy since: writes go to that
//! primary); one that has not keeps ageing. Writes the primary takes from elsewhere while the
//! proxy cannot reach it are not seen. With no position recorded at all (the primary has not
//! answered since the proxy started) lag is not measured and read-set membership stays as it
//! was (replicas start in the read set).
//!
//! The history starts over when another backend becomes the primary, when the primary's
//! timeline changes, or when its position goes backwards (a restored server): positions of
//! different histories are not comparable. Replicas behind the new primary then show a lag
//! that grows from zero (for a replica on the old timeline that is exact: it lacks every
//! write since the promotion). The same holds after the proxy starts: a replica far behind
//! the primary's first recorded position counts as behind by the time since recording began,
//! so it stays in the read set for up to `max_lag` (a `max_lag_bytes` limit catches it at the
//! first round).

use crate::config::BackendAddr;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most positions kept. Beyond it, every other entry of the older half is dropped: an estimate
/// only gets coarser (and larger) that way, never smaller.
const CAP: usize = 256;

/// How long positions are kept: long enough that a replica behind all of them has a lag above
/// `max_lag` (twice it), and at least 10 s.
pub fn retention(max_lag: Duration) -> Duration {
    (max_lag * 2).max(Duration::from_secs(10))
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    lsn: u64,
    /// First and last time the primary was seen at `lsn`.
    first: Instant,
    last: Instant,
}

/// The primary's recent positions (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct LagHistory {
    /// Whose positions these are: address and timeline.
    primary: Option<(BackendAddr, u64)>,
    samples: VecDeque<Sample>,
}

/// A replica's lag as measured by [`LagHistory::lag`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub time: Duration,
    pub bytes: u64,
}

impl LagHistory {
    /// The primary (`addr`, `timeline`) was at `lsn` at `at`. Positions older than `keep` are
    /// dropped (but the newest of those stays, as the lower bound for replicas behind it).
    pub fn record(
        &mut self,
        addr: BackendAddr,
        timeline: u64,
        lsn: u64,
        at: Instant,
        keep: Duration,
    ) {
        let who = Some((addr, timeline));
        if self.primary != who || self.samples.back().is_some_and(|s| lsn < s.lsn) {
            self.primary = who;
            self.samples.clear();
        }
        match self.samples.back_mut() {
            Some(s) if s.lsn == lsn => s.last = s.last.max(at),
            _ => self.samples.push_back(Sample {
                lsn,
                first: at,
                last: at,
            }),
        }
        while self.samples.len() > 1 && at.saturating_duration_since(self.samples[1].first) >= keep
        {
            self.samples.pop_front();
        }
        if self.samples.len() > CAP {
            let half = self.samples.len() / 2;
            let mut i = 0;
            self.samples.retain(|_| {
                let keep = i == 0 || i >= half || i % 2 == 0;
                i += 1;
                keep
            });
        }
    }

    /// The primary's latest recorded position.
    pub fn latest(&self) -> Option<u64> {
        self.samples.back().map(|s| s.lsn)
    }

    /// Lag at `now` of a replica that has replayed up to `replay`; `older_timeline` when it is
    /// on an older timeline than the primary. `None` when no primary position is recorded.
    pub fn lag(&self, replay: u64, older_timeline: bool, now: Instant) -> Option<Lag> {
        let latest = self.samples.back()?;
        let bytes = latest.lsn.saturating_sub(replay);
        if !older_timeline && replay >= latest.lsn {
            return Some(Lag {
                time: Duration::ZERO,
                bytes: 0,
            });
        }
        // The last recorded position the replica has, if any (the next one it lacks exists:
        // the latest is beyond `replay`).
        let at_or_below = if older_timeline {
            None
        } else {
            self.samples
                .partition_point(|s| s.lsn <= replay)
                .checked_sub(1)
        };
        let passed = match at_or_below {
            None => self.samples[0].first,
            Some(k) => {
                let (a, b) = (self.samples[k], self.samples[k + 1]);
                let window = b.first.saturating_duration_since(a.last);
                let share = (replay - a.lsn) as f64 / (b.lsn - a.lsn) as f64;
                a.last + window.mul_f64(share.clamp(0.0, 1.0))
            }
        };
        Some(Lag {
            time: now.saturating_duration_since(passed),
            bytes,
        })
    }

    /// How many positions are kept (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Duration = Duration::from_secs(20);

    fn addr() -> BackendAddr {
        "127.0.0.1:5432".parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_idle_primary_is_not_lag() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        // The primary stays at 1000 for a minute (no commit, no WAL).
        for s in 0..60 {
            h.record(addr(), 1, 1000, t0 + secs(s), KEEP);
        }
        let lag = h.lag(1000, false, t0 + secs(60)).unwrap();
        assert_eq!(
            lag,
            Lag {
                time: Duration::ZERO,
                bytes: 0
            }
        );
    }

    #[test]
    fn a_cut_replica_ages_with_the_clock() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        // The primary writes 100 bytes a second; the replica stopped at 1000 (t0 + 10 s).
        for s in 0..=30 {
            h.record(addr(), 1, s * 100, t0 + secs(s), KEEP);
            let lag = h.lag(1000.min(s * 100), false, t0 + secs(s)).unwrap();
            let expect = s.saturating_sub(10);
            assert_eq!(lag.time, secs(expect), "at {s} s");
            assert_eq!(lag.bytes, (s * 100).saturating_sub(1000));
        }
    }

    #[test]
    fn the_passing_time_is_interpolated_between_samples() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        h.record(addr(), 1, 1000, t0, KEEP);
        h.record(addr(), 1, 2000, t0 + secs(1), KEEP);
        h.record(addr(), 1, 2000, t0 + secs(5), KEEP);
        h.record(addr(), 1, 3000, t0 + secs(6), KEEP);
        let at = t0 + secs(6);
        // Between 1000 (last seen t0) and 2000 (first seen t0+1): a quarter of the way.
        assert_eq!(
            h.lag(1250, false, at).unwrap().time,
            Duration::from_millis(5750)
        );
        // At 2000: the primary was last there at t0+5.
        assert_eq!(h.lag(2000, false, at).unwrap().time, secs(1));
        assert_eq!(h.lag(3000, false, at).unwrap().time, Duration::ZERO);
        // Below everything: at least since the oldest entry was first seen.
        assert_eq!(h.lag(10, false, at).unwrap().time, secs(6));
        // On an older timeline: the same, whatever its position.
        assert_eq!(h.lag(5000, true, at).unwrap().time, secs(6));
    }

    #[test]
    fn old_positions_are_summarised_by_a_lower_bound() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        for s in 0..1000u64 {
            h.record(addr(), 1, 10 + s, t0 + Duration::from_millis(100 * s), KEEP);
        }
        let now = t0 + Duration::from_millis(100 * 999);
        // Positions written more than `keep` ago are summarised by one just older than it.
        let lag = h.lag(0, false, now).unwrap();
        assert!(lag.time >= KEEP && lag.time < KEEP + secs(1), "{lag:?}");
        assert!(h.len() <= 202, "{}", h.len());
    }

    #[test]
    fn a_thinned_history_never_underestimates() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        for s in 0..1000u64 {
            let at = t0 + Duration::from_millis(100 * s);
            h.record(addr(), 1, 10 + s, at, secs(1000));
            assert!(h.len() <= CAP);
        }
        let now = t0 + Duration::from_millis(100 * 999);
        // The primary was at p (p = 10 + s) at s x 100 ms and past it 100 ms later: a replica
        // at p lags by at least (999 - s - 1) x 100 ms.
        for back in [1u64, 10, 50, 150, 500, 900] {
            let p = 10 + 999 - back;
            let lag = h.lag(p, false, now).unwrap().time;
            let truth = Duration::from_millis(100 * (back - 1));
            assert!(lag >= truth, "{back}: {lag:?} < {truth:?}");
            assert!(lag <= truth + secs(60), "{back}: {lag:?}");
        }
        assert_eq!(
            h.lag(0, false, now).unwrap().time,
            Duration::from_millis(99_900)
        );
    }

    #[test]
    fn another_primary_or_a_position_going_back_starts_over() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        h.record(addr(), 1, 1000, t0, KEEP);
        h.record(addr(), 1, 2000, t0 + secs(1), KEEP);
        h.record(addr(), 2, 2100, t0 + secs(2), KEEP);
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.lag(1000, false, t0 + secs(2)).unwrap().time,
            Duration::ZERO
        );
        h.record(addr(), 2, 500, t0 + secs(3), KEEP);
        assert_eq!((h.len(), h.latest()), (1, Some(500)));
        assert!(LagHistory::default().lag(0, false, t0).is_none());
    }
}
