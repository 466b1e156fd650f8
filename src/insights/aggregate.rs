//! Counting: records to per-(series key, UTC minute) counts with top contributors.
//!
//! This is the ingest half of Insights. A Lambda aggregates one log file here and writes each
//! (key, minute) with atomic `ADD`s ([`MinuteAggregate::count`] is the number to add; the
//! sketches merge with [`MinuteAggregate::merge`]), so late and out-of-order files are fine.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use serde::{Deserialize, Serialize};

use super::config::InsightsConfig;
use super::key::{InsightType, SeriesKey, SeriesKeyRef};
use super::sketch::SpaceSaving;
use crate::record::{EventCategory, Record};
use crate::time::MS_PER_MINUTE;

/// Attribution value for an event without `errorCode` (AWS writes the string "null").
pub const SUCCESS_ERROR_CODE: &str = "null";

/// Events of one series key in one UTC minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinuteAggregate {
    /// Events counted (the value for a DynamoDB `ADD`).
    pub count: u64,
    pub user_identity_arn: SpaceSaving,
    pub user_agent: SpaceSaving,
    /// `"null"` for calls that succeeded.
    pub error_code: SpaceSaving,
}

impl MinuteAggregate {
    pub fn merge(&mut self, other: &MinuteAggregate) {
        self.count += other.count;
        self.user_identity_arn.merge(&other.user_identity_arn);
        self.user_agent.merge(&other.user_agent);
        self.error_code.merge(&other.error_code);
    }

    #[inline]
    fn add(&mut self, attrs: &EventAttributes<'_>) {
        self.count += 1;
        self.user_identity_arn.add(attrs.principal, 1);
        self.user_agent.add(attrs.user_agent, 1);
        self.error_code.add(attrs.error_code, 1);
    }
}

/// One (key, minute) cell, the unit written to the minute-aggregate table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinuteCell {
    pub key: SeriesKey,
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    pub aggregate: MinuteAggregate,
}

/// Why a record was not counted. Every skip is counted by reason in [`ObserveStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An Insights record (never analysed again).
    InsightRecord,
    /// A category the configuration does not analyse (data events off, network activity…).
    CategoryNotAnalysed,
    /// No `eventSource` or `eventName`.
    MissingApi,
    /// `eventTime` missing or malformed.
    BadEventTime,
    /// A successful read call (only errors of reads are analysed by default).
    NoSeries,
}

/// Counters of what `observe` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObserveStats {
    pub records: u64,
    /// Increments of (key, minute) counts (an errored write counts twice: rate and error).
    pub counted: u64,
    pub insight_records: u64,
    pub category_not_analysed: u64,
    pub missing_api: u64,
    pub bad_event_time: u64,
    pub no_series: u64,
    /// Events CloudTrail Insights would bill as analysed by the call-rate type (write events,
    /// or every data event) and by the error-rate type (every event of an analysed category).
    pub analysed_call_rate: u64,
    pub analysed_error_rate: u64,
}

impl ObserveStats {
    fn skip(&mut self, why: Skip) {
        match why {
            Skip::InsightRecord => self.insight_records += 1,
            Skip::CategoryNotAnalysed => self.category_not_analysed += 1,
            Skip::MissingApi => self.missing_api += 1,
            Skip::BadEventTime => self.bad_event_time += 1,
            Skip::NoSeries => self.no_series += 1,
        }
    }
}

struct EventAttributes<'a> {
    principal: &'a str,
    user_agent: &'a str,
    error_code: &'a str,
}

/// What records are counted, resolved once from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selection {
    call_rate_management: bool,
    call_rate_data: bool,
    error_rate_management: bool,
    error_rate_data: bool,
    read_in_call_rate: bool,
}

impl Selection {
    pub(crate) fn from_config(c: &InsightsConfig) -> Self {
        Selection {
            call_rate_management: c.call_rate.is_some_and(|s| s.management),
            call_rate_data: c.call_rate.is_some_and(|s| s.data),
            error_rate_management: c.error_rate.is_some_and(|s| s.management),
            error_rate_data: c.error_rate.is_some_and(|s| s.data),
            read_in_call_rate: c.include_read_events_in_call_rate,
        }
    }
}

