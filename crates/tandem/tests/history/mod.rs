//! A history recorder and a linearizability checker for registers (one per
//! key), in the spirit of Jepsen's Knossos: clients record each operation's
//! invocation and completion; a completion is `Ok` (with the value read, for
//! a read), `Failed` (definitely not applied: an error reply) or `Unknown`
//! (timed out or the connection broke: it may or may not have taken effect —
//! never assumed absent). The checker searches for a legal order (Wing & Gong
//! with memoisation, as in Lowe's refinement); an acknowledged write that a
//! later read does not reflect makes the history non-linearizable.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `SET key value`.
    Write { key: String, value: String },
    /// `GET key`.
    Read { key: String },
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged; for a read, the value it returned (`None`: nil).
    Ok(Option<String>),
    /// An error reply: definitely not applied.
    Failed,
    /// No reply: may or may not have been applied.
    Unknown,
}

#[derive(Debug, Clone)]
struct Entry {
    operation: Operation,
    invoked: u64,
    completed: Option<(u64, Outcome)>,
}

/// A concurrent history, recorded by many clients.
#[derive(Default)]
pub struct History {
    clock: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

impl History {
    /// Records an invocation; returns its id for `complete`.
    pub fn invoke(&self, operation: Operation) -> usize {
        let invoked = self.clock.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.entries.lock().unwrap();
        entries.push(Entry { operation, invoked, completed: None });
        entries.len() - 1
    }

    /// Records how operation `id` ended.
    pub fn complete(&self, id: usize, outcome: Outcome) {
        let at = self.clock.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().unwrap()[id].completed = Some((at, outcome));
    }

    /// Number of operations recorded, and how many were acknowledged writes.
    pub fn counts(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap();
        let acknowledged = entries
            .iter()
            .filter(|entry| {
                matches!(entry.operation, Operation::Write { .. })
                    && matches!(entry.completed, Some((_, Outcome::Ok(_))))
            })
            .count();
        (entries.len(), acknowledged)
    }

    /// Whether some write of `value` to `key` was recorded that did not fail (acknowledged,
    /// unknown or still pending): the only values a read of `key` may return besides nil.
    pub fn may_have_written(&self, key: &str, value: &str) -> bool {
        self.entries.lock().unwrap().iter().any(|entry| {
            matches!(&entry.operation, Operation::Write { key: k, value: v } if k == key && v == value)
                && !matches!(entry.completed, Some((_, Outcome::Failed)))
        })
    }

