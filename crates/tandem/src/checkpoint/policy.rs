//! When to take a checkpoint, and which level: a pure function of the
//! configuration, what happened since the last checkpoints, and `now`.
//!
//! Like Redis's `save <seconds> <changes>`, each level fires when at least
//! `seconds` passed *and* at least `changes` log records were written since
//! the last checkpoint of that level (any level, for incrementals). A full
//! checkpoint is due also when the incremental chain reached its length
//! limit (restores stay fast) or when there is no base for an incremental.
//! After a failure, automatic checkpoints wait `retry_after_failure_ms`.

/// The configured schedule. A level with `interval_ms == 0` never fires on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Least time between full checkpoints.
    pub full_interval_ms: u64,
    /// Least log records since the last full checkpoint for one to be due.
    pub full_changes_min: u64,
    /// Least time between checkpoints of any level for an incremental.
    pub incremental_interval_ms: u64,
    /// Least log records since the last checkpoint for an incremental.
    pub incremental_changes_min: u64,
    /// Most incrementals on top of one full checkpoint.
    pub chain_incrementals_max: u32,
    /// Pause after a failed checkpoint before trying again.
    pub retry_after_failure_ms: u64,
}

/// What the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// Now, Unix milliseconds.
    pub now_ms: u64,
    /// The log's last index.
    pub last_index: u64,
    /// When the newest full checkpoint was taken (or the node started, if none), Unix ms.
    pub last_full_ms: u64,
    /// The log index of the newest full checkpoint (0 if none).
    pub last_full_index: u64,
    /// When the newest checkpoint of any level was taken (or the node started), Unix ms.
    pub last_any_ms: u64,
    /// The log index of the newest checkpoint of any level (0 if none).
    pub last_any_index: u64,
    /// Whether an incremental has a base (a checkpoint this process loaded or wrote).
    pub has_base: bool,
    /// Incrementals written on top of the newest full checkpoint.
    pub chain_incrementals: u32,
    /// A checkpoint is being written now.
    pub in_progress: bool,
    /// When the last checkpoint failed, Unix ms, if the last attempt failed.
    pub failed_at_ms: Option<u64>,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Wait,
    /// Take a full checkpoint.
    Full,
    /// Take an incremental checkpoint.
    Incremental,
}

/// Decides whether a checkpoint is due, and which.
pub fn decide(schedule: &Schedule, observed: &Observed) -> Decision {
    if observed.in_progress {
        return Decision::Wait;
    }
    if let Some(failed_at_ms) = observed.failed_at_ms {
        if observed.now_ms.saturating_sub(failed_at_ms) < schedule.retry_after_failure_ms {
            return Decision::Wait;
        }
    }
    let since_full = observed.last_index.saturating_sub(observed.last_full_index);
    let since_any = observed.last_index.saturating_sub(observed.last_any_index);
    let full_due = schedule.full_interval_ms > 0
        && since_full >= schedule.full_changes_min.max(1)
        && observed.now_ms.saturating_sub(observed.last_full_ms) >= schedule.full_interval_ms;
    let incremental_due = schedule.incremental_interval_ms > 0
        && since_any >= schedule.incremental_changes_min.max(1)
        && observed.now_ms.saturating_sub(observed.last_any_ms) >= schedule.incremental_interval_ms;
    if full_due {
        Decision::Full
    } else if incremental_due {
        if !observed.has_base || observed.chain_incrementals >= schedule.chain_incrementals_max {
            Decision::Full
        } else {
            Decision::Incremental
        }
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Schedule = Schedule {
        full_interval_ms: 3_600_000,
        full_changes_min: 1,
        incremental_interval_ms: 60_000,
        incremental_changes_min: 100,
        chain_incrementals_max: 3,
        retry_after_failure_ms: 5_000,
    };

    fn after_full_at(now_ms: u64, last_index: u64) -> Observed {
        Observed {
            now_ms,
            last_index,
            last_full_ms: 0,
            last_full_index: 0,
            last_any_ms: 0,
            last_any_index: 0,
            has_base: true,
            ..Observed::default()
        }
    }

    #[test]
    fn nothing_is_due_without_enough_time_or_changes() {
        assert_eq!(decide(&SCHEDULE, &after_full_at(59_999, 1_000)), Decision::Wait);
        assert_eq!(decide(&SCHEDULE, &after_full_at(60_000, 99)), Decision::Wait);
        assert_eq!(decide(&SCHEDULE, &after_full_at(3_600_000, 0)), Decision::Wait, "no change, no checkpoint");
    }

    #[test]
    fn an_incremental_fires_on_time_and_changes() {
        assert_eq!(decide(&SCHEDULE, &after_full_at(60_000, 100)), Decision::Incremental);
    }

    #[test]
    fn a_full_fires_on_its_own_interval_and_wins_over_an_incremental() {
        assert_eq!(decide(&SCHEDULE, &after_full_at(3_600_000, 1)), Decision::Full);
        assert_eq!(decide(&SCHEDULE, &after_full_at(3_600_000, 1_000)), Decision::Full);
    }

    #[test]
    fn a_long_chain_or_a_missing_base_turns_an_incremental_into_a_full() {
        let long_chain = Observed { chain_incrementals: 3, ..after_full_at(60_000, 100) };
        assert_eq!(decide(&SCHEDULE, &long_chain), Decision::Full);
        let no_base = Observed { has_base: false, ..after_full_at(60_000, 100) };
        assert_eq!(decide(&SCHEDULE, &no_base), Decision::Full);
    }

    #[test]
    fn nothing_starts_while_one_runs_or_right_after_a_failure() {
        let running = Observed { in_progress: true, ..after_full_at(3_600_000, 1_000) };
        assert_eq!(decide(&SCHEDULE, &running), Decision::Wait);
        let failed = Observed { failed_at_ms: Some(3_596_000), ..after_full_at(3_600_000, 1_000) };
        assert_eq!(decide(&SCHEDULE, &failed), Decision::Wait);
        let later = Observed { failed_at_ms: Some(3_595_000), ..after_full_at(3_600_000, 1_000) };
        assert_eq!(decide(&SCHEDULE, &later), Decision::Full);
    }

    #[test]
    fn a_disabled_level_never_fires() {
        let schedule = Schedule { full_interval_ms: 0, incremental_interval_ms: 0, ..SCHEDULE };
        assert_eq!(decide(&schedule, &after_full_at(u64::MAX / 2, u64::MAX / 2)), Decision::Wait);
    }
}
