//! The sorted set value: members with scores, ordered by score then member.
//!
//! Two views of the same members, kept in step by every change:
//! * `scores`, a hash map, answers a member's score (`ZSCORE`, `ZADD`'s
//!   comparison) in constant time;
//! * `order`, an order-statistic B-tree (`indexset`) of `(score, member)`,
//!   in Redis's order (ascending score, ties by member bytes): it finds a
//!   member's position (`ZRANK`) and the positions where a score or member
//!   range starts and ends in O(log n), and reads from any position on.
//!
//! So every query is positions first, then a walk over what it returns:
//! `ZCOUNT` and `ZLEXCOUNT` walk nothing, `LIMIT` offsets skip for free.
//! Scores are never NaN (the commands refuse it before an effect exists),
//! and `-0` is stored as `0` (see [`stored_score`]).

use std::cmp::Ordering;
use std::ops::Range;

use indexset::BTreeSet;

use super::value::{Hasher, Key};

/// The score as a sorted set keeps it: `-0` becomes `0`, as in Redis's
/// compact encoding (the one small sets use), so a score never reads `-0`.
pub fn stored_score(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// A score that orders totally: never NaN, `-0 == 0`.
#[derive(Debug, Clone, Copy)]
pub struct Score(f64);

impl Score {
    /// The score `value`; panics on NaN, which no command lets through.
    pub fn new(value: f64) -> Score {
        assert!(!value.is_nan(), "a sorted set score is never NaN");
        Score(value)
    }

    /// The score as given.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Score) -> bool {
        self.0 == other.0
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Score) -> Ordering {
        self.0.partial_cmp(&other.0).expect("scores are never NaN")
    }
}

/// One member in score order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    score: Score,
    member: Key,
}

/// A sorted set: unique members, each with a score.
#[derive(Debug, Clone, Default)]
pub struct SortedSet {
    scores: hashbrown::HashMap<Key, f64, Hasher>,
    order: BTreeSet<Ranked>,
}

impl PartialEq for SortedSet {
    /// Equal members with bit-for-bit equal scores (so `-0` differs from `0`).
    fn eq(&self, other: &SortedSet) -> bool {
        self.scores.len() == other.scores.len()
            && self.scores.iter().all(|(member, score)| {
                other.scores.get(member).is_some_and(|theirs| theirs.to_bits() == score.to_bits())
            })
    }
}

impl Eq for SortedSet {}

/// One end of a score range, as `ZRANGEBYSCORE` takes it: `1.5`, `(1.5`, `-inf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreBound {
    /// Includes the score.
    Inclusive(f64),
    /// Excludes the score.
    Exclusive(f64),
}

/// One end of a member range, as `ZRANGEBYLEX` takes it: `[a`, `(a`, `-`, `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// Below every member (`-`).
    Lowest,
    /// Above every member (`+`).
    Highest,
    /// Includes the member.
    Inclusive(Vec<u8>),
    /// Excludes the member.
    Exclusive(Vec<u8>),
}

impl LexBound {
    fn admits_above(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Lowest => true,
            LexBound::Highest => false,
            LexBound::Inclusive(min) => member >= &min[..],
            LexBound::Exclusive(min) => member > &min[..],
        }
    }

    fn admits_below(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Lowest => false,
            LexBound::Highest => true,
            LexBound::Inclusive(max) => member <= &max[..],
            LexBound::Exclusive(max) => member < &max[..],
        }
    }
}

