//! The Insights state port: where counted cells, per-key detector state and the evaluation
//! clock live between Lambda invocations (DynamoDB in AWS, [`MemoryStore`] in tests).
//!
//! The protocol, whatever the backend:
//!
//! * **Counting** writes each log batch's cells once. A batch is identified by a deterministic
//!   id ([`batch_id`]: a hash of its CloudWatch Logs event ids), split into parts
//!   ([`batch_parts`]) and every part is written atomically with a marker
//!   (`batch#<id>` / part): a redelivered batch finds its markers and is not counted again, and
//!   concurrent batches write disjoint items, so counts add up.
//! * **Read minutes.** A cell is stored under the minute the evaluator reads it at. On time,
//!   that is its own minute; if the evaluator has already *fenced* that minute
//!   ([`Clock::closing_through`]) the cell is stored under `closing_through + 1` and the
//!   engine then sees it as late data (baseline only). The part's write is conditioned on the
//!   fence it was planned against, so no cell is written under a minute already read.
//! * **Evaluation** takes a lease, fences the minutes it will close, reads their cells, loads
//!   the state of the keys they touch plus the keys with an open Insight, runs the engine,
//!   and — after forwarding succeeded — saves each key's state with the minute it is valid
//!   through, then the clock (which also gives the lease back). A crash between the two saves is harmless: cells at or before a
//!   key's saved minute are skipped when that key is loaded again.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::aggregate::MinuteCell;
use super::engine::KeyAttributions;
use super::key::{SeriesKey, StableHasher};

/// DynamoDB: an item is at most 400 KB; cell items are cut well below it (attribute names and
/// keys count too).
pub const CELL_ITEM_MAX_BYTES: usize = 300 * 1024;
/// DynamoDB: a transaction holds at most 100 items (and 4 MB). A part writes its marker, a
/// condition check on the clock and at most this many cell items.
pub const PART_MAX_CELL_ITEMS: usize = 90;
/// Cell bytes per part: three items' worth, so that re-planning late cells into one read
/// minute still fits [`PART_MAX_CELL_ITEMS`] and the 4 MB transaction limit.
pub const PART_MAX_BYTES: usize = 3 * CELL_ITEM_MAX_BYTES;
/// Distinct minutes per part (each on-time minute is at least one item).
pub const PART_MAX_MINUTES: usize = PART_MAX_CELL_ITEMS - 4;

/// The evaluation clock, persisted in one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clock {
    /// Last minute whose evaluation was saved.
    pub closed_through: Option<i64>,
    /// Last minute an evaluator has started to read: later cells for it are stored as late.
    pub closing_through: Option<i64>,
    /// First minute of data (warm-up and baseline days count from its UTC day).
    pub origin_minute: Option<i64>,
    /// Keys with an open Insight: evaluated every minute until they end.
    pub open_keys: Vec<SeriesKey>,
}

/// A cell as read back, with the minute it was stored under.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCell {
    pub read_minute: i64,
    pub cell: MinuteCell,
}

/// What is persisted per key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    /// The state covers every read minute up to and including this one.
    pub through: i64,
    /// [`super::KeyState`] in its binary form.
    pub state: Vec<u8>,
    pub attributions: KeyAttributions,
}

/// A part of a counted batch: the unit written atomically with its marker.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPart {
    pub index: u32,
    pub cells: Vec<MinuteCell>,
}

/// One cell item to write: the cells of one read minute (or a chunk of them).
#[derive(Debug, Clone, PartialEq)]
pub struct CellItem {
    pub read_minute: i64,
    pub chunk: u32,
    pub cells: Vec<MinuteCell>,
}

/// What writing a part did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOutcome {
    /// Written now; `late_cells` of its cells went to the first open minute.
    Written { late_cells: usize },
    /// The marker was there: this part was counted by an earlier delivery.
    AlreadyCounted,
}

/// The cause of a backend failure, kept with its own chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store call failed (after the backend's own retries).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed the call; `message` is the cause chain as text, for logs.
    #[error("{operation}: {message}")]
    Call {
        operation: &'static str,
        message: String,
        #[source]
        source: BoxError,
    },
    /// The evaluation lease is not (or no longer) held by this owner.
    #[error("{operation}: the evaluation lease is not held by {owner}")]
    LeaseLost {
        operation: &'static str,
        owner: String,
    },
    /// An item read back (or about to be written) does not have the expected shape.
    #[error("{operation}: {what}")]
    Corrupt {
        operation: &'static str,
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A conditional write kept conflicting.
    #[error("{operation}: {what} after {attempts} attempts")]
    GaveUp {
        operation: &'static str,
        what: String,
        attempts: u32,
    },
}

/// The counting side of the port.
pub trait CellStore {
    /// Writes a part of batch `batch_id` once (see the module documentation).
    fn put_part(
        &self,
        batch_id: &str,
        part: &BatchPart,
    ) -> impl Future<Output = Result<PartOutcome, StoreError>> + Send;
}

