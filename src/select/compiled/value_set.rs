//! The values of one group (SELECT or DESELECT) of a condition, compiled: exact values in a
//! set behind a cheap filter, prefixes and suffixes in [`AffixSet`]s.

use rustc_hash::FxHashSet;

use super::affix::{AffixSet, End};

/// Values of one group (SELECT or DESELECT) of a field selector.
#[derive(Default)]
pub(super) struct ValueSetBuilder<'v> {
    pub(super) exact: Vec<&'v str>,
    pub(super) prefixes: Vec<&'v str>,
    pub(super) suffixes: Vec<&'v str>,
}

impl ValueSetBuilder<'_> {
    pub(super) fn build(self) -> Option<ValueSet> {
        if self.exact.is_empty() && self.prefixes.is_empty() && self.suffixes.is_empty() {
            return None;
        }
        Some(ValueSet {
            exact: ExactSet::new(&self.exact),
            prefixes: AffixSet::new(&self.prefixes, End::Start),
            suffixes: AffixSet::new(&self.suffixes, End::End),
        })
    }
}

/// Exact values: a few are compared one by one (cheaper than hashing the record's value),
/// more go into a hash set, behind a filter that rules out most other values without hashing.
#[derive(Debug, Clone)]
enum ExactSet {
    Few(Vec<Box<str>>),
    Many {
        filter: Box<ShapeFilter>,
        // FxHash: selector values are configuration, not attacker-chosen keys, so SipHash's
        // flooding resistance buys nothing and costs a third of an evaluation.
        set: FxHashSet<Box<str>>,
    },
}

/// Up to this many exact values are compared one by one.
const LINEAR_SCAN_MAX: usize = 6;

impl ExactSet {
    fn new(values: &[&str]) -> ExactSet {
        if values.len() <= LINEAR_SCAN_MAX {
            ExactSet::Few(values.iter().map(|v| Box::<str>::from(*v)).collect())
        } else {
            let mut filter = Box::new(ShapeFilter::default());
            for v in values {
                filter.insert(v.as_bytes());
            }
            ExactSet::Many {
                filter,
                set: values.iter().map(|v| Box::<str>::from(*v)).collect(),
            }
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            ExactSet::Few(values) => values.iter().any(|v| &**v == value),
            ExactSet::Many { filter, set } => {
                filter.admits(value.as_bytes()) && set.contains(value)
            }
        }
    }
}

/// A bitmap over (length, first byte, last byte) of a set's values: a value whose bit is clear
/// is not in the set. 500 values fill at most an eighth of its 4096 bits.
#[derive(Debug, Clone)]
struct ShapeFilter([u64; 64]);

impl Default for ShapeFilter {
    fn default() -> Self {
        ShapeFilter([0; 64])
    }
}

impl ShapeFilter {
    fn bit(value: &[u8]) -> usize {
        let (first, last) = match value {
            [] => (0, 0),
            [first, .., last] => (*first, *last),
            [only] => (*only, *only),
        };
        let key = (value.len() as u64) << 16 | u64::from(first) << 8 | u64::from(last);
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize
    }