impl SortedSet {
    /// How many members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score; returns whether the member is new.
    pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let score = Score::new(stored_score(score));
        match self.scores.get_mut(member) {
            Some(old) => {
                if old.to_bits() != score.get().to_bits() {
                    let key = Key::from(member);
                    self.order.remove(&Ranked { score: Score(*old), member: key.clone() });
                    *old = score.get();
                    self.order.insert(Ranked { score, member: key });
                }
                false
            }
            None => {
                let key = Key::from(member);
                self.scores.insert(key.clone(), score.get());
                self.order.insert(Ranked { score, member: key });
                true
            }
        }
    }

    /// Removes `member`; returns whether it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove_entry(member) {
            Some((key, score)) => {
                self.order.remove(&Ranked { score: Score(score), member: key });
                true
            }
            None => false,
        }
    }

    /// Every member with its score, in order (`reverse`: from the highest).
    pub fn iter(&self, reverse: bool) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        self.read(0..self.len(), reverse, 0, None)
    }

    /// The members with their scores, in hash order (for `ZSCAN` and
    /// `ZRANDMEMBER`, which need no order).
    pub fn unordered(&self) -> impl ExactSizeIterator<Item = (&[u8], f64)> + '_ {
        self.scores.iter().map(|(member, score)| (&member[..], *score))
    }

    /// The position of `member` in order (`reverse`: counted from the highest).
    pub fn rank(&self, member: &[u8], reverse: bool) -> Option<usize> {
        let position = self.order.rank(&Ranked { score: Score(self.score(member)?), member: Key::from(member) });
        Some(if reverse { self.len() - 1 - position } else { position })
    }

    /// The members at positions `start..=stop` (in range), in order
    /// (`reverse`: positions counted from the highest, listed from there).
    pub fn by_rank(&self, start: usize, stop: usize, reverse: bool) -> Vec<(&[u8], f64)> {
        debug_assert!(start <= stop && stop < self.len());
        let positions = if reverse { self.len() - 1 - stop..self.len() - start } else { start..stop + 1 };
        self.read(positions, reverse, 0, None).collect()
    }

    /// The members whose scores lie within `min..max`, in order (`reverse`:
    /// from the highest), skipping `offset` and at most `limit` of them.
    pub fn by_score(
        &self,
        min: ScoreBound,
        max: ScoreBound,
        reverse: bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Vec<(&[u8], f64)> {
        self.read(self.score_positions(min, max), reverse, offset, limit).collect()
    }

    /// How many members have scores within `min..max`.
    pub fn count_by_score(&self, min: ScoreBound, max: ScoreBound) -> usize {
        self.score_positions(min, max).len()
    }

    /// The members within `min..max` by member bytes, in order (`reverse`:
    /// from the highest), skipping `offset` and at most `limit` of them. Like
    /// Redis, meaningful when every member has the same score: the members
    /// are then ordered by their bytes.
    pub fn by_lex(
        &self,
        min: &LexBound,
        max: &LexBound,
        reverse: bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Vec<(&[u8], f64)> {
        match self.lex_positions(min, max) {
            Some(positions) => self.read(positions, reverse, offset, limit).collect(),
            None => {
                let in_range = |(member, _): &(&[u8], f64)| min.admits_above(member) && max.admits_below(member);
                let all = self.read(0..self.len(), reverse, 0, None);
                all.filter(in_range).skip(offset).take(limit.unwrap_or(usize::MAX)).collect()
            }
        }
    }

    /// How many members lie within `min..max` by member bytes.
    pub fn count_by_lex(&self, min: &LexBound, max: &LexBound) -> usize {
        match self.lex_positions(min, max) {
            Some(positions) => positions.len(),
            None => self
                .order
                .iter()
                .filter(|ranked| min.admits_above(&ranked.member) && max.admits_below(&ranked.member))
                .count(),
        }
    }

    /// The members at `positions`, in order or from the end (`reverse`), after
    /// skipping `offset` of them, at most `limit`: the positions are narrowed
    /// first, so neither costs a walk.
    fn read(
        &self,
        positions: Range<usize>,
        reverse: bool,
        offset: usize,
        limit: Option<usize>,
    ) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        let available = positions.len().saturating_sub(offset);
        let count = limit.map_or(available, |limit| limit.min(available));
        let start = if reverse {
            positions.end - offset.min(positions.len()) - count
        } else {
            positions.start + offset.min(positions.len())
        };
        let entries = self.order.range_idx(start..start + count).map(|ranked| (&ranked.member[..], ranked.score.get()));
        if reverse {
            Box::new(entries.rev())
        } else {
            Box::new(entries)
        }
    }

    /// The positions of the members with scores within `min..max`.
    fn score_positions(&self, min: ScoreBound, max: ScoreBound) -> Range<usize> {
        // Every member of score `s` sorts at or after `(s, "")`, and before `(next_up(s), "")`.
        let at = |score: f64| Ranked { score: Score(score), member: Key::from(&b""[..]) };
        let low = match min {
            ScoreBound::Inclusive(low) => low,
            ScoreBound::Exclusive(low) => low.next_up(),
        };
        let high = match max {
            ScoreBound::Inclusive(high) => high.next_up(),
            ScoreBound::Exclusive(high) => high,
        };
        if low.is_nan() || high.is_nan() || low >= high {
            return 0..0;
        }
        let start = if low == f64::NEG_INFINITY { 0 } else { self.order.rank(&at(low)) };
        let end = if high == f64::INFINITY { self.len() } else { self.order.rank(&at(high)) };
        start..end.max(start)
    }

    /// The positions of the members within `min..max` by member bytes, when one score
    /// holds throughout (`None` otherwise: then the order is not the members').
    fn lex_positions(&self, min: &LexBound, max: &LexBound) -> Option<Range<usize>> {
        let (first, last) = match (self.order.first(), self.order.last()) {
            (Some(first), Some(last)) => (first, last),
            _ => return Some(0..0),
        };
        if first.score != last.score {
            return None;
        }
        let score = first.score;
        // Where `member` would sit, and one past it if it is there.
        let before = |member: &[u8]| self.order.rank(&Ranked { score, member: Key::from(member) });
        let after = |member: &[u8]| before(member) + self.scores.contains_key(member) as usize;
        let start = match min {
            LexBound::Lowest => 0,
            LexBound::Highest => self.len(),
            LexBound::Inclusive(member) => before(member),
            LexBound::Exclusive(member) => after(member),
        };
        let end = match max {
            LexBound::Lowest => 0,
            LexBound::Highest => self.len(),
            LexBound::Inclusive(member) => after(member),
            LexBound::Exclusive(member) => before(member),
        };
        Some(start..end.max(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, f64)]) -> SortedSet {
        let mut set = SortedSet::default();
        for (member, score) in pairs {
            set.insert(member.as_bytes(), *score);
        }
        set
    }

    fn members(picked: Vec<(&[u8], f64)>) -> Vec<String> {
        picked.into_iter().map(|(member, _)| String::from_utf8(member.to_vec()).unwrap()).collect()
    }

    #[test]
    fn order_is_by_score_then_member_and_follows_updates() {
        let mut zset = set(&[("c", 1.0), ("a", 2.0), ("b", 1.0)]);
        assert_eq!(members(zset.iter(false).collect()), ["b", "c", "a"]);
        assert!(!zset.insert(b"a", 0.5), "an update is not new");
        assert_eq!(members(zset.iter(false).collect()), ["a", "b", "c"]);
        assert_eq!(members(zset.iter(true).collect()), ["c", "b", "a"]);
        assert!(zset.remove(b"b"));
        assert!(!zset.remove(b"b"));
        assert_eq!((zset.len(), zset.score(b"a"), zset.score(b"b")), (2, Some(0.5), None));
        assert_eq!(zset.order.len(), zset.scores.len());
    }

    #[test]
    fn ranks_count_from_either_end() {
        let names: Vec<String> = (0..101).map(|index| format!("m{index:03}")).collect();
        let mut zset = SortedSet::default();
        for (index, name) in names.iter().enumerate() {
            zset.insert(name.as_bytes(), index as f64);
        }
        for (index, name) in names.iter().enumerate() {
            assert_eq!(zset.rank(name.as_bytes(), false), Some(index));
            assert_eq!(zset.rank(name.as_bytes(), true), Some(100 - index));
        }
        assert_eq!(zset.rank(b"absent", false), None);
        for (start, stop) in [(0, 0), (0, 100), (3, 7), (95, 100), (50, 52)] {
            let expected: Vec<String> = names[start..=stop].to_vec();
            assert_eq!(members(zset.by_rank(start, stop, false)), expected);
            let mut backwards: Vec<String> = names.iter().rev().cloned().collect();
            backwards = backwards[start..=stop].to_vec();
            assert_eq!(members(zset.by_rank(start, stop, true)), backwards);
        }
    }

    #[test]
    fn score_ranges_honour_exclusive_ends_limits_and_direction() {
        let zset = set(&[("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 3.0), ("e", f64::INFINITY)]);
        let (inclusive, exclusive) = (ScoreBound::Inclusive, ScoreBound::Exclusive);
        assert_eq!(members(zset.by_score(inclusive(2.0), inclusive(3.0), false, 0, None)), ["b", "c", "d"]);
        assert_eq!(members(zset.by_score(exclusive(1.0), exclusive(3.0), false, 0, None)), ["b", "c"]);
        assert_eq!(members(zset.by_score(exclusive(1.0), inclusive(f64::INFINITY), true, 1, Some(2))), ["d", "c"]);
        assert_eq!(zset.count_by_score(inclusive(f64::NEG_INFINITY), inclusive(f64::INFINITY)), 5);
        assert_eq!(zset.count_by_score(inclusive(3.0), inclusive(2.0)), 0);
        assert_eq!(zset.count_by_score(exclusive(2.0), exclusive(2.0)), 0);
    }

    #[test]
    fn lex_ranges_cover_members_of_one_score() {
        let zset = set(&[("a", 0.0), ("b", 0.0), ("c", 0.0), ("d", 0.0)]);
        let inclusive = |text: &str| LexBound::Inclusive(text.as_bytes().to_vec());
        let exclusive = |text: &str| LexBound::Exclusive(text.as_bytes().to_vec());
        assert_eq!(members(zset.by_lex(&LexBound::Lowest, &LexBound::Highest, false, 0, None)), ["a", "b", "c", "d"]);
        assert_eq!(members(zset.by_lex(&inclusive("b"), &exclusive("d"), false, 0, None)), ["b", "c"]);
        assert_eq!(members(zset.by_lex(&exclusive("a"), &LexBound::Highest, true, 0, Some(2))), ["d", "c"]);
        assert_eq!(zset.count_by_lex(&LexBound::Highest, &LexBound::Lowest), 0);
        assert_eq!(zset.count_by_lex(&inclusive("bb"), &inclusive("c")), 1);
    }

    #[test]
    fn negative_zero_is_stored_as_zero() {
        let zset = set(&[("b", 0.0), ("a", -0.0)]);
        assert_eq!(members(zset.iter(false).collect()), ["a", "b"]);
        assert!(zset.score(b"a").unwrap().is_sign_positive());
        assert_eq!(set(&[("a", -0.0)]), set(&[("a", 0.0)]));
        assert_ne!(set(&[("a", 1.0)]), set(&[("a", 2.0)]));
    }

    mod model {
        use proptest::prelude::*;

        use super::super::*;

        /// The naive model: every member with its score, sorted the slow way.
        fn sorted(model: &std::collections::HashMap<Vec<u8>, f64>) -> Vec<(Vec<u8>, f64)> {
            let mut all: Vec<(Vec<u8>, f64)> = model.iter().map(|(member, score)| (member.clone(), *score)).collect();
            all.sort_by(|left, right| left.1.partial_cmp(&right.1).unwrap().then_with(|| left.0.cmp(&right.0)));
            all
        }

        fn owned(picked: Vec<(&[u8], f64)>) -> Vec<(Vec<u8>, f64)> {
            picked.into_iter().map(|(member, score)| (member.to_vec(), score)).collect()
        }

        fn score_bound() -> impl Strategy<Value = ScoreBound> {
            let score =
                prop_oneof![(-4..4i8).prop_map(|score| score as f64), Just(f64::INFINITY), Just(f64::NEG_INFINITY)];
            (score, any::<bool>()).prop_map(|(score, exclusive)| {
                if exclusive {
                    ScoreBound::Exclusive(score)
                } else {
                    ScoreBound::Inclusive(score)
                }
            })
        }

        fn lex_bound() -> impl Strategy<Value = LexBound> {
            prop_oneof![
                Just(LexBound::Lowest),
                Just(LexBound::Highest),
                (0..8u8).prop_map(|byte| LexBound::Inclusive(vec![b'a' + byte])),
                (0..8u8).prop_map(|byte| LexBound::Exclusive(vec![b'a' + byte])),
            ]
        }

        proptest! {
            /// Order, ranks and every range agree with a naive sort of the same members.
            #[test]
            fn every_query_agrees_with_a_sorted_list(
                changes in prop::collection::vec((0..8u8, prop::option::of(-3..3i8)), 1..60),
                min in score_bound(),
                max in score_bound(),
                lex_min in lex_bound(),
                lex_max in lex_bound(),
                reverse in any::<bool>(),
                offset in 0..6usize,
                limit in prop::option::of(0..6usize),
                one_score in any::<bool>(),
            ) {
                let mut zset = SortedSet::default();
                let mut model = std::collections::HashMap::new();
                for (member, score) in changes {
                    let member = vec![b'a' + member];
                    match score {
                        Some(score) => {
                            let score = if one_score { 1.0 } else { score as f64 / 2.0 };
                            prop_assert_eq!(zset.insert(&member, score), model.insert(member, score).is_none());
                        }
                        None => prop_assert_eq!(zset.remove(&member), model.remove(&member).is_some()),
                    }
                }
                let all = sorted(&model);
                prop_assert_eq!(owned(zset.iter(false).collect()), all.clone());
                for (position, (member, _)) in all.iter().enumerate() {
                    prop_assert_eq!(zset.rank(member, false), Some(position));
                    prop_assert_eq!(zset.rank(member, true), Some(all.len() - 1 - position));
                }
                let ordered: Vec<(Vec<u8>, f64)> = if reverse { all.iter().rev().cloned().collect() } else { all.clone() };
                if !all.is_empty() {
                    let (start, stop) = (offset.min(all.len() - 1), (offset + 2).min(all.len() - 1));
                    prop_assert_eq!(owned(zset.by_rank(start, stop, reverse)), ordered[start..=stop].to_vec());
                }
                let limited = |selected: Vec<(Vec<u8>, f64)>| -> Vec<(Vec<u8>, f64)> {
                    selected.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).collect()
                };
                let admits = |bound: ScoreBound, score: f64, above: bool| match (bound, above) {
                    (ScoreBound::Inclusive(edge), true) => score >= edge,
                    (ScoreBound::Exclusive(edge), true) => score > edge,
                    (ScoreBound::Inclusive(edge), false) => score <= edge,
                    (ScoreBound::Exclusive(edge), false) => score < edge,
                };
                let by_score: Vec<(Vec<u8>, f64)> =
                    ordered.iter().filter(|(_, score)| admits(min, *score, true) && admits(max, *score, false)).cloned().collect();
                prop_assert_eq!(zset.count_by_score(min, max), by_score.len());
                prop_assert_eq!(owned(zset.by_score(min, max, reverse, offset, limit)), limited(by_score));
                if one_score {
                    let by_lex: Vec<(Vec<u8>, f64)> = ordered
                        .iter()
                        .filter(|(member, _)| lex_min.admits_above(member) && lex_max.admits_below(member))
                        .cloned()
                        .collect();
                    prop_assert_eq!(zset.count_by_lex(&lex_min, &lex_max), by_lex.len());
                    prop_assert_eq!(owned(zset.by_lex(&lex_min, &lex_max, reverse, offset, limit)), limited(by_lex));
                }
            }
        }
    }
}
