//! Space-Saving top-k sketch (Metwally et al. 2005): bounded memory, any value with frequency
//! above N/k is kept, and each kept count over-estimates by at most its `error`.

use serde::{Deserialize, Serialize};

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

/// In-memory hash of a value (compared in full on a match; never persisted).
fn hash_str(text: &str) -> u64 {
    FxBuildHasher.hash_one(text)
}

/// Values per attribute kept per (key, minute) and per daily rollup (docs/insights-design.md §3.6).
pub const SKETCH_CAPACITY: usize = 16;

/// One tracked value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SketchEntry {
    pub value: String,
    /// Estimated count (an over-estimate by at most `error`).
    pub count: u64,
    /// Upper bound of the over-estimate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A Space-Saving summary with [`SKETCH_CAPACITY`] slots.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpaceSaving {
    entries: Vec<SketchEntry>,
    /// Hashes parallel to `entries` (rebuilt after deserialisation) so lookups rarely compare
    /// strings.
    #[serde(skip)]
    hashes: Vec<u64>,
}

impl PartialEq for SpaceSaving {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl SpaceSaving {
    pub fn new() -> Self {
        SpaceSaving::default()
    }

    pub fn entries(&self) -> &[SketchEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn sync_hashes(&mut self) {
        if self.hashes.len() != self.entries.len() {
            self.hashes = self.entries.iter().map(|e| hash_str(&e.value)).collect();
        }
    }

    /// Counts `n` occurrences of `value`.
    #[inline]
    pub fn add(&mut self, value: &str, n: u64) {
        self.add_with_error(value, n, 0);
    }

    fn add_with_error(&mut self, value: &str, n: u64, error: u64) {
        self.sync_hashes();
        let h = hash_str(value);
        for (i, &eh) in self.hashes.iter().enumerate() {
            if eh == h && self.entries[i].value == value {
                self.entries[i].count += n;
                self.entries[i].error += error;
                return;
            }
        }
        if self.entries.len() < SKETCH_CAPACITY {
            self.entries.push(SketchEntry {
                value: value.to_owned(),
                count: n,
                error,
            });
            self.hashes.push(h);
            return;
        }
        // Replace the smallest: the newcomer inherits its count as possible over-estimate.
        let (i, min) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.count)
            .map(|(i, e)| (i, e.count))
            .unwrap_or((0, 0));
        let slot = &mut self.entries[i];
        slot.value.clear();
        slot.value.push_str(value);
        slot.count = min + n;
        slot.error = min + error;
        self.hashes[i] = h;
    }

    /// Adds another summary (counts of equal values add; the result keeps the largest).
    pub fn merge(&mut self, other: &SpaceSaving) {
        if other.entries.is_empty() {
            return;
        }
        if self.entries.len() + other.entries.len() <= SKETCH_CAPACITY {
            for e in &other.entries {
                self.add_with_error(&e.value, e.count, e.error);
            }
            return;
        }
        let mut all: Vec<SketchEntry> = self.entries.clone();
        for e in &other.entries {
            match all.iter_mut().find(|a| a.value == e.value) {
                Some(a) => {
                    a.count += e.count;
                    a.error += e.error;
                }
                None => all.push(e.clone()),
            }
        }
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        all.truncate(SKETCH_CAPACITY);
        self.entries = all;
        self.hashes.clear();
        self.sync_hashes();
    }

    /// The `n` largest values, by count descending then value.
    pub fn top(&self, n: usize) -> Vec<&SketchEntry> {
        let mut v: Vec<&SketchEntry> = self.entries.iter().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_while_under_capacity() {
        let mut s = SpaceSaving::new();
        for (v, n) in [("a", 3), ("b", 1), ("a", 2), ("c", 7)] {
            s.add(v, n);
        }
        let top: Vec<(&str, u64)> = s
            .top(5)
            .iter()
            .map(|e| (e.value.as_str(), e.count))
            .collect();
        assert_eq!(top, vec![("c", 7), ("a", 5), ("b", 1)]);
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let mut s = SpaceSaving::new();
        for i in 0..10_000u32 {
            s.add("heavy", 1);
            s.add(&format!("tail-{i}"), 1);
        }
        let top = s.top(1);
        assert_eq!(top[0].value, "heavy");
        assert!(top[0].count >= 10_000);
        assert!(top[0].count - top[0].error <= 10_000);
        assert_eq!(s.entries().len(), SKETCH_CAPACITY);
    }

    #[test]
    fn merge_adds_equal_values_and_survives_serde() {
        let mut a = SpaceSaving::new();
        a.add("x", 2);
        let mut b = SpaceSaving::new();
        b.add("x", 3);
        b.add("y", 1);
        a.merge(&b);
        let json = serde_json::to_string(&a).unwrap();
        let mut back: SpaceSaving = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        back.add("x", 1);
        assert_eq!(back.top(1)[0].count, 6);
    }
}
