//! What the select stage could not take — records, objects — kept in bounded memory: every
//! problem is counted, the first [`PROBLEMS_KEPT_PER_OBJECT`] of each object are kept in full
//! (their reasons cut to [`MAX_REASON_CHARS`]), the rest are counted by kind and summarised in
//! one more problem when the object ends. A file of three million bad elements costs a few
//! lines, not gigabytes.

use std::collections::BTreeMap;
use std::fmt::Display;

use super::origin::Origin;

/// Problems of one object kept in full; the rest are summarised.
pub const PROBLEMS_KEPT_PER_OBJECT: usize = 10;
/// Characters of a reason kept: a bad record's reason may quote its values.
pub const MAX_REASON_CHARS: usize = 300;

/// A record or an object that could not be taken, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    /// The record's position in the object; `None` for the object itself (or a summary).
    pub index: Option<usize>,
    pub reason: String,
}

impl Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{} record {i}: {}", self.origin, self.reason),
            None => write!(f, "{}: {}", self.origin, self.reason),
        }
    }
}

/// The problems of a run.
#[derive(Debug, Default)]
pub(super) struct ProblemLog {
    kept: Vec<Problem>,
    /// Problems before this index have been handed out by [`ProblemLog::new_problems`].
    reported: usize,
    current: Option<ObjectProblems>,
}

/// The problems of the object being read.
#[derive(Debug)]
struct ObjectProblems {
    bucket: Option<String>,
    key: String,
    shown: String,
    count: usize,
    /// Problems beyond the kept ones, by kind.
    not_kept: BTreeMap<&'static str, usize>,
}

impl ObjectProblems {
    fn of(origin: &Origin<'_>) -> Self {
        ObjectProblems {
            bucket: origin.bucket.map(str::to_owned),
            key: origin.key.to_owned(),
            shown: origin.to_string(),
            count: 0,
            not_kept: BTreeMap::new(),
        }
    }

    fn is(&self, origin: &Origin<'_>) -> bool {
        self.bucket.as_deref() == origin.bucket && self.key == origin.key
    }
}

impl ProblemLog {
    /// Notes a problem at `index` of `origin` (`None`: the object itself); `kind` names it in
    /// a few words for the summary, `reason` in full (formatted only when kept).
    pub fn note(
        &mut self,
        origin: &Origin<'_>,
        index: Option<usize>,
        kind: &'static str,
        reason: impl Display,
    ) {
        if !self.current.as_ref().is_some_and(|o| o.is(origin)) {
            self.object_done();
            self.current = Some(ObjectProblems::of(origin));
        }
        let Some(object) = self.current.as_mut() else {
            return;
        };
        object.count += 1;
        if object.count > PROBLEMS_KEPT_PER_OBJECT {
            *object.not_kept.entry(kind).or_default() += 1;
            return;
        }
        self.kept.push(Problem {
            origin: object.shown.clone(),
            index,
            reason: cut(reason.to_string()),
        });
    }

    /// The object being read has ended: what was not kept is summarised.
    pub fn object_done(&mut self) {
        let Some(object) = self.current.take() else {
            return;
        };
        if object.not_kept.is_empty() {
            return;
        }
        let not_kept: usize = object.not_kept.values().sum();
        let kinds: Vec<String> = object
            .not_kept
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        self.kept.push(Problem {
            origin: object.shown,
            index: None,
            reason: format!(
                "{not_kept} more problem(s) in this file, not listed one by one: {}",
                kinds.join(", ")
            ),
        });
    }

    /// The problems kept, in the order noted.
    pub fn kept(&self) -> &[Problem] {
        &self.kept
    }

    /// The problems kept since the last call, to log as they happen.
    pub fn new_problems(&mut self) -> &[Problem] {
        let from = self.reported;
        self.reported = self.kept.len();
        &self.kept[from..]
    }
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters, saying so.
fn cut(mut reason: String) -> String {
    if let Some((at, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        let left = reason[at..].len();
        reason.truncate(at);
        reason.push_str(&format!("… ({left} more bytes)"));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_object_key;

    fn origin(key: &str) -> Origin<'_> {
        Origin {
            bucket: Some("b"),
            key,
            parsed: parse_object_key(key),
        }
    }

    #[test]
    fn the_first_problems_of_an_object_are_kept_and_the_rest_summarised_by_kind() {
        let mut log = ProblemLog::default();
        let a = origin("a.json.gz");
        for i in 0..1000 {
            let kind = if i % 2 == 0 {
                "not a JSON object"
            } else {
                "no eventTime"
            };
            log.note(&a, Some(i), kind, format!("problem {i}"));
        }
        let b = origin("b.json.gz");
        log.note(&b, None, "unreadable", "truncated");
        log.object_done();
        let kept = log.kept();
        assert_eq!(kept.len(), PROBLEMS_KEPT_PER_OBJECT + 2);
        assert_eq!(kept[0].to_string(), "s3://b/a.json.gz record 0: problem 0");
        let summary = &kept[PROBLEMS_KEPT_PER_OBJECT];
        assert_eq!(summary.index, None);
        assert_eq!(
            summary.reason,
            "990 more problem(s) in this file, not listed one by one: 495 no eventTime, 495 not a JSON object"
        );
        assert_eq!(
            kept.last().unwrap().to_string(),
            "s3://b/b.json.gz: truncated"
        );
    }

    #[test]
    fn long_reasons_are_cut_and_new_problems_are_handed_out_once() {
        let mut log = ProblemLog::default();
        let a = origin("a.json");
        log.note(
            &a,
            Some(0),
            "bad",
            format!("value \"{}\"", "\u{e9}".repeat(5000)),
        );
        let reason = &log.kept()[0].reason;
        assert!(reason.chars().count() < MAX_REASON_CHARS + 30, "{reason}");
        assert!(reason.ends_with("more bytes)"), "{reason}");
        assert_eq!(log.new_problems().len(), 1);
        assert!(log.new_problems().is_empty());
        log.note(&a, Some(1), "bad", "again");
        assert_eq!(log.new_problems().len(), 1);
    }
}
