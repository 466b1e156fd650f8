//! Sets of prefixes or suffixes anchored at one end of a value: hash probes by length when the
//! patterns have few distinct lengths, else an anchored Aho-Corasick automaton.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, StartKind};
use rustc_hash::FxHashSet;

/// Pattern bytes up to which an affix set gets a dense automaton (a DFA: one table lookup per
/// byte, about twice as fast as the NFA at 500 values). A DFA's size grows with states ×
/// alphabet, so beyond this (long values near the 500 × 2048-byte limit) the contiguous NFA,
/// a fraction of the memory, keeps a 128 MB Lambda safe.
const DENSE_AFFIX_MAX_PATTERN_BYTES: usize = 32 * 1024;

/// Which end of the value an affix set is anchored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Prefixes (StartsWith, NotStartsWith).
    Start,
    /// Suffixes (EndsWith, NotEndsWith).
    End,
}

/// Up to this many distinct pattern lengths, an affix set is a [`LengthBuckets`] (one probe per
/// length); beyond, an automaton (one step per byte of the value, until it dies). Measured on
/// 500 values: S3 prefixes (`arn:aws:s3:::<bucket>/`, the bitmap rules out most lengths) cost
/// the same either way at 8 lengths, and random patterns half the automaton's at 8 but more
/// from 12 on.
const MAX_BUCKET_LENGTHS: usize = 8;

/// A set of prefixes (or suffixes): hash probes by length when the patterns have few distinct
/// lengths (real configurations: fillers and ARNs of a handful of lengths), else the anchored
/// automaton its size allows.
#[derive(Debug, Clone)]
pub(super) enum AffixSet {
    ByLength(LengthBuckets),
    Dense(Affixes<DFA>),
    Compact(Affixes<NFA>),
}

impl AffixSet {
    /// `patterns` as written; `end` says which end of the value they are anchored to.
    pub(super) fn new(patterns: &[&str], end: End) -> Option<AffixSet> {
        // Validation refuses empty values; they are not patterns here (as before).
        let patterns: Vec<&[u8]> = patterns
            .iter()
            .map(|p| p.as_bytes())
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.is_empty() {
            return None;
        }
        if let Some(buckets) = LengthBuckets::new(&patterns, end) {
            return Some(AffixSet::ByLength(buckets));
        }
        // In walking order: as written for prefixes, reversed for suffixes.
        let reversed = end == End::End;
        let walking: Vec<Vec<u8>> = patterns
            .iter()
            .map(|p| {
                if reversed {
                    p.iter().rev().copied().collect()
                } else {
                    p.to_vec()
                }
            })
            .collect();
        AffixSet::automaton(walking, reversed)
    }

    /// `patterns` (non-empty) in walking order: as written for prefixes, reversed for suffixes.
    fn automaton(patterns: Vec<Vec<u8>>, reversed: bool) -> Option<AffixSet> {
        // Building can only fail on automata far larger than 500 values of 2 KiB; then the
        // values are simply not used as affixes, which validation prevents from happening.
        if patterns.iter().map(Vec::len).sum::<usize>() <= DENSE_AFFIX_MAX_PATTERN_BYTES {
            let dfa = DFA::builder()
                .prefilter(false)
                .start_kind(StartKind::Anchored)
                .build(&patterns)
                .ok()?;
            Affixes::new(dfa, &patterns, reversed).map(AffixSet::Dense)
        } else {
            let nfa = NFA::builder().prefilter(false).build(&patterns).ok()?;
            Affixes::new(nfa, &patterns, reversed).map(AffixSet::Compact)
        }
    }

    pub(super) fn matches(&self, value: &[u8]) -> bool {
        match self {
            AffixSet::ByLength(b) => b.matches(value),
            AffixSet::Dense(a) => a.matches(value),
            AffixSet::Compact(a) => a.matches(value),
        }
    }
}

/// Prefixes (or suffixes) grouped by byte length: for each length L up to the value's, the
/// value's first (last) L bytes are looked up in one hash set of all patterns. A byte slice
/// is only equal to patterns of its own length, so one set serves every length. Before
/// hashing, the byte at the inner end of the slice (the pattern's last byte for a prefix, its
/// first for a suffix) is tested against the bytes patterns of that length have there: most
/// lengths are ruled out by one bit test.
///
/// Bytes, not characters: `str::starts_with`/`ends_with` compare bytes, and a UTF-8 pattern can
/// only equal a slice that starts and ends on character boundaries, so a cut through a
/// character never matches (nothing here slices a `&str`).
#[derive(Debug, Clone)]
pub(super) struct LengthBuckets {
    end: End,
    /// Distinct pattern lengths, ascending.
    lengths: Box<[Bucket]>,
    patterns: FxHashSet<Box<[u8]>>,
}

