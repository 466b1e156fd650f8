//! Which records a rule can match at all, read from its detection: most CloudTrail rules name
//! the `eventName`s they are about, so a record is tested only against the few rules that name
//! its API. Rules that name none are indexed by another field the record model holds
//! (`eventSource`, `userIdentity.type`, `userAgent`) when they pin one, and tested on every
//! record only when they pin none. The admission is a superset of what the rule matches — it
//! never decides a match, it only spares evaluations that could not match.

use std::collections::BTreeSet;

use rsigma_parser::{
    ConditionExpr, Detection, Quantifier, SigmaRule, SigmaString, SigmaValue, StringPart,
};
use rustc_hash::FxHashMap;

use crate::record::Record;

/// A field of the record model a rule can be indexed by, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    EventName,
    EventSource,
    IdentityType,
    UserAgent,
}

impl Key {
    pub const ALL: [Key; 4] = [
        Key::EventName,
        Key::EventSource,
        Key::IdentityType,
        Key::UserAgent,
    ];

    /// The field's name in Sigma rules.
    pub fn field(self) -> &'static str {
        match self {
            Key::EventName => "eventName",
            Key::EventSource => "eventSource",
            Key::IdentityType => "userIdentity.type",
            Key::UserAgent => "userAgent",
        }
    }

    fn of<'r>(self, record: &'r Record<'_>) -> Option<&'r str> {
        let f = &record.fields;
        match self {
            Key::EventName => f.event_name.as_deref(),
            Key::EventSource => f.event_source.as_deref(),
            Key::IdentityType => f.user_identity.as_ref()?.identity_type.as_deref(),
            Key::UserAgent => f.user_agent.as_deref(),
        }
    }
}

/// The records a rule can match, by one field compared without case as Sigma compares plain
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Any record (no indexed field is pinned on every path to a match).
    Any,
    /// Records whose `key` field, lower-cased, is one of `values` or starts with one of
    /// `prefixes`.
    Values {
        key: Key,
        values: BTreeSet<String>,
        prefixes: BTreeSet<String>,
    },
}

impl Admission {
    /// The admission of a rule on the first field of [`Key::ALL`] it pins.
    pub fn of_rule(rule: &SigmaRule) -> Admission {
        Key::ALL
            .into_iter()
            .map(|key| Admission::of_rule_on(rule, key))
            .find(|a| *a != Admission::Any)
            .unwrap_or(Admission::Any)
    }

    /// The admission of a rule on `key`: a match needs any one of its conditions.
    fn of_rule_on(rule: &SigmaRule, key: Key) -> Admission {
        let named = &rule.detection.named;
        union(
            rule.detection
                .conditions
                .iter()
                .map(|c| of_condition(c, named, key)),
        )
    }

    fn values(key: Key, values: BTreeSet<String>, prefixes: BTreeSet<String>) -> Admission {
        Admission::Values {
            key,
            values,
            prefixes,
        }
    }

    fn width(&self) -> usize {
        match self {
            Admission::Any => usize::MAX,
            Admission::Values {
                values, prefixes, ..
            } => values.len() + 1000 * prefixes.len(),
        }
    }
}

fn of_condition(
    expr: &ConditionExpr,
    named: &std::collections::HashMap<String, Detection>,
    key: Key,
) -> Admission {
    match expr {
        ConditionExpr::Identifier(name) => named
            .get(name)
            .map_or(Admission::Any, |d| of_detection(d, key)),
        ConditionExpr::And(parts) => narrowest(parts.iter().map(|p| of_condition(p, named, key))),
        ConditionExpr::Or(parts) => union(parts.iter().map(|p| of_condition(p, named, key))),
        // A negation admits what its operand excludes: anything.
        ConditionExpr::Not(_) => Admission::Any,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let mut chosen: Vec<&String> = named
                .keys()
                .filter(|name| pattern.matches_detection_name(name))
                .collect();
            chosen.sort();
            let each = chosen
                .into_iter()
                .map(|name| of_detection(&named[name], key));
            match quantifier {
                Quantifier::All => narrowest(each),
                // "0 of" holds whatever matches.
                Quantifier::Count(0) => Admission::Any,
                // "1 of", and "N of" (which needs at least one of them too).
                Quantifier::Any | Quantifier::Count(_) => union(each),
            }
        }
    }
}