/// The evaluation side of the port.
pub trait EvaluationStore {
    /// Takes the evaluation lease until `now_ms + ttl_ms` if it is free, expired or ours, and
    /// returns the clock read in the same write; `None` if another evaluator holds it.
    fn acquire_lease(
        &self,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<Option<Clock>, StoreError>> + Send;
    /// Gives the lease back (no-op if it is no longer ours).
    fn release_lease(&self, owner: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The clock (consistent read); the default clock if none was saved.
    fn load_clock(&self) -> impl Future<Output = Result<Clock, StoreError>> + Send;
    /// Raises `closing_through` to `through` (lease holder only): from then on counting stores
    /// cells of minutes ≤ `through` as late.
    fn fence(
        &self,
        owner: &str,
        through: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every cell stored under a read minute in `(after, through]` (consistent reads).
    fn read_cells(
        &self,
        after: i64,
        through: i64,
    ) -> impl Future<Output = Result<Vec<StoredCell>, StoreError>> + Send;
    /// The persisted state of those keys that have one.
    fn load_keys(
        &self,
        keys: &[SeriesKey],
    ) -> impl Future<Output = Result<Vec<(SeriesKey, StoredKey)>, StoreError>> + Send;
    fn save_keys(
        &self,
        keys: &[(SeriesKey, StoredKey)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Saves `closed_through`, `origin_minute` and `open_keys` and gives the lease back, in one
    /// write (lease holder only; the fence is left as it is).
    fn save_clock_and_release(
        &self,
        owner: &str,
        clock: &Clock,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The id of a CloudWatch Logs subscription batch: 128 bits of hash over the log group, the
/// stream and every event id (CloudWatch Logs ids are unique, and a redelivery carries the
/// same ones), as 32 hex digits.
pub fn batch_id<'a>(
    log_group: &str,
    log_stream: &str,
    event_ids: impl Iterator<Item = &'a str> + Clone,
) -> String {
    let hash = |seed| {
        let mut h = StableHasher::with_seed(seed);
        h.write_str(log_group);
        h.write_str(log_stream);
        for id in event_ids.clone() {
            h.write_str(id);
        }
        h.finish()
    };
    format!("{:016x}{:016x}", hash(1), hash(2))
}

fn cell_bytes(cell: &MinuteCell) -> usize {
    serde_json::to_string(cell).map_or(0, |s| s.len())
}

/// Splits a batch's cells into parts, deterministically (sorted by minute and key), so a
/// redelivery produces the same parts.
pub fn batch_parts(mut cells: Vec<MinuteCell>) -> Vec<BatchPart> {
    cells.sort_by(|a, b| (a.minute, &a.key).cmp(&(b.minute, &b.key)));
    let mut parts = Vec::new();
    let mut current: Vec<MinuteCell> = Vec::new();
    let (mut bytes, mut minutes) = (0, 0);
    for cell in cells {
        let size = cell_bytes(&cell);
        let new_minute = current.last().is_none_or(|c| c.minute != cell.minute);
        if !current.is_empty()
            && (bytes + size > PART_MAX_BYTES || (new_minute && minutes == PART_MAX_MINUTES))
        {
            parts.push(BatchPart {
                index: parts.len() as u32,
                cells: std::mem::take(&mut current),
            });
            (bytes, minutes) = (0, 0);
        }
        if current.last().is_none_or(|c| c.minute != cell.minute) {
            minutes += 1;
        }
        bytes += size;
        current.push(cell);
    }
    if !current.is_empty() {
        parts.push(BatchPart {
            index: parts.len() as u32,
            cells: current,
        });
    }
    parts
}

/// The items of a part given the fence: cells of fenced minutes go to `closing + 1`, the
/// others to their own minute; each read minute is chunked below [`CELL_ITEM_MAX_BYTES`].
pub fn cell_items(part: &BatchPart, closing_through: Option<i64>) -> Vec<CellItem> {
    let mut by_minute: BTreeMap<i64, Vec<MinuteCell>> = BTreeMap::new();
    for cell in &part.cells {
        let read_minute = match closing_through {
            Some(c) if cell.minute <= c => c + 1,
            _ => cell.minute,
        };
        by_minute.entry(read_minute).or_default().push(cell.clone());
    }
    let mut items = Vec::new();
    for (read_minute, cells) in by_minute {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut n = 0;
        for cell in cells {
            let size = cell_bytes(&cell);
            if !chunk.is_empty() && bytes + size > CELL_ITEM_MAX_BYTES {
                items.push(CellItem {
                    read_minute,
                    chunk: n,
                    cells: std::mem::take(&mut chunk),
                });
                n += 1;
                bytes = 0;
            }
            bytes += size;
            chunk.push(cell);
        }
        items.push(CellItem {
            read_minute,
            chunk: n,
            cells: chunk,
        });
    }
    items
}

/// Number of cells of a part stored as late under this fence.
pub fn late_cells(part: &BatchPart, closing_through: Option<i64>) -> usize {
    closing_through.map_or(0, |c| part.cells.iter().filter(|x| x.minute <= c).count())
}

mod memory;
mod snapshot;

pub use memory::MemoryStore;
pub use snapshot::{load_snapshot, snapshot, Snapshot, SnapshotError, SnapshotKey};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::key::InsightType;
    use crate::insights::MinuteAggregate;
    use std::task::{Context, Poll, Waker};

    /// The memory store's futures are ready at once.
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("memory store futures are ready at once"),
        }
    }

    fn cell(name: &str, minute: i64, count: u64) -> MinuteCell {
        MinuteCell {
            key: SeriesKey {
                account: "111122223333".into(),
                region: "us-east-1".into(),
                event_source: "iam.amazonaws.com".into(),
                event_name: name.into(),
                insight_type: InsightType::ApiCallRateInsight,
                error_code: None,
            },
            minute,
            aggregate: MinuteAggregate {
                count,
                ..MinuteAggregate::default()
            },
        }
    }

    #[test]
    fn batch_id_depends_on_every_event_id_and_on_nothing_else() {
        let a = batch_id("g", "s", ["1", "2"].into_iter());
        assert_eq!(a, batch_id("g", "s", ["1", "2"].into_iter()));
        assert_ne!(a, batch_id("g", "s", ["1", "3"].into_iter()));
        assert_ne!(a, batch_id("g", "s2", ["1", "2"].into_iter()));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn batch_ids_are_pinned_across_versions() {
        // A batch counted before an upgrade and redelivered after it must be recognised.
        let id = batch_id(
            "CloudTrail/trailwatch",
            "111122223333_CloudTrail_us-east-1",
            ["3788", "3789"].into_iter(),
        );
        assert_eq!(id, "5dad083e6a6f3e83a76ba718a9150eed");
    }

    #[test]
    fn parts_are_the_same_whatever_the_order_of_the_cells() {
        let cells = vec![cell("B", 2, 1), cell("A", 1, 1), cell("A", 2, 3)];
        let mut reversed = cells.clone();
        reversed.reverse();
        assert_eq!(batch_parts(cells), batch_parts(reversed));
    }

    #[test]
    fn parts_stay_within_the_transaction_limits() {
        let cells: Vec<MinuteCell> = (0..500).map(|m| cell("A", m, 1)).collect();
        let parts = batch_parts(cells);
        assert_eq!(parts.len(), 500usize.div_ceil(PART_MAX_MINUTES));
        for part in &parts {
            assert!(cell_items(part, None).len() <= PART_MAX_CELL_ITEMS);
        }
        assert_eq!(parts.iter().map(|p| p.cells.len()).sum::<usize>(), 500);
    }

    #[test]
    fn cells_of_fenced_minutes_are_stored_under_the_first_open_minute() {
        let part = BatchPart {
            index: 0,
            cells: vec![cell("A", 8, 1), cell("A", 10, 2), cell("A", 11, 4)],
        };
        let items = cell_items(&part, Some(10));
        let minutes: Vec<(i64, usize)> = items
            .iter()
            .map(|i| (i.read_minute, i.cells.len()))
            .collect();
        assert_eq!(minutes, vec![(11, 3)]);
        assert_eq!(late_cells(&part, Some(10)), 2);
        assert_eq!(cell_items(&part, None).len(), 3);
    }

    #[test]
    fn a_part_is_written_once() {
        let store = MemoryStore::new();
        let part = BatchPart {
            index: 0,
            cells: vec![cell("A", 1, 1)],
        };
        assert_eq!(
            ready(store.put_part("b1", &part)).unwrap(),
            PartOutcome::Written { late_cells: 0 }
        );
        assert_eq!(
            ready(store.put_part("b1", &part)).unwrap(),
            PartOutcome::AlreadyCounted
        );
        assert_eq!(ready(store.read_cells(0, 1)).unwrap().len(), 1);
    }

    #[test]
    fn the_lease_excludes_a_second_evaluator_until_it_expires() {
        let store = MemoryStore::new();
        assert!(ready(store.acquire_lease("a", 1_000, 100))
            .unwrap()
            .is_some());
        assert!(ready(store.acquire_lease("b", 1_050, 100))
            .unwrap()
            .is_none());
        assert!(ready(store.fence("b", 5)).is_err());
        assert!(ready(store.acquire_lease("b", 1_101, 100))
            .unwrap()
            .is_some());
        assert!(ready(store.save_clock_and_release("a", &Clock::default())).is_err());
        ready(store.save_clock_and_release("b", &Clock::default())).unwrap();
        assert!(ready(store.acquire_lease("c", 1_102, 100))
            .unwrap()
            .is_some());
    }
}