#[derive(Debug, Clone)]
struct Bucket {
    len: usize,
    /// Bit b: some pattern of this length has byte b at its inner end.
    inner: [u64; 4],
}

impl Bucket {
    fn admits(&self, byte: u8) -> bool {
        self.inner[usize::from(byte >> 6)] & (1u64 << (byte & 63)) != 0
    }
}

impl LengthBuckets {
    /// `None` when the (non-empty) patterns have more than [`MAX_BUCKET_LENGTHS`] lengths.
    fn new(patterns: &[&[u8]], end: End) -> Option<LengthBuckets> {
        let mut lengths: Vec<usize> = patterns.iter().map(|p| p.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        if lengths.len() > MAX_BUCKET_LENGTHS {
            return None;
        }
        let lengths = lengths
            .into_iter()
            .map(|len| {
                let mut inner = [0u64; 4];
                for p in patterns.iter().filter(|p| p.len() == len) {
                    let byte = match end {
                        End::Start => p[len - 1],
                        End::End => p[0],
                    };
                    inner[usize::from(byte >> 6)] |= 1u64 << (byte & 63);
                }
                Bucket { len, inner }
            })
            .collect();
        Some(LengthBuckets {
            end,
            lengths,
            patterns: patterns.iter().map(|p| Box::<[u8]>::from(*p)).collect(),
        })
    }

    fn matches(&self, value: &[u8]) -> bool {
        for bucket in &*self.lengths {
            let len = bucket.len;
            if len > value.len() {
                return false;
            }
            let (part, inner) = match self.end {
                End::Start => (&value[..len], value[len - 1]),
                End::End => {
                    let start = value.len() - len;
                    (&value[start..], value[start])
                }
            };
            if bucket.admits(inner) && self.patterns.contains(part) {
                return true;
            }
        }
        false
    }
}

/// An anchored automaton over a set of prefixes (or suffixes): `matches` says whether one of
/// them starts (ends) the value. The part all patterns share (`arn:aws:s3:::`, `.amazonaws.com`)
/// is compared as a slice first; the automaton walks only the bytes after it, and stops at the
/// first anchored match or as soon as no pattern can continue.
#[derive(Debug, Clone)]
pub(super) struct Affixes<A> {
    automaton: A,
    /// Suffix set: patterns were reversed and the value is walked backwards.
    reversed: bool,
    /// The bytes every pattern starts (suffix set: ends) with, as they appear in values.
    trunk: Box<[u8]>,
    /// Some pattern is exactly the trunk.
    trunk_is_pattern: bool,
    /// The automaton's state after the trunk.
    after_trunk: aho_corasick::automaton::StateID,
}

impl<A: Automaton> Affixes<A> {
    /// `patterns` (non-empty, in walking order) are those `automaton` was built from.
    fn new(automaton: A, patterns: &[Vec<u8>], reversed: bool) -> Option<Affixes<A>> {
        let first = patterns.first()?;
        let shared = patterns.iter().fold(first.len(), |n, p| {
            n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count())
        });
        let walked = &first[..shared];
        let mut after_trunk = automaton.start_state(Anchored::Yes).ok()?;
        for &byte in walked {
            after_trunk = automaton.next_state(Anchored::Yes, after_trunk, byte);
        }
        let trunk: Box<[u8]> = if reversed {
            walked.iter().rev().copied().collect()
        } else {
            walked.into()
        };
        Some(Affixes {
            automaton,
            reversed,
            trunk,
            trunk_is_pattern: patterns.iter().any(|p| p.len() == shared),
            after_trunk,
        })
    }

    fn matches(&self, value: &[u8]) -> bool {
        let shared = self.trunk.len();
        if self.reversed {
            if !value.ends_with(&self.trunk) {
                return false;
            }
            self.trunk_is_pattern || self.walk(value[..value.len() - shared].iter().rev().copied())
        } else {
            if !value.starts_with(&self.trunk) {
                return false;
            }
            self.trunk_is_pattern || self.walk(value[shared..].iter().copied())
        }
    }

