//! A campaign's candidate pool: the best `capacity` users by objective
//! probability, kept in a bounded min-heap. The order is total and independent
//! of arrival order (probability, then a stable hash of (user, campaign), then
//! user id), so any split of users into partitions and batches yields the same
//! pool. Every allocation objective is increasing in the probability within a
//! campaign, so the best by probability are the best by value.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::hashing::splitmix64;

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub user_id: i64,
    /// Probability of the campaign's objective for this user: the pool's order.
    pub p_objective: f32,
    /// All five task probabilities.
    pub probabilities: [f32; 5],
    tie: u64,
}

impl Candidate {
    pub fn new(user_id: i64, campaign_seed: u64, p_objective: f32, probabilities: [f32; 5]) -> Candidate {
        let tie = splitmix64(campaign_seed ^ user_id as u64);
        Candidate { user_id, p_objective, probabilities, tie }
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
    heap: BinaryHeap<Reverse<Candidate>>,
}

impl Pool {
    pub fn new(capacity: usize) -> Pool {
        Pool { capacity, heap: BinaryHeap::new() }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The probability a newcomer must reach to have a chance (`None` while not full).
    pub fn threshold(&self) -> Option<f32> {
        (self.heap.len() >= self.capacity).then(|| self.heap.peek().map_or(f32::INFINITY, |w| w.0.p_objective))
    }

    /// Keeps `candidate` if it is among the best `capacity` seen.
    pub fn offer(&mut self, candidate: Candidate) {
        if self.capacity == 0 {
            return;
        }
        if self.heap.len() < self.capacity {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate > worst.0
        {
            *worst = Reverse(candidate);
        }
    }

    pub fn merge(&mut self, other: Pool) {
        for Reverse(candidate) in other.heap {
            self.offer(candidate);
        }
    }

    /// The pool, best first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec().into_iter().map(|Reverse(c)| c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(user: i64, p: f32) -> Candidate {
        Candidate::new(user, 7, p, [0.0; 5])
    }

    #[test]
    fn keeps_the_best_whatever_the_order_and_split() {
        let values: Vec<(i64, f32)> = (0..100).map(|u| (u, ((u * 37) % 101) as f32)).collect();
        let mut whole = Pool::new(10);
        values.iter().for_each(|&(u, v)| whole.offer(candidate(u, v)));
        let (mut left, mut right) = (Pool::new(10), Pool::new(10));
        values.iter().rev().for_each(|&(u, v)| if u % 3 == 0 { left.offer(candidate(u, v)) } else { right.offer(candidate(u, v)) });
        left.merge(right);
        let best: Vec<f32> = whole.clone().into_sorted().iter().map(|c| c.p_objective).collect();
        assert_eq!(best, (91..=100).rev().map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(whole.into_sorted(), left.into_sorted());
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
