//! The failure detector: turns the silence of a peer into a verdict.
//!
//! Pure: the caller passes `now_ms` (a monotonic clock in milliseconds) to
//! every call; the detector never sleeps or reads a clock, so it is tested
//! as "arrivals in, verdict out".
//!
//! How it adapts: like TCP's retransmission timer (Jacobson/Karels), it keeps
//! an exponentially weighted moving average of the interval between
//! heartbeats and of its mean deviation. A peer is *suspect* after
//! `mean + 4 × deviation` of silence and *dead* after `mean + 8 × deviation`,
//! each clamped between a floor and a ceiling from the configuration: the
//! floor keeps a steady network from making the timeout so tight that a
//! short pause (a GC, a VM stall, a SIGSTOP shorter than the floor) fails a
//! healthy node over; the ceiling bounds how long a jittery link can delay
//! the detection of a real failure.
//!
//! Invariants (tested, the last one by a property test):
//! * `floor <= dead timeout <= ceiling`, and suspect timeout <= dead timeout;
//! * the verdict depends only on the silence since the last heartbeat and
//!   the statistics: with no new heartbeat, a longer silence never yields a
//!   less severe verdict (Dead never goes back to Alive by waiting).

/// Weight of a new interval in the moving averages (1/8, as TCP uses for the mean).
const GAIN: f64 = 0.125;
/// Deviations above the mean interval before a peer is suspect.
const SUSPECT_DEVIATIONS: f64 = 4.0;
/// Deviations above the mean interval before a peer is dead.
const DEAD_DEVIATIONS: f64 = 8.0;

/// What the detector concludes about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Heartbeats arrive as expected.
    Alive,
    /// Later than usual; not yet failed.
    Suspect,
    /// Silent for longer than the dead timeout: failed (or partitioned away).
    Dead,
}

impl Verdict {
    /// The lower-case name INFO and metrics show.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Alive => "alive",
            Verdict::Suspect => "suspect",
            Verdict::Dead => "dead",
        }
    }
}

/// The detector's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The interval the peer sends heartbeats at: the prior for the mean.
    pub heartbeat_ms: u64,
    /// Least silence before *dead*, whatever the statistics say.
    pub dead_after_min_ms: u64,
    /// Most silence before *dead*, whatever the statistics say.
    pub dead_after_max_ms: u64,
}

impl Settings {
    /// Checks the relations the detector relies on; the text names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be at least 1".into());
        }
        if self.dead_after_min_ms < 2 * self.heartbeat_ms {
            return Err("detector_dead_min_ms must be at least twice heartbeat_ms".into());
        }
        if self.dead_after_max_ms < self.dead_after_min_ms {
            return Err("detector_dead_max_ms must be at least detector_dead_min_ms".into());
        }
        Ok(())
    }
}

/// One peer's heartbeat statistics; see the module docs.
#[derive(Debug, Clone)]
pub struct Detector {
    settings: Settings,
    /// When the last heartbeat arrived (or the detector started: a grace period).
    last_arrival_ms: u64,
    /// Heartbeats seen; the first one has no interval before it.
    arrivals: u64,
    /// Moving average of the interval between heartbeats.
    mean_interval_ms: f64,
    /// Moving average of the absolute difference between an interval and the mean.
    deviation_ms: f64,
}

impl Detector {
    /// A detector that starts counting silence at `now_ms`, as if a heartbeat had just
    /// arrived: a peer gets a full timeout to say hello before it is declared dead.
    pub fn new(settings: Settings, now_ms: u64) -> Detector {
        Detector {
            settings,
            last_arrival_ms: now_ms,
            arrivals: 0,
            mean_interval_ms: settings.heartbeat_ms as f64,
            deviation_ms: settings.heartbeat_ms as f64 / 2.0,
        }
    }

    /// Records a heartbeat (any message from the peer) arriving at `now_ms`.
    pub fn heartbeat(&mut self, now_ms: u64) {
        // A clock that went backwards (it should not: callers pass a monotonic clock) counts
        // as no time at all rather than as a huge interval.
        let interval = now_ms.saturating_sub(self.last_arrival_ms);
        if self.arrivals > 0 {
            // Clamp so that one long outage (a reconnect) does not make the detector deaf
            // for the next ones.
            let interval = interval.min(self.settings.dead_after_max_ms) as f64;
            let error = interval - self.mean_interval_ms;
            self.mean_interval_ms += GAIN * error;
            self.deviation_ms += GAIN * (error.abs() - self.deviation_ms);
        }
        self.arrivals += 1;
        self.last_arrival_ms = self.last_arrival_ms.max(now_ms);
    }

    /// The verdict at `now_ms`.
    pub fn verdict(&self, now_ms: u64) -> Verdict {
        let silence = self.silence_ms(now_ms);
        if silence > self.dead_after_ms() {
            Verdict::Dead
        } else if silence > self.suspect_after_ms() {
            Verdict::Suspect
        } else {
            Verdict::Alive
        }
    }

