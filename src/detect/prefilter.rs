//! Which records a rule can match at all, read from its detection: most CloudTrail rules name
//! the `eventName`s they are about, so a record is tested only against the few rules that name
//! its API (or that name none). The admission is a superset of what the rule matches — it
//! never decides a match, it only spares evaluations that could not match.

use std::collections::{BTreeSet, HashMap};

use rsigma_parser::{
    ConditionExpr, Detection, Quantifier, SigmaRule, SigmaString, SigmaValue, StringPart,
};

/// The `eventName`s a rule can match, compared without case as Sigma compares plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Any record (the rule does not pin `eventName` on every path to a match).
    Any,
    /// Records whose `eventName`, lower-cased, is one of `names` or starts with one of
    /// `prefixes`.
    Names {
        names: BTreeSet<String>,
        prefixes: BTreeSet<String>,
    },
}

impl Admission {
    /// The admission of a rule: a match needs any one of its conditions.
    pub fn of_rule(rule: &SigmaRule) -> Admission {
        let named = &rule.detection.named;
        union(
            rule.detection
                .conditions
                .iter()
                .map(|c| of_condition(c, named)),
        )
    }

    fn names(names: BTreeSet<String>, prefixes: BTreeSet<String>) -> Admission {
        Admission::Names { names, prefixes }
    }

    fn width(&self) -> usize {
        match self {
            Admission::Any => usize::MAX,
            Admission::Names { names, prefixes } => names.len() + 1000 * prefixes.len(),
        }
    }
}

