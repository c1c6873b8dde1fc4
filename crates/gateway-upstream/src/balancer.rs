//! Picking a target for a request.
//!
//! All three algorithms see the same input: the cluster's targets, their
//! weights, a predicate saying which may be picked now (healthy, not
//! ejected, not already tried by this request), and for hashing a key.
//!
//! - Round robin walks a precomputed *smooth* weighted schedule (nginx's
//!   interleaving, so weight 3:1 gives `a a b a`, not `a a a b`) with one
//!   atomic counter; unavailable entries are skipped.
//! - Least outstanding is power-of-two-choices: two random available
//!   targets, the one with fewer in-flight requests per unit of weight wins.
//! - Consistent hashing uses a ring of virtual nodes (100 per unit of
//!   weight) placed by hashing the target *address*, so a target's points
//!   do not depend on its position in the list. An unavailable target's
//!   keys move clockwise to the next available point; every other key stays
//!   put. Without a key it falls back to round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use crate::config::LoadBalancing;

/// Virtual nodes per unit of (gcd-reduced) weight on the hash ring.
pub const VNODES_PER_WEIGHT: u32 = 100;
/// Upper bound on the ring's size; beyond it fewer virtual nodes per unit
/// of weight are used.
const MAX_RING_POINTS: u64 = 65_536;

#[derive(Debug)]
pub(crate) struct Balancer {
    kind: LoadBalancing,
    schedule: Vec<usize>,
    next: AtomicUsize,
    ring: Vec<(u64, usize)>,
}

impl Balancer {
    /// `names` identify targets on the ring (their addresses); `weights`
    /// are parallel to it.
    pub(crate) fn new(kind: LoadBalancing, names: &[String], weights: &[u32]) -> Self {
        let ring = if kind == LoadBalancing::ConsistentHash {
            build_ring(names, weights)
        } else {
            Vec::new()
        };
        Self {
            kind,
            schedule: smooth_schedule(weights),
            next: AtomicUsize::new(0),
            ring,
        }
    }

    /// Picks a target index among those for which `ok` holds, using
    /// `in_flight` for least-outstanding and `key` for hashing. `retry`
    /// marks a pick for a retry: round robin then starts at a random point
    /// instead of advancing the shared counter, so retries do not shift
    /// which target first attempts land on.
    pub(crate) fn pick(
        &self,
        key: Option<&[u8]>,
        weights: &[u32],
        retry: bool,
        in_flight: impl Fn(usize) -> usize,
        ok: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self.kind {
            LoadBalancing::RoundRobin => self.round_robin(retry, &ok),
            LoadBalancing::LeastOutstanding => p2c(weights, in_flight, ok),
            LoadBalancing::ConsistentHash => match key {
                Some(key) => self.ring_lookup(hash_key(key), &ok),
                None => self.round_robin(retry, &ok),
            },
        }
    }

    fn round_robin(&self, retry: bool, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = if retry {
            rand::thread_rng().gen_range(0..len)
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let first = self.schedule[start % len];
        if ok(first) {
            return Some(first);
        }
        // Hand the skipped slot to the available entries in turn; simply
        // taking the next entry would give an ejected target's whole share
        // to its neighbour in the schedule.
        let available = self.schedule.iter().filter(|&&i| ok(i)).count();
        if available == 0 {
            return None;
        }
        self.schedule
            .iter()
            .copied()
            .filter(|&i| ok(i))
            .nth(start % available)
    }

    fn ring_lookup(&self, h: u64, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|(p, _)| *p < h);
        (0..self.ring.len())
            .map(|k| self.ring[(start + k) % self.ring.len()].1)
            .find(|&i| ok(i))
    }
}

fn p2c(
    weights: &[u32],
    in_flight: impl Fn(usize) -> usize,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let candidates: Vec<usize> = (0..weights.len()).filter(|&i| ok(i)).collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let mut rng = rand::thread_rng();
            let a = rng.gen_range(0..n);
            let mut b = rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates[a], candidates[b]);
            // Compare in_flight/weight without division: a/wa <= b/wb.
            let la = in_flight(a) as u64 * u64::from(weights[b].max(1));
            let lb = in_flight(b) as u64 * u64::from(weights[a].max(1));
            Some(if la <= lb { a } else { b })
        }
    }
}

