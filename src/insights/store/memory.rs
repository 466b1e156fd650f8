//! The port in memory, with the same semantics as the DynamoDB adapter (for unit tests and the
//! local CLI).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Mutex;

use super::{
    cell_items, late_cells, BatchPart, CellStore, Clock, EvaluationStore, PartOutcome, StoreError,
    StoredCell, StoredKey,
};
use crate::insights::aggregate::MinuteCell;
use crate::insights::key::SeriesKey;

#[derive(Default)]
struct Memory {
    markers: HashSet<(String, u32)>,
    cells: BTreeMap<(i64, String, u32, u32), Vec<MinuteCell>>,
    keys: BTreeMap<SeriesKey, StoredKey>,
    clock: Clock,
    lease: Option<(String, i64)>,
}

/// The port in memory, with the same semantics as the DynamoDB adapter (for unit tests and
/// the local CLI).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Cell items held (for tests).
    pub fn cell_items(&self) -> usize {
        self.with(|m| m.cells.len())
    }

    /// The clock as stored (for tests).
    pub fn clock(&self) -> Clock {
        self.with(|m| m.clock.clone())
    }

    /// Every key state held (for tests and for exporting a backfill).
    pub fn stored_keys(&self) -> Vec<(SeriesKey, StoredKey)> {
        self.with(|m| m.keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

fn lease_is(m: &Memory, owner: &str) -> Result<(), StoreError> {
    match &m.lease {
        Some((o, _)) if o == owner => Ok(()),
        _ => Err(StoreError::LeaseLost {
            operation: "lease",
            owner: owner.to_owned(),
        }),
    }
}

impl CellStore for MemoryStore {
    fn put_part(
        &self,
        batch_id: &str,
        part: &BatchPart,
    ) -> impl Future<Output = Result<PartOutcome, StoreError>> + Send {
        let outcome = self.with(|m| {
            if !m.markers.insert((batch_id.to_owned(), part.index)) {
                return PartOutcome::AlreadyCounted;
            }
            let closing = m.clock.closing_through;
            for item in cell_items(part, closing) {
                m.cells.insert(
                    (
                        item.read_minute,
                        batch_id.to_owned(),
                        part.index,
                        item.chunk,
                    ),
                    item.cells,
                );
            }
            PartOutcome::Written {
                late_cells: late_cells(part, closing),
            }
        });
        std::future::ready(Ok(outcome))
    }
}

impl EvaluationStore for MemoryStore {
    fn acquire_lease(
        &self,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> impl Future<Output = Result<Option<Clock>, StoreError>> + Send {
        let got = self.with(|m| {
            let free = match &m.lease {
                None => true,
                Some((o, until)) => o == owner || *until < now_ms,
            };
            if !free {
                return None;
            }
            m.lease = Some((owner.to_owned(), now_ms + ttl_ms));
            Some(m.clock.clone())
        });
        std::future::ready(Ok(got))
    }

    fn release_lease(&self, owner: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.with(|m| {
            if m.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                m.lease = None;
            }
        });
        std::future::ready(Ok(()))
    }

    fn load_clock(&self) -> impl Future<Output = Result<Clock, StoreError>> + Send {
        std::future::ready(Ok(self.clock()))
    }

    fn fence(
        &self,
        owner: &str,
        through: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.with(|m| {
            lease_is(m, owner)?;
            if m.clock.closing_through.is_none_or(|c| c < through) {
                m.clock.closing_through = Some(through);
            }
            Ok(())
        }))
    }

    fn read_cells(
        &self,
        after: i64,
        through: i64,
    ) -> impl Future<Output = Result<Vec<StoredCell>, StoreError>> + Send {
        let cells = self.with(|m| {
            m.cells
                .range((after + 1, String::new(), 0, 0)..)
                .take_while(|((minute, ..), _)| *minute <= through)
                .flat_map(|((minute, ..), cells)| {
                    cells.iter().map(|cell| StoredCell {
                        read_minute: *minute,
                        cell: cell.clone(),
                    })
                })
                .collect()
        });
        std::future::ready(Ok(cells))
    }

    fn load_keys(
        &self,
        keys: &[SeriesKey],
    ) -> impl Future<Output = Result<Vec<(SeriesKey, StoredKey)>, StoreError>> + Send {
        let found = self.with(|m| {
            keys.iter()
                .filter_map(|k| m.keys.get(k).map(|v| (k.clone(), v.clone())))
                .collect()
        });
        std::future::ready(Ok(found))
    }

    fn save_keys(
        &self,
        keys: &[(SeriesKey, StoredKey)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.with(|m| {
            for (k, v) in keys {
                m.keys.insert(k.clone(), v.clone());
            }
        });
        std::future::ready(Ok(()))
    }

    fn save_clock_and_release(
        &self,
        owner: &str,
        clock: &Clock,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.with(|m| {
            lease_is(m, owner)?;
            m.clock.closed_through = clock.closed_through;
            m.clock.origin_minute = clock.origin_minute;
            m.clock.open_keys = clock.open_keys.clone();
            m.lease = None;
            Ok(())
        }))
    }
}