    /// Checks every key's history; `Err` names the first key that has no legal order.
    pub fn check(&self) -> Result<(), String> {
        let entries = self.entries.lock().unwrap().clone();
        let mut by_key: BTreeMap<String, Vec<Op>> = BTreeMap::new();
        for entry in entries {
            let (key, op) = match to_op(entry) {
                Some(pair) => pair,
                None => continue,
            };
            by_key.entry(key).or_default().push(op);
        }
        for (key, ops) in by_key {
            if !linearizable(&ops) {
                return Err(format!("the history of key {key:?} is not linearizable: {ops:#?}"));
            }
        }
        Ok(())
    }
}

/// One operation as the checker sees it; `completed` is `u64::MAX` when unknown.
#[derive(Debug, Clone)]
struct Op {
    invoked: u64,
    completed: u64,
    kind: Kind,
    /// Must take effect (acknowledged); unknown writes may never happen.
    required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Write(String),
    Read(Option<String>),
}

fn to_op(entry: Entry) -> Option<(String, Op)> {
    let (completed, outcome) = entry.completed.unwrap_or((u64::MAX, Outcome::Unknown));
    match (entry.operation, outcome) {
        (_, Outcome::Failed) => None,
        (Operation::Read { .. }, Outcome::Unknown) => None,
        (Operation::Read { key }, Outcome::Ok(value)) => {
            Some((key, Op { invoked: entry.invoked, completed, kind: Kind::Read(value), required: true }))
        }
        (Operation::Write { key, value }, Outcome::Ok(_)) => {
            Some((key, Op { invoked: entry.invoked, completed, kind: Kind::Write(value), required: true }))
        }
        (Operation::Write { key, value }, Outcome::Unknown) => {
            Some((key, Op { invoked: entry.invoked, completed: u64::MAX, kind: Kind::Write(value), required: false }))
        }
    }
}

/// Whether some order of `ops` (each between its invocation and completion,
/// unknown writes optional) is a legal sequential register history starting
/// from nil.
fn linearizable(ops: &[Op]) -> bool {
    let words = ops.len().div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(Vec<u64>, Option<String>)> = vec![(vec![0; words], None)];
    while let Some((done, value)) = stack.pop() {
        let is_done = |index: usize| done[index / 64] & (1 << (index % 64)) != 0;
        if (0..ops.len()).all(|index| is_done(index) || !ops[index].required) {
            return true;
        }
        // An operation can go next only if it was invoked before every
        // pending required operation completed.
        let horizon = (0..ops.len())
            .filter(|&index| !is_done(index) && ops[index].required)
            .map(|index| ops[index].completed)
            .min();
        let Some(horizon) = horizon else { return true };
        for (index, op) in ops.iter().enumerate() {
            if is_done(index) || op.invoked > horizon {
                continue;
            }
            let next_value = match &op.kind {
                Kind::Write(written) => Some(written.clone()),
                Kind::Read(read) if *read == value => value.clone(),
                Kind::Read(_) => continue,
            };
            let mut next_done = done.clone();
            next_done[index / 64] |= 1 << (index % 64);
            let state = (next_done, next_value);
            if seen.insert(state.clone()) {
                stack.push(state);
            }
        }
    }
    false
}

/// Checker self-tests, run by the test binaries that include this module.
pub fn self_test() {
    let write = |history: &History, key: &str, value: &str, outcome: Outcome| {
        let id = history.invoke(Operation::Write { key: key.into(), value: value.into() });
        history.complete(id, outcome);
    };
    let read = |history: &History, key: &str, seen: Option<&str>| {
        let id = history.invoke(Operation::Read { key: key.into() });
        history.complete(id, Outcome::Ok(seen.map(String::from)));
    };
    // Sequential and correct.
    let history = History::default();
    write(&history, "k", "1", Outcome::Ok(None));
    read(&history, "k", Some("1"));
    assert!(history.check().is_ok());
    // An acknowledged write followed by a read of the old value: lost write.
    let history = History::default();
    write(&history, "k", "1", Outcome::Ok(None));
    write(&history, "k", "2", Outcome::Ok(None));
    read(&history, "k", Some("1"));
    assert!(history.check().is_err(), "a lost acknowledged write must be caught");
    // An unknown write may have happened…
    let history = History::default();
    write(&history, "k", "1", Outcome::Ok(None));
    write(&history, "k", "2", Outcome::Unknown);
    read(&history, "k", Some("2"));
    assert!(history.check().is_ok());
    // …or not.
    let history = History::default();
    write(&history, "k", "1", Outcome::Ok(None));
    write(&history, "k", "2", Outcome::Unknown);
    read(&history, "k", Some("1"));
    assert!(history.check().is_ok());
    // A failed write never happened.
    let history = History::default();
    write(&history, "k", "1", Outcome::Failed);
    read(&history, "k", Some("1"));
    assert!(history.check().is_err(), "a failed write must not be visible");
    // Concurrent writes may land in either order.
    let history = History::default();
    let first = history.invoke(Operation::Write { key: "k".into(), value: "a".into() });
    let second = history.invoke(Operation::Write { key: "k".into(), value: "b".into() });
    history.complete(first, Outcome::Ok(None));
    history.complete(second, Outcome::Ok(None));
    read(&history, "k", Some("a"));
    assert!(history.check().is_ok());
    // A read cannot see a value from the future.
    let history = History::default();
    read(&history, "k", Some("x"));
    write(&history, "k", "x", Outcome::Ok(None));
    assert!(history.check().is_err(), "a read before the write started cannot see it");
}