/// Interns series keys to dense ids without allocating on the hot path.
#[derive(Debug, Default, Clone)]
pub struct KeyIndex {
    /// Ids by the in-memory hash of their key (no allocation per lookup).
    by_hash: FxHashMap<u64, u32>,
    /// Keys whose 64-bit hash collided with an earlier one (practically never used).
    collided: FxHashMap<SeriesKey, u32>,
    keys: Vec<SeriesKey>,
}

impl KeyIndex {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, id: u32) -> &SeriesKey {
        &self.keys[id as usize]
    }

    pub fn keys(&self) -> &[SeriesKey] {
        &self.keys
    }

    /// The id of a key, if known.
    pub fn get(&self, key: SeriesKeyRef<'_>) -> Option<u32> {
        let h = FxBuildHasher.hash_one(key);
        let id = *self.by_hash.get(&h)?;
        if self.keys[id as usize].as_ref() == key {
            return Some(id);
        }
        self.collided.get(&key.to_owned_key()).copied()
    }

    /// The id of a key, added if new. The bool says whether it was new.
    pub fn intern(&mut self, key: SeriesKeyRef<'_>) -> (u32, bool) {
        let h = FxBuildHasher.hash_one(key);
        match self.by_hash.get(&h) {
            Some(&id) if self.keys[id as usize].as_ref() == key => (id, false),
            Some(_) => {
                let owned = key.to_owned_key();
                if let Some(&id) = self.collided.get(&owned) {
                    return (id, false);
                }
                let id = self.keys.len() as u32;
                self.collided.insert(owned.clone(), id);
                self.keys.push(owned);
                (id, true)
            }
            None => {
                let id = self.keys.len() as u32;
                self.by_hash.insert(h, id);
                self.keys.push(key.to_owned_key());
                (id, true)
            }
        }
    }
}

/// Per-(key, minute) aggregation of records. Keys get dense ids ([`KeyIndex`]); minutes are
/// kept per key in time order until drained.
#[derive(Debug, Clone)]
pub struct MinuteAggregator {
    selection: Selection,
    index: KeyIndex,
    minutes: Vec<BTreeMap<i64, MinuteAggregate>>,
    stats: ObserveStats,
}

impl MinuteAggregator {
    pub fn new(config: &InsightsConfig) -> Self {
        MinuteAggregator {
            selection: Selection::from_config(config),
            index: KeyIndex::default(),
            minutes: Vec::new(),
            stats: ObserveStats::default(),
        }
    }

    pub fn stats(&self) -> ObserveStats {
        self.stats
    }

    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    /// Counts one record into its series (zero, one or two: call rate and error rate).
    /// Returns the number of series incremented; a skip is counted in [`Self::stats`].
    pub fn observe(&mut self, record: &Record<'_>) -> usize {
        self.stats.records += 1;
        match self.observe_inner(record) {
            Ok(n) => {
                self.stats.counted += n as u64;
                n
            }
            Err(why) => {
                self.stats.skip(why);
                0
            }
        }
    }