fn of_detection(detection: &Detection, key: Key) -> Admission {
    match detection {
        Detection::AllOf(items) => narrowest(
            items
                .iter()
                .filter(|item| item.field.name.as_deref() == Some(key.field()))
                .map(|item| of_item(key, &item.field.modifiers, &item.values)),
        ),
        Detection::AnyOf(parts) => union(parts.iter().map(|p| of_detection(p, key))),
        _ => Admission::Any,
    }
}

/// What an item on the key's field admits: plain values and `startswith`, compared without
/// case; any other modifier (`contains`, `re`, `cased`, `all`, …) admits everything.
fn of_item(key: Key, modifiers: &[rsigma_parser::Modifier], values: &[SigmaValue]) -> Admission {
    use rsigma_parser::Modifier;
    let starts = match modifiers {
        [] => false,
        [Modifier::StartsWith] => true,
        _ => return Admission::Any,
    };
    let mut exact = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for value in values {
        let SigmaValue::String(text) = value else {
            return Admission::Any;
        };
        match (plain_prefix(text), starts) {
            (Some((prefix, false)), false) => exact.insert(prefix),
            (Some((prefix, _)), _) => prefixes.insert(prefix),
            (None, _) => return Admission::Any,
        };
    }
    Admission::values(key, exact, prefixes)
}

/// The lower-cased literal start of a Sigma string and whether a `*` ends it; `None` for any
/// other wildcard use.
fn plain_prefix(text: &SigmaString) -> Option<(String, bool)> {
    let mut literal = String::new();
    let mut parts = text.parts.iter().peekable();
    while let Some(part) = parts.next() {
        match part {
            StringPart::Plain(s) => literal.push_str(s),
            StringPart::Special(rsigma_parser::SpecialChar::WildcardMulti)
                if parts.peek().is_none() =>
            {
                return Some((literal.to_lowercase(), true));
            }
            StringPart::Special(_) => return None,
        }
    }
    Some((literal.to_lowercase(), false))
}

/// What every one of `parts` admits: the narrowest of them suffices (each is a superset).
fn narrowest(parts: impl Iterator<Item = Admission>) -> Admission {
    parts.min_by_key(Admission::width).unwrap_or(Admission::Any)
}

/// What any one of `parts` admits: the union, or anything if one admits anything (all parts
/// are on the same key).
fn union(parts: impl Iterator<Item = Admission>) -> Admission {
    let mut merged: Option<Admission> = None;
    for part in parts {
        merged = Some(match (merged, part) {
            (_, Admission::Any) => return Admission::Any,
            (None, part) => part,
            (Some(Admission::Any), _) => return Admission::Any,
            (
                Some(Admission::Values {
                    key,
                    mut values,
                    mut prefixes,
                }),
                Admission::Values {
                    values: v,
                    prefixes: p,
                    ..
                },
            ) => {
                values.extend(v);
                prefixes.extend(p);
                Admission::values(key, values, prefixes)
            }
        });
    }
    merged.unwrap_or(Admission::Any)
}

/// Rules indexed by admission, for a few lookups per record.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// Per key (in [`Key::ALL`] order): rules by lower-cased value.
    by_value: [FxHashMap<String, Vec<usize>>; 4],
    by_prefix: Vec<(Key, String, usize)>,
    /// Per key: which byte lengths its values have (`true` at the length), so that a value no
    /// rule can have is not even lower-cased. `None` when the key has prefixes.
    lengths: [Option<Vec<bool>>; 4],
    /// The keys any rule is indexed by.
    keys: Vec<Key>,
    always: Vec<usize>,
}

/// Longest value lower-cased on the stack (no API or identity name comes near it; a longer or
/// non-ASCII one, such as a long user agent, is lower-cased on the heap).
const STACK_VALUE: usize = 160;

