//! The digests linked into chains: who names whom as previous, which digests are named but
//! absent, each chain's members in time order, and digests a chain skips.

use std::collections::{BTreeMap, HashMap};

use trailwatch::time::format_event_time;

use super::check::{short, Options};
use super::inventory::Inventory;
use super::layout::{key_tail, parse_digest_name, place, Scope};
use super::read::Loaded;

/// Digests of one trail in one account and region: (scope, trail name, home region).
pub type ChainKey = (Scope, String, String);

/// A digest named as previous by another but not in the folder.
pub struct MissingDigest {
    pub s3: String,
    pub time: Option<i64>,
    pub named_by: Vec<usize>,
}

/// The digests of an [`Inventory`], read and linked. Digests are numbered as in
/// `inventory.digests`.
pub struct Chains<'i, 'a> {
    pub inventory: &'i Inventory<'a>,
    pub loaded: Vec<Loaded>,
    /// Each digest's end: its `digestEndTime`, else the time in its name.
    pub ends: Vec<Option<i64>>,
    /// Whether each digest is in the range asked for (one with no known end is).
    pub in_range: Vec<bool>,
    digest_index: HashMap<&'a str, usize>,
    /// For each digest, the digests that name it as previous.
    pub vouchers: Vec<Vec<usize>>,
    /// For each digest, what is wrong with its place in the chain.
    pub link_problems: Vec<Vec<String>>,
    /// Digests named as previous but absent, by tail.
    pub missing: BTreeMap<String, MissingDigest>,
    /// Each chain's digests in time order.
    pub members: BTreeMap<ChainKey, Vec<usize>>,
}

impl<'i, 'a> Chains<'i, 'a> {
    pub fn new(inventory: &'i Inventory<'a>, loaded: Vec<Loaded>, options: &Options) -> Self {
        let digests = &inventory.digests;
        let ends: Vec<Option<i64>> = digests
            .iter()
            .zip(&loaded)
            .map(|(d, l)| match l.digest() {
                Some(digest) => Some(digest.end),
                None => d.name.as_ref().map(|n| n.time),
            })
            .collect();
        let in_range = ends
            .iter()
            .map(|end| end.is_none_or(|t| options.in_range(t)))
            .collect();
        let mut chains = Chains {
            inventory,
            loaded,
            ends,
            in_range,
            digest_index: digests
                .iter()
                .enumerate()
                .map(|(i, d)| (d.file.tail.as_str(), i))
                .collect(),
            vouchers: vec![Vec::new(); digests.len()],
            link_problems: vec![Vec::new(); digests.len()],
            missing: BTreeMap::new(),
            members: BTreeMap::new(),
        };
        chains.link();
        chains.order();
        chains
    }

    pub fn chain_of(&self, i: usize) -> ChainKey {
        let d = &self.inventory.digests[i];
        match &d.name {
            Some(n) => (d.scope.clone(), n.trail.clone(), n.home_region.clone()),
            None => (d.scope.clone(), String::new(), String::new()),
        }
    }

    fn find_digest(&self, tail: &str) -> Option<usize> {
        self.inventory
            .find(tail)
            .and_then(|f| self.digest_index.get(f.tail.as_str()).copied())
    }

    fn tail(&self, i: usize) -> &'a str {
        &self.inventory.digests[i].file.tail
    }

    /// Each digest vouches for the one it names as previous.
    fn link(&mut self) {
        for i in 0..self.loaded.len() {
            let Some(digest) = self.loaded[i].digest() else {
                continue;
            };
            let Some(object) = &digest.previous_object else {
                continue;
            };
            let tail = key_tail(object).unwrap_or(object);
            match self.find_digest(tail) {
                Some(j) => {
                    self.vouchers[j].push(i);
                    if self.ends[j].is_some_and(|t| t >= digest.end) {
                        self.link_problems[i].push(format!(
                            "chain broken: previousDigestS3Object {} does not end before this digest",
                            short(tail)
                        ));
                    }
                }
                None => {
                    let time = place(tail).and_then(|p| parse_digest_name(p.file_name(), &p.scope));
                    let s3 = format!(
                        "s3://{}/{object}",
                        digest.previous_bucket.as_deref().unwrap_or("?")
                    );
                    self.missing
                        .entry(tail.to_owned())
                        .or_insert_with(|| MissingDigest {
                            s3,
                            time: time.map(|n| n.time),
                            named_by: Vec::new(),
                        })
                        .named_by
                        .push(i);
                }
            }
        }
    }

    fn order(&mut self) {
        for i in 0..self.loaded.len() {
            let key = self.chain_of(i);
            self.members.entry(key).or_default().push(i);
        }
        let ends = &self.ends;
        let digests = &self.inventory.digests;
        for members in self.members.values_mut() {
            members.sort_by(|&a, &b| {
                (ends[a].unwrap_or(i64::MAX), &digests[a].file.tail)
                    .cmp(&(ends[b].unwrap_or(i64::MAX), &digests[b].file.tail))
            });
        }
    }

    /// A digest nobody vouches for although a later one follows it: left out of the chain (a
    /// problem of that digest), or the chain restarted after it (a note).
    pub fn find_skipped(&mut self, notes: &mut Vec<String>) {
        let mut skipped = Vec::new();
        for (key, members) in &self.members {
            for pair in members.windows(2) {
                let (this, next) = (pair[0], pair[1]);
                if !self.vouchers[this].is_empty() || !(self.in_range[this] || self.in_range[next])
                {
                    continue;
                }
                let Some(next_digest) = self.loaded[next].digest() else {
                    continue;
                };
                match &next_digest.previous_object {
                    None => {
                        if let Some(this_digest) = self.loaded[this].digest() {
                            notes.push(format!(
                                "{}: chain restarts at {} (a starting digest): no digest between {} and {} — CloudTrail logging or log file validation was off, so log files delivered then (if any) are not covered",
                                chain_label(key),
                                short(self.tail(next)),
                                format_event_time(this_digest.end),
                                format_event_time(next_digest.start),
                            ));
                        }
                    }
                    // Skipped for a present digest (naming a missing one leaves a hole instead).
                    Some(object)
                        if self.in_range[this]
                            && self
                                .find_digest(key_tail(object).unwrap_or(object))
                                .is_some_and(|named| named != this) =>
                    {
                        skipped.push((
                            this,
                            format!(
                                "not in the chain: the next digest {} names {} as previous",
                                short(self.tail(next)),
                                short(key_tail(object).unwrap_or(object))
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for (i, problem) in skipped {
            self.link_problems[i].push(problem);
        }
    }
}

pub fn chain_label((scope, trail, home): &ChainKey) -> String {
    if trail.is_empty() {
        format!("{scope}, unrecognised digest names")
    } else {
        format!("trail {trail} (home {home}), {scope}")
    }
}