    fn observe_inner(&mut self, record: &Record<'_>) -> Result<usize, Skip> {
        let f = &record.fields;
        let (rate_on, error_on) = match record.category() {
            EventCategory::Insight => return Err(Skip::InsightRecord),
            EventCategory::Management => (
                self.selection.call_rate_management,
                self.selection.error_rate_management,
            ),
            EventCategory::Data => (
                self.selection.call_rate_data,
                self.selection.error_rate_data,
            ),
            EventCategory::NetworkActivity | EventCategory::Other => {
                return Err(Skip::CategoryNotAnalysed)
            }
        };
        if !rate_on && !error_on {
            return Err(Skip::CategoryNotAnalysed);
        }
        let (Some(event_source), Some(event_name)) =
            (f.event_source.as_deref(), f.event_name.as_deref())
        else {
            return Err(Skip::MissingApi);
        };
        let is_data = record.category() == EventCategory::Data;
        let error_code = f.error_code.as_deref().filter(|c| !c.is_empty());
        let counts_rate =
            rate_on && (is_data || self.selection.read_in_call_rate || f.read_only == Some(false));
        let counts_error = error_on && error_code.is_some();
        if rate_on && (is_data || f.read_only == Some(false)) {
            self.stats.analysed_call_rate += 1;
        }
        if error_on {
            self.stats.analysed_error_rate += 1;
        }
        if !counts_rate && !counts_error {
            return Err(Skip::NoSeries);
        }
        let ms = record.event_time_ms().map_err(|_| Skip::BadEventTime)?;
        let minute = ms.div_euclid(MS_PER_MINUTE);
        let account = f
            .recipient_account_id
            .as_deref()
            .or_else(|| f.user_identity.as_ref()?.account_id.as_deref())
            .unwrap_or("unknown");
        let region = f.aws_region.as_deref().unwrap_or("unknown");
        let attrs = EventAttributes {
            principal: principal_of(record),
            user_agent: f.user_agent.as_deref().unwrap_or("unknown"),
            error_code: error_code.unwrap_or(SUCCESS_ERROR_CODE),
        };
        let mut key = SeriesKeyRef {
            account,
            region,
            event_source,
            event_name,
            insight_type: InsightType::ApiCallRateInsight,
            error_code: None,
        };
        let mut n = 0;
        if counts_rate {
            self.add(key, minute, &attrs);
            n += 1;
        }
        if counts_error {
            key.insight_type = InsightType::ApiErrorRateInsight;
            key.error_code = error_code;
            self.add(key, minute, &attrs);
            n += 1;
        }
        Ok(n)
    }

    #[inline]
    fn add(&mut self, key: SeriesKeyRef<'_>, minute: i64, attrs: &EventAttributes<'_>) {
        let (id, new) = self.index.intern(key);
        if new {
            self.minutes.push(BTreeMap::new());
        }
        self.minutes[id as usize]
            .entry(minute)
            .or_default()
            .add(attrs);
    }

    /// Adds a cell (e.g. read back from the minute table, or from another aggregator).
    pub fn add_cell(&mut self, cell: &MinuteCell) {
        let (id, new) = self.index.intern(cell.key.as_ref());
        if new {
            self.minutes.push(BTreeMap::new());
        }
        self.minutes[id as usize]
            .entry(cell.minute)
            .or_default()
            .merge(&cell.aggregate);
    }

    /// Merges another aggregator into this one.
    pub fn merge(&mut self, other: &MinuteAggregator) {
        for cell in other.cells() {
            self.add_cell(&cell);
        }
    }

    /// All cells, by key id then minute.
    pub fn cells(&self) -> impl Iterator<Item = MinuteCell> + '_ {
        self.minutes.iter().enumerate().flat_map(move |(id, m)| {
            let key = self.index.key(id as u32);
            m.iter().map(move |(&minute, aggregate)| MinuteCell {
                key: key.clone(),
                minute,
                aggregate: aggregate.clone(),
            })
        })
    }

    /// Number of (key, minute) cells held.
    pub fn cell_count(&self) -> usize {
        self.minutes.iter().map(BTreeMap::len).sum()
    }

    /// Count for one key and minute (0 if none).
    pub fn count(&self, key: &SeriesKey, minute: i64) -> u64 {
        self.index
            .get(key.as_ref())
            .and_then(|id| self.minutes[id as usize].get(&minute))
            .map_or(0, |a| a.count)
    }

    /// Removes and returns the minutes `≤ through` of key `id`, oldest first.
    pub(crate) fn drain_key_through(
        &mut self,
        id: u32,
        through: i64,
    ) -> Vec<(i64, MinuteAggregate)> {
        let Some(map) = self.minutes.get_mut(id as usize) else {
            return Vec::new();
        };
        match map.first_key_value() {
            Some((&first, _)) if first <= through => {}
            _ => return Vec::new(),
        }
        let later = map.split_off(&(through.saturating_add(1)));
        std::mem::replace(map, later).into_iter().collect()
    }

    /// The earliest minute held for key `id`.
    pub(crate) fn first_minute(&self, id: u32) -> Option<i64> {
        self.minutes
            .get(id as usize)?
            .first_key_value()
            .map(|(&m, _)| m)
    }

    /// The latest minute held for key `id`.
    pub(crate) fn last_minute(&self, id: u32) -> Option<i64> {
        self.minutes
            .get(id as usize)?
            .last_key_value()
            .map(|(&m, _)| m)
    }

    pub(crate) fn intern(&mut self, key: &SeriesKey) -> u32 {
        let (id, new) = self.index.intern(key.as_ref());
        if new {
            self.minutes.push(BTreeMap::new());
        }
        id
    }
}