impl Prefilter {
    pub fn new<'a>(admissions: impl IntoIterator<Item = &'a Admission>) -> Prefilter {
        let mut index = Prefilter::default();
        for (rule, admission) in admissions.into_iter().enumerate() {
            match admission {
                Admission::Any => index.always.push(rule),
                Admission::Values {
                    key,
                    values,
                    prefixes,
                } => {
                    for value in values {
                        index.by_value[*key as usize]
                            .entry(value.clone())
                            .or_default()
                            .push(rule);
                    }
                    for prefix in prefixes {
                        index.by_prefix.push((*key, prefix.clone(), rule));
                    }
                    if !index.keys.contains(key) {
                        index.keys.push(*key);
                    }
                }
            }
        }
        index.keys.sort();
        for key in Key::ALL {
            let has_prefixes = index.by_prefix.iter().any(|(k, ..)| *k == key);
            let values = &index.by_value[key as usize];
            index.lengths[key as usize] = (!has_prefixes && values.keys().all(|v| v.is_ascii()))
                .then(|| {
                    let longest = values.keys().map(String::len).max().unwrap_or(0);
                    let mut lengths = vec![false; longest + 1];
                    for value in values.keys() {
                        lengths[value.len()] = true;
                    }
                    lengths
                });
        }
        index
    }

    /// Whether some rule may have this value of `key`: its length is one of theirs (lower-casing
    /// ASCII keeps the length; other text is always looked up).
    fn may_have(&self, key: Key, value: &str) -> bool {
        match &self.lengths[key as usize] {
            Some(lengths) if value.is_ascii() => lengths.get(value.len()).copied().unwrap_or(false),
            _ => true,
        }
    }

    /// The rules `record` may match, in rule order, each once.
    pub fn candidates(&self, record: &Record<'_>, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.always);
        for &key in &self.keys {
            let Some(value) = key.of(record).filter(|v| self.may_have(key, v)) else {
                continue;
            };
            with_lowercase(value, |lower| {
                if let Some(rules) = self.by_value[key as usize].get(lower) {
                    out.extend_from_slice(rules);
                }
                for (_, prefix, rule) in self.by_prefix.iter().filter(|(k, ..)| *k == key) {
                    if lower.starts_with(prefix.as_str()) {
                        out.push(*rule);
                    }
                }
            });
        }
        if out.len() > self.always.len() {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// How many rules are tested on every record.
    pub fn always_len(&self) -> usize {
        self.always.len()
    }
}

/// Calls `f` with `value` lower-cased as the evaluator folds case (Unicode), on the stack when
/// it is short ASCII.
fn with_lowercase(value: &str, f: impl FnOnce(&str)) {
    let mut buffer = [0u8; STACK_VALUE];
    match buffer.get_mut(..value.len()).filter(|_| value.is_ascii()) {
        Some(slot) => {
            slot.copy_from_slice(value.as_bytes());
            slot.make_ascii_lowercase();
            f(std::str::from_utf8(slot).unwrap_or_default())
        }
        None => f(&value.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(yaml: &str) -> Admission {
        let text = format!(
            "title: t\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{yaml}"
        );
        let collection = rsigma_parser::parse_sigma_yaml(&text).unwrap();
        Admission::of_rule(&collection.rules[0])
    }

    fn on(key: Key, list: &[&str]) -> Admission {
        Admission::values(
            key,
            list.iter().map(|s| s.to_lowercase()).collect(),
            BTreeSet::new(),
        )
    }

    fn names(list: &[&str]) -> Admission {
        on(Key::EventName, list)
    }

    #[test]
    fn plain_event_names_are_admitted_without_case() {
        let a = admission(
            "    selection:\n        eventSource: cloudtrail.amazonaws.com\n        eventName:\n            - StopLogging\n            - DeleteTrail\n    condition: selection\n",
        );
        assert_eq!(a, names(&["StopLogging", "DeleteTrail"]));
    }

    #[test]
    fn and_takes_the_narrowest_side_and_or_the_union() {
        let a = admission(
            "    selection_event_source:\n        eventSource: guardduty.amazonaws.com\n    selection_action_delete:\n        eventName: DeleteDetector\n    selection_action_update:\n        eventName: UpdateDetector\n    selection_status_null:\n        errorCode: null\n    condition: selection_event_source and 1 of selection_action_* and 1 of selection_status_*\n",
        );
        assert_eq!(a, names(&["DeleteDetector", "UpdateDetector"]));
        let a = admission(
            "    selection_sts:\n        eventName: AssumeRoleWithSAML\n    selection_iam:\n        eventName: UpdateSAMLProvider\n    condition: 1 of selection_*\n",
        );
        assert_eq!(a, names(&["AssumeRoleWithSAML", "UpdateSAMLProvider"]));
    }

    #[test]
    fn without_event_name_another_modelled_field_indexes_the_rule() {
        let a = admission(
            "    selection_usertype:\n        userIdentity.type: Root\n    selection_eventtype:\n        eventType: AwsServiceEvent\n    condition: selection_usertype and not selection_eventtype\n",
        );
        assert_eq!(a, on(Key::IdentityType, &["Root"]));
        let a = admission(
            "    selection:\n        userAgent: 'TruffleHog'\n    condition: selection\n",
        );
        assert_eq!(a, on(Key::UserAgent, &["TruffleHog"]));
    }

    #[test]
    fn a_selection_pinning_no_indexed_field_or_a_negation_admits_everything() {
        let a = admission(
            "    selection:\n        userIdentity.arn|re: '.+:assumed-role/aws:.+'\n    filter:\n        eventName: ConsoleLogin\n    condition: selection and not filter\n",
        );
        assert_eq!(a, Admission::Any);
        let a = admission(
            "    selection:\n        eventName: A\n    other:\n        sourceIPAddress: x\n    condition: selection or other\n",
        );
        assert_eq!(a, Admission::Any);
        let a = admission(
            "    selection:\n        eventName|contains: Delete\n    condition: selection\n",
        );
        assert_eq!(a, Admission::Any);
        let a = admission(
            "    a:\n        eventName: A\n    b:\n        eventName: B\n    condition: 0 of them\n",
        );
        assert_eq!(a, Admission::Any);
    }

    #[test]
    fn startswith_and_a_trailing_star_are_prefixes() {
        let a = admission(
            "    selection:\n        eventName|startswith: UpdateFunctionConfiguration\n    condition: selection\n",
        );
        assert_eq!(
            a,
            Admission::values(
                Key::EventName,
                BTreeSet::new(),
                ["updatefunctionconfiguration".to_owned()].into()
            )
        );
        let a = admission("    selection:\n        eventName: 'Put*'\n    condition: selection\n");
        assert!(matches!(a, Admission::Values { ref prefixes, .. } if prefixes.contains("put")));
        let a = admission("    selection:\n        eventName: 'P?t'\n    condition: selection\n");
        assert_eq!(a, Admission::Any);
    }

    #[test]
    fn candidates_are_the_rules_of_the_record_values_and_the_unpinned_ones() {
        let admissions = [
            names(&["StopLogging"]),
            Admission::Any,
            Admission::values(
                Key::EventName,
                BTreeSet::new(),
                ["update".to_owned()].into(),
            ),
            names(&["stoplogging", "DeleteTrail"]),
            on(Key::IdentityType, &["Root"]),
        ];
        let index = Prefilter::new(&admissions);
        let mut out = Vec::new();
        let mut candidates = |raw: &str| {
            index.candidates(&Record::parse(raw).unwrap(), &mut out);
            out.clone()
        };
        assert_eq!(candidates(r#"{"eventName":"StopLogging"}"#), [0, 1, 3]);
        assert_eq!(candidates(r#"{"eventName":"UpdateTrail"}"#), [1, 2]);
        assert_eq!(candidates(r#"{"eventName":"GetObject"}"#), [1]);
        assert_eq!(candidates("{}"), [1]);
        assert_eq!(
            candidates(r#"{"eventName":"StopLogging","userIdentity":{"type":"Root"}}"#),
            [0, 1, 3, 4]
        );
        let long = format!(r#"{{"eventName":"Update{}"}}"#, "x".repeat(200));
        assert_eq!(candidates(&long), [1, 2]);
    }
}
