//! A campaign's candidate pool: the best `capacity` users by objective
//! probability, kept in an array cut back to its best now and then. The order is total and independent
//! of arrival order (probability, then a stable hash of (user, campaign), then
//! user id), so any split of users into partitions and batches yields the same
//! pool. Every allocation objective is increasing in the probability within a
//! campaign, so the best by probability are the best by value.

use std::cmp::Ordering;

use crate::hashing::splitmix64;

/// A pool entry: what allocation needs of a (campaign, user) pair, 24 bytes
/// (the value follows from the probability and the campaign; the other task
/// probabilities are computed for the audiences' members only).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub user_id: i64,
    tie: u64,
    /// Probability of the campaign's objective for this user: the pool's order.
    pub p_objective: f32,
}

impl Candidate {
    pub fn new(user_id: i64, campaign_seed: u64, p_objective: f32) -> Candidate {
        let tie = splitmix64(campaign_seed ^ user_id as u64);
        Candidate { user_id, tie, p_objective }
    }
}

impl Eq for Candidate {}

impl Ord for Candidate {
    /// Greater is better.
    fn cmp(&self, other: &Self) -> Ordering {
        self.p_objective
            .total_cmp(&other.p_objective)
            .then(other.tie.cmp(&self.tie))
            .then(other.user_id.cmp(&self.user_id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone)]
pub struct Pool {
    capacity: usize,
    /// Unordered; once cut, the best `capacity` seen so far plus newcomers
    /// that beat `floor`.
    entries: Vec<Candidate>,
    /// After the first cut: the worst entry kept. A newcomer below it can
    /// never be among the best `capacity`.
    floor: Option<Candidate>,
    /// The most entries held at once (what the pool's memory reached).
    high_water: usize,
}

impl Pool {
    pub fn new(capacity: usize) -> Pool {
        Pool { capacity, entries: Vec::new(), floor: None, high_water: 0 }
    }

    /// Entries the pool keeps.
    pub fn len(&self) -> usize {
        self.entries.len().min(self.capacity)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the entries reached at their most (memory touched; room a
    /// vector reserved but never filled is not resident).
    pub fn bytes(&self) -> usize {
        self.high_water.max(self.entries.len()) * std::mem::size_of::<Candidate>()
    }

    /// The probability a newcomer must reach to have a chance (`None` until
    /// the pool has first been full).
    pub fn threshold(&self) -> Option<f32> {
        self.floor.as_ref().map(|f| f.p_objective)
    }

    /// Keeps `candidate` if it may be among the best `capacity` seen. Entries
    /// are appended and cut back to the best `capacity` when the pool first
    /// fills and then whenever half as many again have arrived: amortised constant
    /// time per offer, and one array, not a heap to walk.
    pub fn offer(&mut self, candidate: Candidate) {
        if self.capacity == 0 || self.floor.as_ref().is_some_and(|floor| candidate < *floor) {
            return;
        }
        self.entries.push(candidate);
        let cut_at = match self.floor {
            None => self.capacity,
            Some(_) => self.capacity + (self.capacity / 2).max(64),
        };
        if self.entries.len() >= cut_at {
            self.high_water = self.high_water.max(self.entries.len());
            self.cut();
        }
    }

    /// Keeps the best `capacity` entries and notes the worst of them.
    fn cut(&mut self) {
        let keep = self.capacity;
        if self.entries.len() > keep {
            self.entries.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
            self.entries.truncate(keep);
        }
        self.floor = self.entries.iter().min().cloned();
    }

    pub fn merge(&mut self, other: Pool) {
        for candidate in other.entries {
            self.offer(candidate);
        }
    }

    /// The pool, best first.
    pub fn into_sorted(mut self) -> Vec<Candidate> {
        if self.entries.len() > self.capacity {
            self.cut();
        }
        let mut entries = self.entries;
        entries.sort_unstable_by(|a, b| b.cmp(a));
        entries.shrink_to_fit();
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(user: i64, p: f32) -> Candidate {
        Candidate::new(user, 7, p)
    }

    #[test]
    fn keeps_the_best_whatever_the_order_and_split() {
        let values: Vec<(i64, f32)> = (0..100).map(|u| (u, ((u * 37) % 101) as f32)).collect();
        let mut whole = Pool::new(10);
        values.iter().for_each(|&(u, v)| whole.offer(candidate(u, v)));
        let (mut left, mut right) = (Pool::new(10), Pool::new(10));
        values
            .iter()
            .rev()
            .for_each(|&(u, v)| if u % 3 == 0 { left.offer(candidate(u, v)) } else { right.offer(candidate(u, v)) });
        left.merge(right);
        let best: Vec<f32> = whole.clone().into_sorted().iter().map(|c| c.p_objective).collect();
        assert_eq!(best, (91..=100).rev().map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(whole.into_sorted(), left.into_sorted());
    }

    #[test]
    fn an_entry_is_at_most_24_bytes() {
        assert!(std::mem::size_of::<Candidate>() <= 24, "{} bytes", std::mem::size_of::<Candidate>());
    }

    #[test]
    fn ties_break_by_a_stable_hash_not_by_arrival() {
        let mut a = Pool::new(3);
        let mut b = Pool::new(3);
        (0..20).for_each(|u| a.offer(candidate(u, 1.0)));
        (0..20).rev().for_each(|u| b.offer(candidate(u, 1.0)));
        assert_eq!(a.threshold(), Some(1.0));
        assert_eq!(a.into_sorted(), b.into_sorted());
    }
}