    /// Milliseconds since the last heartbeat.
    pub fn silence_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_arrival_ms)
    }

    /// The silence after which the peer is dead, as the statistics stand.
    pub fn dead_after_ms(&self) -> u64 {
        self.timeout(DEAD_DEVIATIONS)
    }

    /// The silence after which the peer is suspect, as the statistics stand.
    pub fn suspect_after_ms(&self) -> u64 {
        let floor = self.settings.dead_after_min_ms / 2;
        let raw = self.mean_interval_ms + SUSPECT_DEVIATIONS * self.deviation_ms;
        (raw.ceil() as u64).clamp(floor, self.dead_after_ms())
    }

    /// Heartbeats seen so far.
    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }

    fn timeout(&self, deviations: f64) -> u64 {
        let raw = self.mean_interval_ms + deviations * self.deviation_ms;
        (raw.ceil() as u64).clamp(self.settings.dead_after_min_ms, self.settings.dead_after_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SETTINGS: Settings = Settings { heartbeat_ms: 100, dead_after_min_ms: 500, dead_after_max_ms: 3_000 };

    /// A detector fed `count` heartbeats `interval_ms` apart from 0; returns it and the last arrival.
    fn steady(interval_ms: u64, count: u64) -> (Detector, u64) {
        let mut detector = Detector::new(SETTINGS, 0);
        for beat in 1..=count {
            detector.heartbeat(beat * interval_ms);
        }
        (detector, count * interval_ms)
    }

    #[test]
    fn steady_heartbeats_keep_the_peer_alive_and_silence_kills_it() {
        let (detector, last) = steady(100, 50);
        assert_eq!(detector.verdict(last + 100), Verdict::Alive);
        assert_eq!(detector.verdict(last + detector.suspect_after_ms() + 1), Verdict::Suspect);
        assert_eq!(detector.verdict(last + detector.dead_after_ms() + 1), Verdict::Dead);
    }

    #[test]
    fn a_steady_link_uses_the_floor() {
        let (detector, _) = steady(100, 200);
        assert_eq!(detector.dead_after_ms(), SETTINGS.dead_after_min_ms);
    }

    #[test]
    fn a_pause_shorter_than_the_floor_is_never_dead() {
        let (detector, last) = steady(100, 200);
        assert_ne!(detector.verdict(last + SETTINGS.dead_after_min_ms), Verdict::Dead);
    }

    #[test]
    fn jitter_widens_the_timeout_up_to_the_ceiling() {
        let mut detector = Detector::new(SETTINGS, 0);
        let mut now = 0;
        for beat in 0..200 {
            now += if beat % 2 == 0 { 20 } else { 400 };
            detector.heartbeat(now);
        }
        let jittery = detector.dead_after_ms();
        assert!(jittery > SETTINGS.dead_after_min_ms, "jitter must widen the timeout: {jittery}");
        assert!(jittery <= SETTINGS.dead_after_max_ms);
        assert_eq!(detector.verdict(now + 450), Verdict::Alive, "a usual gap on this link is not a failure");
        let (mut wild, mut at) = (Detector::new(SETTINGS, 0), 0);
        for beat in 0..200 {
            at += if beat % 2 == 0 { 1 } else { 10_000 };
            wild.heartbeat(at);
        }
        assert_eq!(wild.dead_after_ms(), SETTINGS.dead_after_max_ms);
    }

    #[test]
    fn a_new_detector_grants_a_grace_period_then_declares_dead() {
        let detector = Detector::new(SETTINGS, 1_000);
        assert_eq!(detector.verdict(1_000), Verdict::Alive);
        assert_eq!(detector.verdict(1_000 + SETTINGS.dead_after_max_ms + 1), Verdict::Dead);
    }

    #[test]
    fn a_heartbeat_revives_a_dead_peer() {
        let (mut detector, last) = steady(100, 20);
        let later = last + 10_000;
        assert_eq!(detector.verdict(later), Verdict::Dead);
        detector.heartbeat(later);
        assert_eq!(detector.verdict(later + 1), Verdict::Alive);
    }

    #[test]
    fn settings_check_names_the_field() {
        let bad = Settings { dead_after_min_ms: 150, ..SETTINGS };
        assert!(bad.check().unwrap_err().contains("detector_dead_min_ms"));
        let bad = Settings { dead_after_max_ms: 100, ..SETTINGS };
        assert!(bad.check().unwrap_err().contains("detector_dead_max_ms"));
        assert!(SETTINGS.check().is_ok());
    }

    proptest! {
        /// With no new heartbeat, more silence never gives a less severe verdict, and the
        /// timeouts stay within the floor and the ceiling.
        #[test]
        fn silence_is_monotone(
            gaps in proptest::collection::vec(0u64..5_000, 0..60),
            first in 0u64..20_000,
            extra in 0u64..20_000,
        ) {
            let mut detector = Detector::new(SETTINGS, 0);
            let mut now = 0;
            for gap in gaps {
                now += gap;
                detector.heartbeat(now);
            }
            let dead = detector.dead_after_ms();
            prop_assert!((SETTINGS.dead_after_min_ms..=SETTINGS.dead_after_max_ms).contains(&dead));
            prop_assert!(detector.suspect_after_ms() <= dead);
            let earlier = detector.verdict(now + first);
            let later = detector.verdict(now + first + extra);
            prop_assert!(later >= earlier, "{earlier:?} at +{first} then {later:?} at +{}", first + extra);
            if earlier == Verdict::Dead {
                prop_assert_eq!(later, Verdict::Dead);
            }
        }
    }
}
