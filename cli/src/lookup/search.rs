//! The search shared by every source: each record is read, checked exactly against the
//! query, and kept if it belongs on the requested page (newest first, after the cursor).

use std::collections::BTreeMap;

use super::event::{LookupEvent, View};
use super::query::{sort_key, Query, SortKey};

/// Problems printed one by one; past this many only their number is.
const PROBLEMS_SHOWN: usize = 20;

pub struct Searcher<'q> {
    query: &'q Query,
    /// Events at or before this position were returned by an earlier page.
    cursor: Option<SortKey>,
    /// At most this many events are kept (the page plus one, to know whether more follow).
    cap: Option<usize>,
    kept: BTreeMap<SortKey, String>,
    pub records: usize,
    /// Matching events (a duplicate of a record kept is not counted again).
    pub matched: usize,
    pub files: usize,
    problems: Vec<String>,
    pub problem_count: usize,
}

/// A page of results: the events, newest first, and the cursor after the last one when more
/// follow.
pub struct Page {
    pub events: Vec<(LookupEvent, Extra)>,
    pub next: Option<SortKey>,
}

/// What the table shows besides LookupEvents' fields.
pub struct Extra {
    pub who: Option<String>,
    pub source_ip: Option<String>,
    pub error_code: Option<String>,
}

impl<'q> Searcher<'q> {
    pub fn new(query: &'q Query, cursor: Option<SortKey>, limit: Option<usize>) -> Self {
        Searcher {
            query,
            cursor,
            cap: limit.map(|l| l + 1),
            kept: BTreeMap::new(),
            records: 0,
            matched: 0,
            files: 0,
            problems: Vec::new(),
            problem_count: 0,
        }
    }

    /// One record's exact JSON text; `origin` says where it was, for a problem report.
    pub fn record(&mut self, raw: &str, origin: impl FnOnce() -> String) {
        self.records += 1;
        let checked = View::parse(raw).and_then(|view| {
            let time_ms = view.time_ms()?;
            Ok(view
                .matches(raw, time_ms, self.query)
                .then(|| sort_key(time_ms, view.event_id().unwrap_or(""), raw)))
        });
        match checked {
            Ok(Some(key)) => {
                self.matched += 1;
                self.offer(key, raw);
            }
            Ok(None) => {}
            Err(e) => self.problem(format!("{}: {}", origin(), e.0)),
        }
    }

    fn offer(&mut self, key: SortKey, raw: &str) {
        if self.cursor.as_ref().is_some_and(|c| key <= *c) {
            return;
        }
        if let Some(cap) = self.cap {
            if self.kept.len() >= cap && self.kept.last_key_value().is_some_and(|(k, _)| key >= *k)
            {
                return;
            }
        }
        // The same record twice (a duplicate delivery, or the same stream read twice) is
        // one event, as Event history has each event once.
        match self.kept.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => self.matched -= 1,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(raw.to_owned());
            }
        }
        if self.cap.is_some_and(|cap| self.kept.len() > cap) {
            self.kept.pop_last();
        }
    }

    pub fn problem(&mut self, message: String) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_SHOWN {
            self.problems.push(message);
        }
    }

    /// The problems to print: the first ones and, if more, how many more.
    pub fn problem_report(&self) -> Vec<String> {
        let mut lines = self.problems.clone();
        if self.problem_count > self.problems.len() {
            lines.push(format!(
                "… and {} more problems",
                self.problem_count - self.problems.len()
            ));
        }
        lines
    }

    /// The page: at most `limit` events (all when none), newest first.
    pub fn into_page(self) -> Page {
        let limit = self.cap.map(|c| c - 1);
        let more = limit.is_some_and(|l| self.kept.len() > l);
        let mut events = Vec::with_capacity(self.kept.len());
        let mut next = None;
        for (i, (key, raw)) in self.kept.into_iter().enumerate() {
            if limit.is_some_and(|l| i >= l) {
                break;
            }
            // Read before, so it reads again.
            let view = View::parse(&raw).expect("a record that was read once");
            let event = view.to_event(&raw, key.0 .0);
            let extra = Extra {
                who: view.who().map(str::to_owned),
                source_ip: view.source_ip().map(str::to_owned),
                error_code: view.error_code().map(str::to_owned),
            };
            events.push((event, extra));
            if more {
                next = Some(key);
            }
        }
        Page { events, next }
    }
}
