//! The validated allocation instance both solvers share: the candidates'
//! [`Layout`], floors, tie keys, orderings, and which campaigns can be open at all.

use std::cmp::Ordering;
use std::ops::Range;

use rayon::prelude::*;

use super::layout::Layout;
use super::{AllocateError, CampaignSpec, Candidates, Limits, Withheld};
use crate::contract::Channel;
use crate::hashing::{hash_bytes, splitmix64};

pub(crate) struct Instance<'a> {
    pub campaigns: &'a [CampaignSpec],
    pub limits: Limits,
    /// The candidates by position (grouped by user); see [`Layout`].
    pub pairs: Layout,
    /// max(min_audience, privacy floor) per campaign.
    pub floor: Vec<u64>,
    /// Per campaign: the hash of its id, for tie keys.
    campaign_key: Vec<u64>,
    seed: u64,
}

impl<'a> Instance<'a> {
    pub fn new(
        campaigns: &'a [CampaignSpec],
        candidates: Candidates,
        limits: Limits,
        seed: u64,
    ) -> Result<Instance<'a>, AllocateError> {
        let pairs = Layout::new(campaigns, candidates)?;
        let floor = campaigns.iter().map(|s| s.min_audience.max(limits.privacy_floor)).collect();
        let campaign_key = campaigns.iter().map(|s| hash_bytes(s.id.as_bytes())).collect();
        Ok(Instance { campaigns, limits, pairs, floor, campaign_key, seed })
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn users(&self) -> usize {
        self.pairs.user_ids.len()
    }

    /// The positions of user group `u`.
    pub fn user_candidates(&self, u: usize) -> Range<usize> {
        self.pairs.user_start[u] as usize..self.pairs.user_start[u + 1] as usize
    }

    /// The positions of campaign `c`, ascending.
    pub fn campaign_candidates(&self, c: usize) -> &[u32] {
        self.pairs.of_campaign(c)
    }

    pub fn campaign_of(&self, i: usize) -> usize {
        self.pairs.campaign[i] as usize
    }

    pub fn group(&self, i: usize) -> usize {
        self.pairs.group[i] as usize
    }

    pub fn value(&self, i: usize) -> f64 {
        self.pairs.value[i] as f64
    }

    pub fn cost(&self, i: usize) -> f64 {
        self.pairs.cost[i] as f64
    }

    pub fn channel(&self, c: usize) -> Channel {
        self.campaigns[c].channel
    }

    pub fn cap(&self, channel: Channel) -> u32 {
        match channel {
            Channel::Ad => self.limits.max_ads_per_user,
            Channel::Promotion => self.limits.max_promotions_per_user,
        }
    }

    /// Stable tie-break key of a candidate: a hash of (user_id, campaign_id, seed).
    pub fn tie(&self, i: usize) -> u64 {
        let user = self.pairs.user_ids[self.group(i)];
        splitmix64(splitmix64(user as u64 ^ self.seed) ^ self.campaign_key[self.campaign_of(i)])
    }

    /// Orders candidates by `score` descending, then tie key, then position.
    pub fn better(&self, a: (f64, usize), b: (f64, usize)) -> Ordering {
        b.0.total_cmp(&a.0).then_with(|| self.tie(a.1).cmp(&self.tie(b.1))).then(a.1.cmp(&b.1))
    }

    /// Candidates with a positive value, best `score` first (scores compared
    /// in single precision). Ties are broken by a seeded invertible hash of
    /// the position (not the pair's tie key: the position can then be
    /// recovered from the 8-byte sort key, so ordering n candidates costs 12n
    /// bytes at its peak, not 16n).
    pub fn order_by(&self, score: impl Fn(usize) -> f64 + Sync) -> Vec<u32> {
        let seed = self.seed as u32;
        let mut keys: Vec<u64> = (0..self.len())
            .into_par_iter()
            .map(|i| {
                if self.pairs.value[i] > 0.0 {
                    (descending_bits(score(i)) as u64) << 32 | mix32(i as u32 ^ seed) as u64
                } else {
                    u64::MAX
                }
            })
            .collect();
        keys.par_sort_unstable();
        let valued = keys.partition_point(|&k| k != u64::MAX);
        keys.truncate(valued);
        keys.into_par_iter().map(|k| unmix32(k as u32) ^ seed).collect()
    }

    /// Value per unit of cost (cost-free candidates first).
    pub fn density(&self, i: usize) -> f64 {
        let (value, cost) = (self.value(i), self.cost(i));
        if cost > 0.0 { value / cost } else { f64::INFINITY }
    }

    /// Campaigns that can be open at all: those that could reach their floor with
    /// their cheapest candidates within budget. The others are withheld up front,
    /// which every feasible allocation must do too (so bounds stay valid).
    pub fn initially_open(&self) -> Open {
        let reachable: Vec<u64> = (0..self.campaigns.len())
            .into_par_iter()
            .map(|c| {
                let mut costs: Vec<f32> = self
                    .campaign_candidates(c)
                    .iter()
                    .map(|&i| i as usize)
                    .filter(|&i| self.pairs.value[i] > 0.0)
                    .map(|i| self.pairs.cost[i])
                    .collect();
                costs.sort_unstable_by(f32::total_cmp);
                let mut spend = 0.0;
                costs
                    .iter()
                    .take_while(|&&k| {
                        spend += k as f64;
                        spend <= self.campaigns[c].budget
                    })
                    .count() as u64
            })
            .collect();
        let mut open = Open { open: vec![true; self.campaigns.len()], withheld: vec![None; self.campaigns.len()] };
        for (c, reachable) in reachable.into_iter().enumerate() {
            if reachable < self.floor[c] {
                open.withhold(c, reachable, self.floor[c]);
            }
        }
        open
    }
}

/// Bits of `score` as an `f32` whose ascending order is the score's descending order.
fn descending_bits(score: f64) -> u32 {
    let bits = (score as f32).to_bits();
    if bits >> 31 == 1 { bits } else { !(bits | 0x8000_0000) }
}

/// A bijective 32-bit mix (Wellons' lowbias32) and its inverse.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

fn unmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x4302_1123);
    x ^= (x >> 15) ^ (x >> 30);
    x = x.wrapping_mul(0x1d69_e2a5);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_mix_is_a_bijection() {
        let mut x = 0x1234_5678u32;
        for _ in 0..1_000_000 {
            assert_eq!(unmix32(mix32(x)), x);
            x = x.wrapping_mul(2_654_435_761).wrapping_add(1);
        }
        for x in [0, 1, u32::MAX, u32::MAX - 1, 1 << 31] {
            assert_eq!(unmix32(mix32(x)), x);
        }
    }

    #[test]
    fn descending_bits_reverse_the_order_of_scores() {
        let scores = [f64::INFINITY, 3.5, 1.0, 1e-30, 0.0, -1e-30, -2.0, f64::NEG_INFINITY];
        for pair in scores.windows(2) {
            assert!(descending_bits(pair[0]) < descending_bits(pair[1]), "{pair:?}");
        }
    }
}

/// Which campaigns may still get an audience, and why the others do not.
#[derive(Clone)]
pub(crate) struct Open {
    pub open: Vec<bool>,
    pub withheld: Vec<Option<Withheld>>,
}

impl Open {
    pub(super) fn withhold(&mut self, c: usize, audience: u64, floor: u64) {
        self.open[c] = false;
        self.withheld[c] = Some(Withheld::BelowPrivacyFloor { audience, floor });
    }
}
