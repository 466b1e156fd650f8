//! The compiled matcher: selectors turned once into hash sets (exact values), hash probes by
//! length (prefixes and suffixes of at most 8 distinct lengths: one probe per length) and
//! otherwise anchored Aho-Corasick automata (suffixes by walking the value backwards), so that
//! the cost of a field test does not grow with the number of configured values (flat up to the
//! 500-value limit). An advanced selector's conditions run cheapest first.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, StartKind};

use crate::record::{EventCategory, Record};

use super::fields::{
    field_passes, read_only_value, scalar_value, Field, Operator, SelectorCategory,
};
use super::model::{AdvancedSelector, BasicSelector, ReadWriteType, Selectors};
use super::reference::BASIC_RESOURCE_TYPES;
use super::validate::{basic_value_kind, BasicValue};
use super::{DropReason, Verdict};

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// The default trail's implicit selector has no index.
    default_trail: bool,
    selectors: CompiledSelectors,
}

#[derive(Debug, Clone)]
enum CompiledSelectors {
    Basic(Vec<CompiledBasic>),
    Advanced(Vec<CompiledAdvanced>),
}

impl Compiled {
    pub(crate) fn new(selectors: &Selectors) -> Compiled {
        match selectors {
            Selectors::Default => Compiled {
                default_trail: true,
                selectors: CompiledSelectors::Basic(vec![CompiledBasic::new(
                    &BasicSelector::default(),
                )]),
            },
            Selectors::Basic(list) => Compiled {
                default_trail: false,
                selectors: CompiledSelectors::Basic(list.iter().map(CompiledBasic::new).collect()),
            },
            Selectors::Advanced(list) => Compiled {
                default_trail: false,
                selectors: CompiledSelectors::Advanced(
                    list.iter().map(CompiledAdvanced::new).collect(),
                ),
            },
        }
    }

