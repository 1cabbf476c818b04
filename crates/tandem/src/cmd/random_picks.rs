//! Random picks with a count, as `ZRANDMEMBER` and `HRANDFIELD` take them: a
//! count ≥ 0 picks that many distinct items (at most all of them), a count
//! < 0 that many with repeats, in random order.
//!
//! The picks are drawn first, as positions in the collection's iteration
//! order ([`Picks::draw`]), then read in one pass ([`Picks::read`]): the
//! collection is borrowed from the command's context, and so is the random
//! source, so the two cannot be held at once. Reading only, these commands
//! emit no effect, so replay never needs the random source.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::CommandError;

/// Most items one call with a negative count replies: with repeats the reply
/// does not shrink to the collection's size, and tandem builds a reply whole
/// in memory (Redis streams it), so a huge count must not exhaust memory.
pub const REPEATS_MAX: u64 = 1 << 20;

/// Drawn positions, ready to be read from the collection.
pub struct Picks {
    /// Positions in iteration order, ascending (repeats adjacent).
    positions: Vec<usize>,
    /// The reply order: `order[i]` is the index in `positions` replied `i`-th.
    order: Vec<usize>,
}

impl Picks {
    /// Draws `count` picks (see the module comment) from a collection of `size` items.
    pub fn draw(size: usize, count: i64, rng: &mut SmallRng) -> Result<Picks, CommandError> {
        if count == i64::MIN {
            let bound = i64::MAX;
            return Err(CommandError::err(format!("value is out of range, value must between -{bound} and {bound}")));
        }
        let mut positions: Vec<usize> = if count >= 0 {
            let count = (count as u64).min(size as u64) as usize;
            rand::seq::index::sample(rng, size, count).into_vec()
        } else {
            if count.unsigned_abs() > REPEATS_MAX {
                let bound = REPEATS_MAX;
                return Err(CommandError::err(format!(
                    "value is out of range, value must between -{bound} and {bound}"
                )));
            }
            (0..count.unsigned_abs()).map(|_| rng.gen_range(0..size)).collect()
        };
        positions.sort_unstable();
        let mut order: Vec<usize> = (0..positions.len()).collect();
        order.shuffle(rng);
        Ok(Picks { positions, order })
    }

    /// The picked items of `items` (the collection in the order the positions count).
    pub fn read<T: Copy>(&self, items: impl Iterator<Item = T>) -> Vec<T> {
        let mut picked = Vec::with_capacity(self.positions.len());
        let mut wanted = self.positions.iter().copied().peekable();
        for (position, item) in items.enumerate() {
            if wanted.peek().is_none() {
                break;
            }
            while wanted.next_if_eq(&position).is_some() {
                picked.push(item);
            }
        }
        self.order.iter().map(|&index| picked[index]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distinct_picks_never_repeat_and_repeats_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(3);
        let items: Vec<u32> = (0..50).collect();
        let mut distinct = Picks::draw(items.len(), 20, &mut rng).unwrap().read(items.iter().copied());
        assert_eq!(distinct.len(), 20);
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 20);
        let all = Picks::draw(items.len(), 500, &mut rng).unwrap().read(items.iter().copied());
        assert_eq!(all.len(), 50, "at most every item once");
        let repeated = Picks::draw(items.len(), -200, &mut rng).unwrap().read(items.iter().copied());
        assert_eq!(repeated.len(), 200);
        assert!(repeated.iter().all(|item| *item < 50));
        assert!(Picks::draw(3, i64::MIN, &mut rng).is_err());
        assert!(Picks::draw(3, -(REPEATS_MAX as i64) - 1, &mut rng).is_err());
    }
}
