//! The Space-Saving sketch over (rule, key) pairs (Metwally, Agrawal,
//! El Abbadi, "Efficient Computation of Frequent and Top-k Elements in Data
//! Streams", 2005): the pairs limited most often, in memory bounded by its
//! capacity whatever the number of distinct keys.
//!
//! # What it guarantees
//!
//! Let N be the number of [`Stats::record_limited`] calls so far and k the
//! capacity (`top_k`). Every tracked pair has a `count` and an `error` (the
//! count it inherited when it replaced the least-counted pair; 0 if it took
//! a free slot). Then:
//!
//! - its true count is in `[count - error, count]`;
//! - `error` ≤ the smallest tracked count ≤ N / k;
//! - any pair limited more than N / k times is tracked (so a key that gets
//!   more than its share of denials cannot hide among many distinct keys);
//! - once k pairs are tracked, the counts add up to exactly N.
//!
//! Each call costs O(log k) (an indexed min-heap) plus one hash lookup, and
//! allocates only when a new pair enters the sketch.

use std::collections::HashMap;

use super::{Pair, PairView, TopKey};

/// One pair the sketch is tracking.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) pair: Pair,
    pub(super) count: u64,
    pub(super) error: u64,
    /// Where this slot is in [`SpaceSaving::heap`].
    pub(super) heap_pos: usize,
}

/// The Space-Saving sketch over (rule, key) pairs; see the module docs.
///
/// Invariants: `slots.len() == heap.len() == index.len() <= capacity`;
/// `heap` is a permutation of the slot numbers ordered as a min-heap on
/// `count`; `slots[heap[p]].heap_pos == p`; `index[slots[s].pair] == s`.
#[derive(Debug)]
pub(super) struct SpaceSaving {
    pub(super) capacity: usize,
    pub(super) slots: Vec<Tracked>,
    pub(super) heap: Vec<usize>,
    pub(super) index: HashMap<Pair, usize>,
}

impl SpaceSaving {
    pub(super) fn new(capacity: usize) -> SpaceSaving {
        SpaceSaving {
            capacity,
            slots: Vec::new(),
            heap: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub(super) fn offer(&mut self, rule: &str, key: &str) {
        let probe: &dyn PairView = &(rule, key);
        if let Some(&slot) = self.index.get(probe) {
            self.slots[slot].count = self.slots[slot].count.saturating_add(1);
            self.sift_down(self.slots[slot].heap_pos);
            return;
        }
        if self.slots.len() < self.capacity {
            let (slot, pos) = (self.slots.len(), self.heap.len());
            let pair = Pair::new(rule, key);
            self.index.insert(pair.clone(), slot);
            self.slots.push(Tracked {
                pair,
                count: 1,
                error: 0,
                heap_pos: pos,
            });
            self.heap.push(slot);
            self.sift_up(pos);
            return;
        }
        // Full (or capacity 0, when the heap is empty): the new pair takes
        // over the least-counted slot and inherits its count as its error.
        let Some(&slot) = self.heap.first() else {
            return;
        };
        let pair = Pair::new(rule, key);
        let min = &mut self.slots[slot];
        self.index.remove(&min.pair);
        self.index.insert(pair.clone(), slot);
        min.pair = pair;
        min.error = min.count;
        min.count = min.count.saturating_add(1);
        self.sift_down(0);
    }

    /// The `limit` highest-counted pairs, highest first.
    pub(super) fn top(&self, limit: usize) -> Vec<TopKey> {
        let mut tracked: Vec<&Tracked> = self.slots.iter().collect();
        tracked.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pair.parts().cmp(&b.pair.parts())));
        tracked
            .into_iter()
            .take(limit)
            .map(|t| TopKey {
                rule: t.pair.first.to_string(),
                key: t.pair.second.to_string(),
                count: t.count,
                error: t.error,
            })
            .collect()
    }

    pub(super) fn count_at(&self, pos: usize) -> u64 {
        self.slots[self.heap[pos]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a]].heap_pos = a;
        self.slots[self.heap[b]].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.heap.len();
        loop {
            let mut smallest = pos;
            for child in [2 * pos + 1, 2 * pos + 2] {
                if child < len && self.count_at(child) < self.count_at(smallest) {
                    smallest = child;
                }
            }
            if smallest == pos {
                break;
            }
            self.swap(pos, smallest);
            pos = smallest;
        }
    }
}