    /// `category` is `record.category()`, computed once by the caller.
    pub(crate) fn evaluate(&self, record: &Record<'_>, category: EventCategory) -> Verdict {
        let kept_by = match &self.selectors {
            CompiledSelectors::Basic(list) => list.iter().position(|s| s.matches(record, category)),
            CompiledSelectors::Advanced(list) => {
                let Some(category) = SelectorCategory::of_record(category) else {
                    return Verdict::Drop(DropReason::NotSelected);
                };
                list.iter().position(|s| s.matches(record, category))
            }
        };
        match kept_by {
            Some(_) if self.default_trail => Verdict::Keep { selector: None },
            Some(i) => Verdict::Keep { selector: Some(i) },
            None => Verdict::Drop(DropReason::NotSelected),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledBasic {
    read_write_type: ReadWriteType,
    include_management_events: bool,
    excluded_sources: Vec<Box<str>>,
    /// Per entry of `BASIC_RESOURCE_TYPES`: the values for that type, if any.
    data: [Option<ValueSet>; 3],
}

impl CompiledBasic {
    fn new(selector: &BasicSelector) -> CompiledBasic {
        let data = BASIC_RESOURCE_TYPES.map(|resource_type| {
            let mut builder = ValueSetBuilder::default();
            let values = selector
                .data_resources
                .iter()
                .filter(|dr| dr.resource_type == resource_type)
                .flat_map(|dr| dr.values.iter());
            for value in values {
                // S3 values and "all of a type" values are prefixes; functions and tables exact.
                match basic_value_kind(resource_type, value) {
                    Some(BasicValue::AllOfType) => builder.prefixes.push(value),
                    Some(BasicValue::Specific) if resource_type == "AWS::S3::Object" => {
                        builder.prefixes.push(value)
                    }
                    Some(BasicValue::Specific) => builder.exact.push(value),
                    None => {}
                }
            }
            builder.build()
        });
        CompiledBasic {
            read_write_type: selector.read_write_type,
            include_management_events: selector.include_management_events,
            excluded_sources: selector
                .exclude_management_event_sources
                .iter()
                .map(|s| s.as_str().into())
                .collect(),
            data,
        }
    }

    fn matches(&self, record: &Record<'_>, category: EventCategory) -> bool {
        if !self.read_write_type.accepts(read_only_value(record)) {
            return false;
        }
        match category {
            EventCategory::Management => {
                self.include_management_events
                    && !record
                        .event_source()
                        .is_some_and(|s| self.excluded_sources.iter().any(|e| &**e == s))
            }
            EventCategory::Data => record.fields.resources.iter().flatten().any(|resource| {
                let (Some(kind), Some(arn)) =
                    (resource.resource_type.as_deref(), resource.arn.as_deref())
                else {
                    return false;
                };
                BASIC_RESOURCE_TYPES
                    .iter()
                    .position(|t| *t == kind)
                    .and_then(|i| self.data[i].as_ref())
                    .is_some_and(|set| set.matches(arn))
            }),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledAdvanced {
    category: Option<SelectorCategory>,
    /// `resources.type` Equals values: `resources.ARN` is tested on resources of these types.
    resource_types: Vec<Box<str>>,
    conditions: Vec<CompiledCondition>,
}

#[derive(Debug, Clone)]
struct CompiledCondition {
    field: Field,
    has_select: bool,
    select: Option<ValueSet>,
    deselect: Option<ValueSet>,
}

impl CompiledCondition {
    /// A rank of how much a test costs: single-valued fields before the `resources` list
    /// (`resources.ARN` also filters by type), exact values before prefixes and suffixes.
    fn cost(&self) -> u8 {
        let field = match self.field {
            Field::ResourcesType => 2,
            Field::ResourcesArn => 4,
            _ => 0,
        };
        let affixes = [&self.select, &self.deselect]
            .into_iter()
            .flatten()
            .any(|set| set.prefixes.is_some() || set.suffixes.is_some());
        field + u8::from(affixes)
    }
}

impl CompiledAdvanced {
    fn new(selector: &AdvancedSelector) -> CompiledAdvanced {
        let mut category = None;
        let mut resource_types = Vec::new();
        let mut conditions = Vec::new();
        for fs in &selector.field_selectors {
            let Some(field) = Field::parse(&fs.field) else {
                // Validation refuses unknown fields; a condition nothing passes keeps the
                // compiled matcher equal to the interpreter if one ever got through.
                conditions.push(CompiledCondition {
                    field: Field::ResourcesType,
                    has_select: true,
                    select: None,
                    deselect: None,
                });
                continue;
            };
            if field == Field::EventCategory {
                // Decided once per selector by comparing categories, not as a condition.
                let values = fs.values(Operator::Equals).unwrap_or(&[]);
                category = values.first().and_then(|v| SelectorCategory::parse(v));
                continue;
            }
            if field == Field::ResourcesType {
                resource_types.extend(
                    fs.values(Operator::Equals)
                        .unwrap_or(&[])
                        .iter()
                        .map(|v| v.as_str().into()),
                );
            }
            let mut select = ValueSetBuilder::default();
            let mut deselect = ValueSetBuilder::default();
            for (op, values) in fs.conditions() {
                let builder = if op.is_negative() {
                    &mut deselect
                } else {
                    &mut select
                };
                let list = match op {
                    Operator::Equals | Operator::NotEquals => &mut builder.exact,
                    Operator::StartsWith | Operator::NotStartsWith => &mut builder.prefixes,
                    Operator::EndsWith | Operator::NotEndsWith => &mut builder.suffixes,
                };
                list.extend(values.iter().map(String::as_str));
            }
            conditions.push(CompiledCondition {
                field,
                has_select: fs.conditions().any(|(op, _)| !op.is_negative()),
                select: select.build(),
                deselect: deselect.build(),
            });
        }
        // All conditions must pass and each is a pure test of the record, so their order is
        // free: the cheapest go first, and the first that fails ends the selector.
        conditions.sort_by_key(CompiledCondition::cost);
        CompiledAdvanced {
            category,
            resource_types,
            conditions,
        }
    }

    fn matches(&self, record: &Record<'_>, category: SelectorCategory) -> bool {
        if self.category != Some(category) {
            return false;
        }
        self.conditions.iter().all(|c| self.passes(c, record))
    }

    fn passes(&self, condition: &CompiledCondition, record: &Record<'_>) -> bool {
        let select = |v: &str| condition.select.as_ref().is_some_and(|s| s.matches(v));
        let deselect = |v: &str| condition.deselect.as_ref().is_some_and(|s| s.matches(v));
        let resources = record.fields.resources.iter().flatten();
        match condition.field {
            Field::ResourcesType => field_passes(
                resources.filter_map(|r| r.resource_type.as_deref()),
                condition.has_select,
                select,
                deselect,
            ),
            Field::ResourcesArn => field_passes(
                resources
                    .filter(|r| {
                        self.resource_types.is_empty()
                            || r.resource_type
                                .as_deref()
                                .is_some_and(|t| self.resource_types.iter().any(|s| &**s == t))
                    })
                    .filter_map(|r| r.arn.as_deref()),
                condition.has_select,
                select,
                deselect,
            ),
            scalar => field_passes(
                scalar_value(record, scalar),
                condition.has_select,
                select,
                deselect,
            ),
        }
    }
}

/// Values of one group (SELECT or DESELECT) of a field selector.
#[derive(Default)]
struct ValueSetBuilder<'v> {
    exact: Vec<&'v str>,
    prefixes: Vec<&'v str>,
    suffixes: Vec<&'v str>,
}

impl ValueSetBuilder<'_> {
    fn build(self) -> Option<ValueSet> {
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
        set: HashSet<Box<str>, BuildHasherDefault<FxHasher>>,
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
struct ValueSet {
    exact: ExactSet,
    prefixes: Option<AffixSet>,
    suffixes: Option<AffixSet>,
}

impl ValueSet {
    fn matches(&self, value: &str) -> bool {
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

/// Pattern bytes up to which an affix set gets a dense automaton (a DFA: one table lookup per
/// byte, about twice as fast as the NFA at 500 values). A DFA's size grows with states ×
/// alphabet, so beyond this (long values near the 500 × 2048-byte limit) the contiguous NFA,
/// a fraction of the memory, keeps a 128 MB Lambda safe.
const DENSE_AFFIX_MAX_PATTERN_BYTES: usize = 32 * 1024;

/// Which end of the value an affix set is anchored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
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
enum AffixSet {
    ByLength(LengthBuckets),
    Dense(Affixes<DFA>),
    Compact(Affixes<NFA>),
}

impl AffixSet {
    /// `patterns` as written; `end` says which end of the value they are anchored to.
    fn new(patterns: &[&str], end: End) -> Option<AffixSet> {
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

    fn matches(&self, value: &[u8]) -> bool {
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
struct LengthBuckets {
    end: End,
    /// Distinct pattern lengths, ascending.
    lengths: Box<[Bucket]>,
    patterns: HashSet<Box<[u8]>, BuildHasherDefault<FxHasher>>,
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
struct Affixes<A> {
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

/// The multiply-rotate hash of rustc (FxHash): selector values are configuration, not
/// attacker-chosen keys, so SipHash's flooding resistance buys nothing and costs a third of an
/// evaluation.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut rest = chunks.remainder();
        if rest.len() >= 4 {
            let mut word = [0u8; 4];
            word.copy_from_slice(&rest[..4]);
            self.add(u64::from(u32::from_le_bytes(word)));
            rest = &rest[4..];
        }
        if rest.len() >= 2 {
            self.add(u64::from(u16::from_le_bytes([rest[0], rest[1]])));
            rest = &rest[2..];
        }
        if let Some(&byte) = rest.first() {
            self.add(u64::from(byte));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
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
            let expected = naive(&prefixes, End::Start, value) || naive(&suffixes, End::End, value);
            assert_eq!(set.matches(value), expected, "{value:?}");
        }
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

    #[test]
    fn conditions_run_cheapest_first() {
        let selectors = crate::select::TrailConfig::from_json(
            r#"{"AdvancedEventSelectors": [{"FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::b/"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "userIdentity.arn", "NotEndsWith": ["/ci"]},
                {"Field": "eventName", "Equals": ["GetObject"]}
            ]}]}"#,
        )
        .expect("valid");
        let compiled = Compiled::new(selectors.selectors());
        let CompiledSelectors::Advanced(list) = &compiled.selectors else {
            panic!("advanced selectors");
        };
        let fields: Vec<Field> = list[0].conditions.iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                Field::EventName,
                Field::UserIdentityArn,
                Field::ResourcesType,
                Field::ResourcesArn
            ]
        );
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
}