/// Smooth weighted round robin order over one full cycle.
fn smooth_schedule(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let w: Vec<i64> = weights.iter().map(|x| i64::from(*x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn build_ring(names: &[String], weights: &[u32]) -> Vec<(u64, usize)> {
    // Weights are relative: reduce them, then cap the ring's size so large
    // weights cannot make it huge (memory and lookup cache misses).
    let g = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .fold(0, gcd)
        .max(1);
    let total: u64 = weights.iter().map(|w| u64::from(w / g)).sum();
    let per_weight = (MAX_RING_POINTS / total.max(1)).clamp(1, u64::from(VNODES_PER_WEIGHT)) as u32;
    let mut ring = Vec::new();
    for (i, (name, w)) in names.iter().zip(weights).enumerate() {
        for v in 0..(w / g).saturating_mul(per_weight) {
            ring.push((hash_key(format!("{name}#{v}").as_bytes()), i));
        }
    }
    ring.sort_unstable();
    ring
}

/// A stable 64-bit hash (FNV-1a, then a splitmix64 finaliser for spread).
/// Stable across processes and versions, unlike `DefaultHasher`, so every
/// gateway replica maps a key to the same target.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:80")).collect()
    }

    #[test]
    fn smooth_schedule_interleaves_weights() {
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_schedule(&[2, 2, 2]), vec![0, 1, 2]);
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_skips_unavailable_targets() {
        let b = Balancer::new(LoadBalancing::RoundRobin, &names(3), &[1, 1, 1]);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(None, &[1, 1, 1], false, |_| 0, |i| i != 1).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(b.pick(None, &[1, 1, 1], false, |_| 0, |_| false), None);
    }

    #[test]
    fn p2c_prefers_the_less_loaded_target() {
        for _ in 0..50 {
            assert_eq!(
                p2c(&[1, 1], |i| if i == 0 { 10 } else { 1 }, |_| true),
                Some(1)
            );
        }
        // Weight 4 with 4 in flight is as loaded as weight 1 with 1.
        assert_eq!(
            p2c(&[4, 1], |i| if i == 0 { 3 } else { 1 }, |_| true),
            Some(0)
        );
    }

    proptest! {
        #[test]
        fn ring_moves_only_the_removed_targets_keys(keys in proptest::collection::vec(any::<u64>(), 1..200), gone in 0usize..5) {
            let b = Balancer::new(LoadBalancing::ConsistentHash, &names(5), &[1; 5]);
            for k in keys {
                let key = k.to_le_bytes();
                let before = b.pick(Some(&key), &[1; 5], false, |_| 0, |_| true).unwrap();
                let after = b.pick(Some(&key), &[1; 5], false, |_| 0, |i| i != gone).unwrap();
                prop_assert_ne!(after, gone);
                if before != gone {
                    prop_assert_eq!(before, after);
                }
            }
        }

        #[test]
        fn weighted_schedule_matches_weights(w in proptest::collection::vec(1u32..20, 1..6)) {
            let s = smooth_schedule(&w);
            let g = w.iter().copied().fold(0, gcd);
            for (i, wi) in w.iter().enumerate() {
                prop_assert_eq!(s.iter().filter(|&&x| x == i).count() as u32, wi / g);
            }
        }
    }

    #[test]
    fn ring_size_is_bounded_and_follows_weights() {
        let ring = build_ring(&names(3), &[1000, 1000, 500]);
        assert!(ring.len() <= MAX_RING_POINTS as usize);
        assert_eq!(ring.iter().filter(|(_, i)| *i == 0).count(), 200);
        assert_eq!(ring.iter().filter(|(_, i)| *i == 2).count(), 100);
    }

    #[test]
    fn ring_spreads_keys_roughly_evenly() {
        let b = Balancer::new(LoadBalancing::ConsistentHash, &names(4), &[1; 4]);
        let mut counts = [0usize; 4];
        for k in 0..4000u32 {
            counts[b
                .pick(
                    Some(format!("user-{k}").as_bytes()),
                    &[1; 4],
                    false,
                    |_| 0,
                    |_| true,
                )
                .unwrap()] += 1;
        }
        for c in counts {
            assert!((600..1400).contains(&c), "{counts:?}");
        }
    }
}