    fn walk(&self, bytes: impl Iterator<Item = u8>) -> bool {
        let mut state = self.after_trunk;
        for (consumed, byte) in (self.trunk.len() + 1..).zip(bytes) {
            state = self.automaton.next_state(Anchored::Yes, state, byte);
            if self.automaton.is_special(state) {
                if self.automaton.is_dead(state) {
                    return false;
                }
                // A match state also lists the patterns that are suffixes of the bytes read
                // (inherited along failure links); only a pattern as long as everything read
                // so far starts at the anchor.
                if self.automaton.is_match(state)
                    && (0..self.automaton.match_len(state)).any(|k| {
                        self.automaton
                            .pattern_len(self.automaton.match_pattern(state, k))
                            == consumed
                    })
                {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive answer: does some pattern start (end) the value, compared as bytes.
    fn naive(patterns: &[&str], end: End, value: &str) -> bool {
        patterns.iter().any(|p| match end {
            End::Start => value.starts_with(p),
            End::End => value.ends_with(p),
        })
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn large_affix_sets_use_the_compact_automaton_with_the_same_answers() {
        let long: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("arn:aws:s3:::bucket-{i}/{}", "k".repeat(1000)).into_bytes())
            .collect();
        let set = AffixSet::automaton(long.clone(), false).unwrap();
        assert!(matches!(set, AffixSet::Compact(_)));
        let small =
            AffixSet::automaton(long.iter().map(|p| p[..30].to_vec()).collect(), false).unwrap();
        assert!(matches!(small, AffixSet::Dense(_)));
        let mut value = long[7].clone();
        value.extend_from_slice(b"/more");
        assert!(set.matches(&value) && small.matches(&value));
        assert!(!set.matches(&long[7][..long[7].len() - 1]));
        assert!(!set.matches(b"arn:aws:s3:::bucket-99/k"));
    }

    #[test]
    fn few_lengths_are_bucketed_and_more_use_the_automaton() {
        let few: Vec<String> = (0..300)
            .map(|i| format!("arn:aws:s3:::b{}/", i % 500))
            .collect();
        let few: Vec<&str> = few.iter().map(String::as_str).collect();
        assert!(matches!(
            AffixSet::new(&few, End::Start),
            Some(AffixSet::ByLength(_))
        ));
        let many: Vec<String> = (1..=MAX_BUCKET_LENGTHS + 1)
            .map(|n| "x".repeat(n))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            AffixSet::new(&many, End::End),
            Some(AffixSet::Dense(_))
        ));
        assert!(matches!(
            AffixSet::new(&many[1..], End::End),
            Some(AffixSet::ByLength(_))
        ));
        assert!(AffixSet::new(&[], End::Start).is_none());
    }

    #[test]
    fn multibyte_values_are_compared_as_bytes_without_cutting_a_str() {
        // Pattern lengths 1 to 6 bytes cut these values inside characters at most lengths.
        let patterns = [
            "\u{e9}",
            "\u{65e5}",
            "a\u{20ac}",
            "\u{65e5}\u{672c}",
            "z",
            "\u{1f600}",
        ];
        for end in [End::Start, End::End] {
            let set = AffixSet::new(&patterns, end).expect("non-empty");
            assert!(matches!(set, AffixSet::ByLength(_)));
            let automaton = AffixSet::automaton(
                patterns
                    .iter()
                    .map(|p| match end {
                        End::Start => p.as_bytes().to_vec(),
                        End::End => p.bytes().rev().collect(),
                    })
                    .collect(),
                end == End::End,
            )
            .expect("non-empty");
            for value in [
                "\u{e9}t\u{e9}",
                "\u{65e5}\u{672c}\u{8a9e}",
                "\u{8a9e}\u{65e5}",
                "a\u{20ac}",
                "\u{20ac}a",
                "\u{1f600}",
                "x\u{1f600}",
                "\u{1f600}x",
                "\u{e8}",
                "za",
                "az",
                "\u{672c}",
            ] {
                let expected = naive(&patterns, end, value);
                assert_eq!(set.matches(value.as_bytes()), expected, "{end:?} {value:?}");
                assert_eq!(
                    automaton.matches(value.as_bytes()),
                    expected,
                    "{end:?} {value:?}"
                );
            }
        }
    }

    #[test]
    fn buckets_and_automata_agree_with_the_naive_test_on_random_sets() {
        let mut state = 42u64;
        // Few letters so that patterns overlap and values often share long prefixes with them.
        let alphabet = ["a", "b", "/", "\u{e9}", "\u{20ac}"];
        let word = |len: u64, state: &mut u64| -> String {
            (0..1 + lcg(state) % len)
                .map(|_| alphabet[(lcg(state) % 5) as usize])
                .collect()
        };
        for round in 0..300 {
            let count = 1 + lcg(&mut state) % if round % 3 == 0 { 120 } else { 6 };
            let max_len = 2 + round % 14;
            let patterns: Vec<String> = (0..count).map(|_| word(max_len, &mut state)).collect();
            let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
            let values: Vec<String> = (0..40)
                .map(|i| {
                    let base = word(20, &mut state);
                    match i % 3 {
                        0 => format!("{}{base}", patterns[i % patterns.len()]),
                        1 => format!("{base}{}", patterns[i % patterns.len()]),
                        _ => base,
                    }
                })
                .collect();
            for end in [End::Start, End::End] {
                let set = AffixSet::new(&patterns, end).expect("non-empty");
                for value in &values {
                    assert_eq!(
                        set.matches(value.as_bytes()),
                        naive(&patterns, end, value),
                        "{end:?} {patterns:?} {value:?}"
                    );
                }
            }
        }
    }
}