fn of_condition(expr: &ConditionExpr, named: &HashMap<String, Detection>) -> Admission {
    match expr {
        ConditionExpr::Identifier(name) => named.get(name).map_or(Admission::Any, of_detection),
        ConditionExpr::And(parts) => narrowest(parts.iter().map(|p| of_condition(p, named))),
        ConditionExpr::Or(parts) => union(parts.iter().map(|p| of_condition(p, named))),
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
            let each = chosen.into_iter().map(|name| of_detection(&named[name]));
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

fn of_detection(detection: &Detection) -> Admission {
    match detection {
        Detection::AllOf(items) => narrowest(
            items
                .iter()
                .filter(|item| item.field.name.as_deref() == Some("eventName"))
                .map(|item| of_event_name_values(&item.field.modifiers, &item.values)),
        ),
        Detection::AnyOf(parts) => union(parts.iter().map(of_detection)),
        _ => Admission::Any,
    }
}

/// What an `eventName` item admits: plain values and `startswith`, compared without case; any
/// other modifier (`contains`, `re`, `cased`, `all`, …) admits everything.
fn of_event_name_values(modifiers: &[rsigma_parser::Modifier], values: &[SigmaValue]) -> Admission {
    use rsigma_parser::Modifier;
    let starts = match modifiers {
        [] => false,
        [Modifier::StartsWith] => true,
        _ => return Admission::Any,
    };
    let mut names = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for value in values {
        let SigmaValue::String(text) = value else {
            return Admission::Any;
        };
        match (plain_prefix(text), starts) {
            (Some((prefix, false)), false) => names.insert(prefix),
            (Some((prefix, _)), _) => prefixes.insert(prefix),
            (None, _) => return Admission::Any,
        };
    }
    Admission::names(names, prefixes)
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

/// What any one of `parts` admits: the union, or anything if one admits anything.
fn union(parts: impl Iterator<Item = Admission>) -> Admission {
    let mut names = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    let mut any_part = false;
    for part in parts {
        any_part = true;
        match part {
            Admission::Any => return Admission::Any,
            Admission::Names {
                names: n,
                prefixes: p,
            } => {
                names.extend(n);
                prefixes.extend(p);
            }
        }
    }
    if any_part {
        Admission::names(names, prefixes)
    } else {
        Admission::Any
    }
}

/// Rules indexed by admission, for one lookup per record.
#[derive(Debug, Default)]
pub struct Prefilter {
    by_name: HashMap<String, Vec<usize>>,
    by_prefix: Vec<(String, usize)>,
    always: Vec<usize>,
}

/// Longest `eventName` lower-cased on the stack (no AWS API name comes near it; a longer or
/// non-ASCII one is lower-cased on the heap).
const MAX_NAME: usize = 128;

impl Prefilter {
    pub fn new<'a>(admissions: impl IntoIterator<Item = &'a Admission>) -> Prefilter {
        let mut index = Prefilter::default();
        for (rule, admission) in admissions.into_iter().enumerate() {
            match admission {
                Admission::Any => index.always.push(rule),
                Admission::Names { names, prefixes } => {
                    for name in names {
                        index.by_name.entry(name.clone()).or_default().push(rule);
                    }
                    for prefix in prefixes {
                        index.by_prefix.push((prefix.clone(), rule));
                    }
                }
            }
        }
        index
    }

    /// The rules a record with this `eventName` may match, in rule order, each once.
    pub fn candidates(&self, event_name: Option<&str>, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.always);
        let Some(name) = event_name else {
            return;
        };
        let mut buffer = [0u8; MAX_NAME];
        let long;
        let lower: &str = match buffer.get_mut(..name.len()).filter(|_| name.is_ascii()) {
            Some(slot) => {
                slot.copy_from_slice(name.as_bytes());
                slot.make_ascii_lowercase();
                std::str::from_utf8(slot).unwrap_or_default()
            }
            None => {
                // As the evaluator folds case (Unicode), so that no match is ever missed.
                long = name.to_lowercase();
                &long
            }
        };
        if let Some(rules) = self.by_name.get(lower) {
            out.extend_from_slice(rules);
        }
        for (prefix, rule) in &self.by_prefix {
            if lower.starts_with(prefix.as_str()) {
                out.push(*rule);
            }
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

    fn names(list: &[&str]) -> Admission {
        Admission::names(
            list.iter().map(|s| s.to_lowercase()).collect(),
            BTreeSet::new(),
        )
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
    fn a_selection_without_event_name_or_a_negation_admits_everything() {
        let a = admission(
            "    selection:\n        userIdentity.type: Root\n    filter:\n        eventName: ConsoleLogin\n    condition: selection and not filter\n",
        );
        assert_eq!(a, Admission::Any);
        let a = admission(
            "    selection:\n        eventName: A\n    other:\n        userAgent: x\n    condition: selection or other\n",
        );
        assert_eq!(a, Admission::Any);
        let a = admission(
            "    selection:\n        eventName|contains: Delete\n    condition: selection\n",
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
            Admission::names(
                BTreeSet::new(),
                ["updatefunctionconfiguration".to_owned()].into()
            )
        );
        let a = admission("    selection:\n        eventName: 'Put*'\n    condition: selection\n");
        assert!(matches!(a, Admission::Names { ref prefixes, .. } if prefixes.contains("put")));
        let a = admission("    selection:\n        eventName: 'P?t'\n    condition: selection\n");
        assert_eq!(a, Admission::Any);
    }

    #[test]
    fn candidates_are_the_rules_of_the_name_its_prefixes_and_the_unpinned_ones() {
        let admissions = [
            names(&["StopLogging"]),
            Admission::Any,
            Admission::names(BTreeSet::new(), ["update".to_owned()].into()),
            names(&["stoplogging", "DeleteTrail"]),
        ];
        let index = Prefilter::new(&admissions);
        let mut out = Vec::new();
        index.candidates(Some("StopLogging"), &mut out);
        assert_eq!(out, vec![0, 1, 3]);
        index.candidates(Some("UpdateTrail"), &mut out);
        assert_eq!(out, vec![1, 2]);
        index.candidates(Some("GetObject"), &mut out);
        assert_eq!(out, vec![1]);
        index.candidates(None, &mut out);
        assert_eq!(out, vec![1]);
        let long = format!("Update{}", "x".repeat(200));
        index.candidates(Some(&long), &mut out);
        assert_eq!(out, vec![1, 2]);
    }
}