    fn insert(&mut self, value: &[u8]) {
        let bit = Self::bit(value);
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn admits(&self, value: &[u8]) -> bool {
        let bit = Self::bit(value);
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
}

#[derive(Debug, Clone)]
pub(super) struct ValueSet {
    exact: ExactSet,
    prefixes: Option<AffixSet>,
    suffixes: Option<AffixSet>,
}

impl ValueSet {
    /// Whether some prefix or suffix is among the values (they cost more than exact values).
    pub(super) fn has_affixes(&self) -> bool {
        self.prefixes.is_some() || self.suffixes.is_some()
    }

    pub(super) fn matches(&self, value: &str) -> bool {
        self.exact.contains(value)
            || self
                .prefixes
                .as_ref()
                .is_some_and(|a| a.matches(value.as_bytes()))
            || self
                .suffixes
                .as_ref()
                .is_some_and(|a| a.matches(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_suffixes_match_only_at_their_end_of_the_value() {
        let set = ValueSetBuilder {
            exact: vec!["exact"],
            prefixes: vec!["arn:aws:s3:::bucket/", "abc"],
            suffixes: vec![".json", "xyz"],
        }
        .build()
        .expect("non-empty");
        assert!(set.matches("exact"));
        assert!(!set.matches("exactly"));
        assert!(set.matches("arn:aws:s3:::bucket/key"));
        assert!(!set.matches("arn:aws:s3:::bucket2/key"));
        assert!(set.matches("abcdef"));
        assert!(!set.matches("xabc"));
        assert!(set.matches("file.json"));
        assert!(!set.matches("file.json.gz"));
        assert!(set.matches("xyz"));
        assert!(!set.matches("xy"));
    }

    #[test]
    fn a_pattern_inside_the_value_is_not_an_anchored_match() {
        // Reversed, "ser" is "res" and "e" is "e": walking "retset/resu…" passes through
        // "re", whose state also carries the pattern "e" — not at the end of the value.
        let set = ValueSetBuilder {
            exact: vec![],
            prefixes: vec!["ab", "b"],
            suffixes: vec!["e", "ser"],
        }
        .build()
        .expect("non-empty");
        assert!(!set.matches("arn:aws:iam::123456789012:user/tester"));
        assert!(set.matches("arn:aws:iam::123456789012:user/someuser"));
        assert!(set.matches("arn:aws:iam::123456789012:user/joe"));
        assert!(!set.matches("xab"));
        assert!(!set.matches("aab"));
        assert!(set.matches("bx"));
    }

    #[test]
    fn the_shared_trunk_is_compared_before_the_automaton() {
        let set = ValueSetBuilder {
            exact: vec![],
            prefixes: vec![
                "arn:aws:s3:::logs/",
                "arn:aws:s3:::logs/2024/",
                "arn:aws:s3:::data-",
            ],
            suffixes: vec![".amazonaws.com", "s3.amazonaws.com"],
        }
        .build()
        .expect("non-empty");
        assert!(set.matches("arn:aws:s3:::logs/x"));
        assert!(set.matches("arn:aws:s3:::data-1/x"));
        assert!(!set.matches("arn:aws:s3:::dat"));
        assert!(!set.matches("arn:aws:s3::"));
        assert!(!set.matches("arn:aws:s4:::logs/x"));
        assert!(set.matches("kms.amazonaws.com"));
        assert!(!set.matches("amazonaws.com"));
        let trunk_only = ValueSetBuilder {
            exact: vec![],
            prefixes: vec!["arn:aws:s3:::", "arn:aws:s3:::b/"],
            suffixes: vec![],
        }
        .build()
        .expect("non-empty");
        assert!(trunk_only.matches("arn:aws:s3:::anything"));
        assert!(!trunk_only.matches("arn:aws:s3"));
    }

    #[test]
    fn overlapping_patterns_still_find_the_shorter_one() {
        let set = ValueSetBuilder {
            exact: vec![],
            prefixes: vec!["abcdef", "abc"],
            suffixes: vec![],
        }
        .build()
        .expect("non-empty");
        assert!(set.matches("abcx"));
        assert!(!set.matches("ab"));
    }

    #[test]
    fn many_exact_values_pass_the_shape_filter_and_others_mostly_do_not() {
        let values: Vec<String> = (0..500)
            .map(|i| {
                format!(
                    "{}Api{i}{}",
                    ["Get", "Put", "\u{e9}"][i % 3],
                    "x".repeat(i % 7)
                )
            })
            .chain(["a", "\u{20ac}"].map(String::from))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let set = ExactSet::new(&refs);
        assert!(matches!(set, ExactSet::Many { .. }));
        assert!(refs.iter().all(|v| set.contains(v)));
        let others: Vec<String> = (0..2000).map(|i| format!("Other{i}")).collect();
        assert!(others.iter().all(|v| !set.contains(v)));
        for other in ["", "b", "Api1", "GetApi1xx", "\u{e9}", "\u{20ac}\u{20ac}"] {
            assert!(!set.contains(other), "{other:?}");
        }
        let ExactSet::Many { filter, .. } = &set else {
            unreachable!()
        };
        let admitted = others
            .iter()
            .filter(|v| filter.admits(v.as_bytes()))
            .count();
        assert!(
            admitted < others.len() / 2,
            "{admitted} of {} admitted",
            others.len()
        );
    }

    #[test]
    fn buckets_of_mixed_lengths_test_each_length_up_to_the_value() {
        let prefixes = [
            "arn:aws:s3:::logs/",
            "arn:aws:s3:::a/",
            "arn:",
            "arn:aws:s3:::logs/2024/",
        ];
        let suffixes = ["/admin", "-ci", "user/bob", "b"];
        let set = ValueSetBuilder {
            exact: vec![],
            prefixes: prefixes.to_vec(),
            suffixes: suffixes.to_vec(),
        }
        .build()
        .expect("non-empty");
        assert!(matches!(set.prefixes, Some(AffixSet::ByLength(_))));
        assert!(matches!(set.suffixes, Some(AffixSet::ByLength(_))));
        for value in [
            "arn:aws:s3:::logs/x",
            "arn:aws:s3:::a/x",
            "arn",
            "arn:",
            "ar",
            "xarn:",
            "role/admin",
            "admin",
            "/admi",
            "deploy-ci",
            "-c",
            "user/bob",
            "ser/bob",
            "b",
            "",
            "arn:aws:s3:::logs/2024/",
        ] {
            let expected = prefixes.iter().any(|p| value.starts_with(p))
                || suffixes.iter().any(|s| value.ends_with(s));
            assert_eq!(set.matches(value), expected, "{value:?}");
        }
    }
}