/// The principal attributed to a call: ARN, else the invoking service, else the identity type.
fn principal_of<'r>(record: &'r Record<'_>) -> &'r str {
    let Some(identity) = record.fields.user_identity.as_ref() else {
        return "unknown";
    };
    identity
        .arn
        .as_deref()
        .or(identity.invoked_by.as_deref())
        .or(identity.identity_type.as_deref())
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, read_only: bool, error: Option<&str>, time: &str) -> String {
        let err = error.map_or(String::new(), |e| format!(r#","errorCode":"{e}""#));
        format!(
            r#"{{"eventVersion":"1.09","eventTime":"{time}","eventSource":"iam.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","readOnly":{read_only},"eventCategory":"Management","managementEvent":true,"recipientAccountId":"111122223333","userAgent":"aws-cli/2","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice"}}{err}}}"#
        )
    }

    #[test]
    fn writes_count_for_call_rate_and_errors_for_error_rate() {
        let mut agg = MinuteAggregator::new(&InsightsConfig::default());
        let texts = [
            rec("CreateUser", false, None, "2024-03-06T10:00:05Z"),
            rec(
                "CreateUser",
                false,
                Some("AccessDenied"),
                "2024-03-06T10:00:59Z",
            ),
            rec("GetUser", true, None, "2024-03-06T10:01:00Z"),
            rec(
                "GetUser",
                true,
                Some("NoSuchEntity"),
                "2024-03-06T10:01:00Z",
            ),
        ];
        for t in &texts {
            agg.observe(&Record::parse(t).unwrap());
        }
        let keys = agg.index().keys().to_vec();
        assert_eq!(keys.len(), 3, "{keys:?}");
        let minute = 1_709_719_200_000 / MS_PER_MINUTE;
        assert_eq!(agg.count(&keys[0], minute), 2);
        assert_eq!(keys[1].error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(agg.count(&keys[1], minute), 1);
        assert_eq!(keys[2].event_name, "GetUser");
        assert_eq!(agg.count(&keys[2], minute + 1), 1);
        let s = agg.stats();
        assert_eq!((s.records, s.counted, s.no_series), (4, 4, 1));
        let cell = agg.cells().next().unwrap();
        let top = cell.aggregate.error_code.top(5);
        assert_eq!(top.len(), 2);
        assert!(top.iter().any(|e| e.value == SUCCESS_ERROR_CODE));
    }

    #[test]
    fn insight_and_broken_records_are_skipped_and_counted() {
        let mut agg = MinuteAggregator::new(&InsightsConfig::default());
        let insight = r#"{"eventVersion":"1.08","eventTime":"2024-07-10T01:42:00Z","eventType":"AwsCloudTrailInsight","eventCategory":"Insight","insightDetails":{}}"#;
        let bad_time = rec("CreateUser", false, None, "yesterday");
        let no_api = r#"{"eventTime":"2024-07-10T01:42:00Z","readOnly":false}"#;
        for t in [insight, bad_time.as_str(), no_api] {
            assert_eq!(agg.observe(&Record::parse(t).unwrap()), 0);
        }
        let s = agg.stats();
        assert_eq!(
            (s.insight_records, s.bad_event_time, s.missing_api),
            (1, 1, 1)
        );
        assert_eq!(agg.cell_count(), 0);
    }

    #[test]
    fn aggregates_merge_and_round_trip_through_json() {
        let mut a = MinuteAggregator::new(&InsightsConfig::default());
        let mut b = MinuteAggregator::new(&InsightsConfig::default());
        let t = rec("CreateUser", false, None, "2024-03-06T10:00:05Z");
        a.observe(&Record::parse(&t).unwrap());
        b.observe(&Record::parse(&t).unwrap());
        a.merge(&b);
        let cells: Vec<MinuteCell> = a.cells().collect();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].aggregate.count, 2);
        let json = serde_json::to_string(&cells).unwrap();
        let back: Vec<MinuteCell> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cells);
    }
}
