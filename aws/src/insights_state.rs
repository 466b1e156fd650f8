//! The Insights state in DynamoDB (the stack's state table, string keys `pk`/`sk`, TTL
//! attribute `expiresAt`), as the [`CellStore`] and [`EvaluationStore`] ports. See
//! `trailwatch::insights::store` for the protocol; this file maps it onto items:
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | clock + lease | `insights#clock` | `clock` | `closedThrough`, `closingThrough`, `originMinute` (N, minutes since the epoch), `openKeys` (S, JSON), `leaseOwner` (S), `leaseUntil` (N, ms) |
//! | cells | `insights#cells#<hour>` | `<readMinute:010>#<batchId>#<part:04>#<chunk:04>` | `cells` (S, JSON `[MinuteCell]`), `expiresAt` |
//! | batch marker | `insights#batch#<batchId>` | `<part:04>` | `expiresAt` |
//! | key state | `insights#key#<series key>` | `state` | `key` (S, JSON), `through` (N), `state` (B, ≤ 2 KB), `attributions` (B, gzip of JSON), `expiresAt` |
//!
//! Counting writes a part as one `TransactWriteItems`: the marker (`attribute_not_exists`), a
//! `ConditionCheck` that the clock's fence is below the part's first read minute, and the cell
//! items. A failed marker check means the part was counted; a failed fence check re-plans the
//!
//! Long by design: lease, clock, key items and snapshot share conditional writes that must be read together.
//! fenced cells as late and tries again. Cells are partitioned by hour so one `Query` reads a
//! run of minutes; reads of cells, keys and the clock are strongly consistent.
//!
//! Attributions are gzipped: the Space-Saving sketches of a key's recent minutes and daily
//! rollups repeat the same ARNs and user agents, so a busy key's 83 KB of JSON (40 principals,
//! 20 user agents, 9 days) is stored in 1.8 KB — two write units per save instead of 82.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use tokio::task::JoinSet;
use trailwatch::insights::store::{
    cell_items, late_cells, BatchPart, CellItem, CellStore, Clock, EvaluationStore, PartOutcome,
    StoreError, StoredCell, StoredKey,
};
use trailwatch::insights::{KeyAttributions, MinuteCell, SeriesKey};
use trailwatch::retry::RetryPolicy;

use crate::describe;

/// Cells and batch markers are kept 9 days: the 8 days of baseline plus one, longer than a
/// batch can be redelivered or an evaluator can lag.
pub const CELL_TTL: Duration = Duration::from_secs(9 * 24 * 3600);
/// A key's state is dropped after 35 idle days (it would then start again as a new API; its
/// baseline only covers 8 days anyway).
pub const KEY_TTL: Duration = Duration::from_secs(35 * 24 * 3600);
/// DynamoDB: `BatchGetItem` reads at most 100 keys per call.
pub const BATCH_GET_MAX_KEYS: usize = 100;
/// Key-state `PutItem`s in flight at once.
pub const PUT_CONCURRENCY: usize = 16;
/// Attempts at a part's transaction (fence moved, transaction conflicts).
pub const PART_ATTEMPTS: u32 = 5;
/// Attempts at reading keys DynamoDB left unprocessed.
pub const BATCH_GET_ATTEMPTS: u32 = 6;
/// Pauses between BatchGetItem calls for keys left unprocessed: full jitter, 100 ms doubling.
const UNPROCESSED_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: BATCH_GET_ATTEMPTS,
    base: Duration::from_millis(50),
    cap: Duration::from_secs(2),
};

const CLOCK_PK: &str = "insights#clock";
const CLOCK_SK: &str = "clock";

/// DynamoDB calls made, by operation (for logs and the cost figures).
#[derive(Debug, Default)]
pub struct StoreCalls {
    pub transact_write_items: AtomicU64,
    pub get_item: AtomicU64,
    pub update_item: AtomicU64,
    pub put_item: AtomicU64,
    pub query: AtomicU64,
    pub batch_get_item: AtomicU64,
}

impl StoreCalls {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(operation, calls)` for every operation used so far.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("TransactWriteItems", &self.transact_write_items),
            ("GetItem", &self.get_item),
            ("UpdateItem", &self.update_item),
            ("PutItem", &self.put_item),
            ("Query", &self.query),
            ("BatchGetItem", &self.batch_get_item),
        ]
        .into_iter()
        .map(|(name, c)| (name, c.load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().iter().map(|(_, n)| n).sum()
    }
}

pub struct DynamoDbInsightsStore {
    client: Client,
    table: Arc<str>,
    pub calls: Arc<StoreCalls>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn expires_at(ttl: Duration) -> AttributeValue {
    let secs = SystemTime::now()
        .checked_add(ttl)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    AttributeValue::N(secs.to_string())
}

fn store_error<E>(operation: &'static str, e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Call {
        operation,
        message: describe(&e),
        source: Box::new(e),
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn corrupt(operation: &'static str, what: String) -> StoreError {
    StoreError::Corrupt {
        operation,
        what,
        source: None,
    }
}

fn corrupt_by<E>(operation: &'static str, what: String, e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Corrupt {
        operation,
        what,
        source: Some(Box::new(e)),
    }
}

fn key_pk(key: &SeriesKey) -> String {
    format!("insights#key#{key}")
}

fn cells_pk(hour: i64) -> String {
    format!("insights#cells#{hour}")
}

fn minute_prefix(minute: i64) -> String {
    format!("{minute:010}#")
}

/// Whether a conditional write failed its condition (a lost race, not a fault).
pub(crate) fn is_condition_failed<E>(
    e: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .is_some_and(|s| s.code() == Some("ConditionalCheckFailedException"))
}

impl DynamoDbInsightsStore {
    pub fn new(client: Client, table: String) -> Self {
        DynamoDbInsightsStore {
            client,
            table: table.into(),
            calls: Arc::default(),
        }
    }

    fn clock_key(&self) -> [(String, AttributeValue); 2] {
        [("pk".into(), s(CLOCK_PK)), ("sk".into(), s(CLOCK_SK))]
    }

    async fn read_clock(&self) -> Result<(Clock, Option<String>), StoreError> {
        StoreCalls::add(&self.calls.get_item);
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(self.clock_key().into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem clock", e))?;
        match out.item() {
            Some(item) => Ok((
                clock_of(item, "GetItem clock")?,
                text(item, "leaseOwner").map(str::to_owned),
            )),
            None => Ok((Clock::default(), None)),
        }
    }

    fn cell_put(&self, batch_id: &str, part: u32, item: &CellItem) -> Result<Put, StoreError> {
        let cells = serde_json::to_string(&item.cells)
            .map_err(|e| corrupt_by("TransactWriteItems", "cells".into(), e))?;
        Put::builder()
            .table_name(&*self.table)
            .item("pk", s(cells_pk(item.read_minute.div_euclid(60))))
            .item(
                "sk",
                s(format!(
                    "{}{batch_id}#{part:04}#{:04}",
                    minute_prefix(item.read_minute),
                    item.chunk
                )),
            )
            .item("cells", s(cells))
            .item("expiresAt", expires_at(CELL_TTL))
            .build()
            .map_err(|e| store_error("TransactWriteItems", e))
    }

    /// One attempt at writing a part against fence `closing`.
    async fn try_part(
        &self,
        batch_id: &str,
        part: &BatchPart,
        closing: Option<i64>,
    ) -> Result<Attempt, StoreError> {
        let items = cell_items(part, closing);
        let Some(first_read) = items.iter().map(|i| i.read_minute).min() else {
            return Ok(Attempt::Done(PartOutcome::Written { late_cells: 0 }));
        };
        let marker = Put::builder()
            .table_name(&*self.table)
            .item("pk", s(format!("insights#batch#{batch_id}")))
            .item("sk", s(format!("{:04}", part.index)))
            .item("expiresAt", expires_at(CELL_TTL))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| store_error("TransactWriteItems", e))?;
        let fence = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(self.clock_key().into_iter().collect()))
            .condition_expression("attribute_not_exists(closingThrough) OR closingThrough < :first")
            .expression_attribute_values(":first", n(first_read))
            .build()
            .map_err(|e| store_error("TransactWriteItems", e))?;
        let mut writes = vec![
            TransactWriteItem::builder().put(marker).build(),
            TransactWriteItem::builder().condition_check(fence).build(),
        ];
        for item in &items {
            writes.push(
                TransactWriteItem::builder()
                    .put(self.cell_put(batch_id, part.index, item)?)
                    .build(),
            );
        }
        StoreCalls::add(&self.calls.transact_write_items);
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(Attempt::Done(PartOutcome::Written {
                late_cells: late_cells(part, closing),
            })),
            Err(e) => {
                let reasons: Vec<String> = match e.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_owned())
                        .collect(),
                    _ => return Err(store_error("TransactWriteItems", e)),
                };
                let code = |i: usize| reasons.get(i).map_or("None", String::as_str);
                if code(0) == "ConditionalCheckFailed" {
                    Ok(Attempt::Done(PartOutcome::AlreadyCounted))
                } else if code(1) == "ConditionalCheckFailed"
                    || reasons.iter().any(|r| r == "TransactionConflict")
                {
                    Ok(Attempt::Again(format!("cancelled: {reasons:?}")))
                } else {
                    Err(StoreError::Call {
                        operation: "TransactWriteItems",
                        message: format!("cancelled: {reasons:?}: {}", describe(&e)),
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    async fn update_clock_as_owner(
        &self,
        owner: &str,
        operation: &'static str,
        update: &str,
        extra_condition: &str,
        values: Vec<(&str, AttributeValue)>,
        remove_ok: bool,
    ) -> Result<bool, StoreError> {
        StoreCalls::add(&self.calls.update_item);
        let mut request = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(self.clock_key().into_iter().collect()))
            .update_expression(update)
            .condition_expression(format!("leaseOwner = :me{extra_condition}"))
            .expression_attribute_values(":me", s(owner));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) && remove_ok => Ok(false),
            Err(e) if is_condition_failed(&e) => Err(StoreError::LeaseLost {
                operation,
                owner: owner.to_owned(),
            }),
            Err(e) => Err(store_error(operation, e)),
        }
    }

    async fn put_key(&self, key: &SeriesKey, stored: &StoredKey) -> Result<(), StoreError> {
        let attributions = gzip_json(&stored.attributions)
            .map_err(|e| corrupt_by("PutItem key", format!("attributions of {key}"), e))?;
        StoreCalls::add(&self.calls.put_item);
        self.client
            .put_item()
            .table_name(&*self.table)
            .item("pk", s(key_pk(key)))
            .item("sk", s("state"))
            .item("key", s(serde_json::to_string(key).unwrap_or_default()))
            .item("through", n(stored.through))
            .item(
                "state",
                AttributeValue::B(aws_smithy_types::Blob::new(stored.state.clone())),
            )
            .item(
                "attributions",
                AttributeValue::B(aws_smithy_types::Blob::new(attributions)),
            )
            .item("expiresAt", expires_at(KEY_TTL))
            .send()
            .await
            .map_err(|e| store_error("PutItem key", e))?;
        Ok(())
    }
}

fn clock_of(
    item: &HashMap<String, AttributeValue>,
    operation: &'static str,
) -> Result<Clock, StoreError> {
    let open_keys = match text(item, "openKeys") {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| corrupt_by(operation, "openKeys".into(), e))?
        }
        None => Vec::new(),
    };
    Ok(Clock {
        closed_through: number(item, "closedThrough"),
        closing_through: number(item, "closingThrough"),
        origin_minute: number(item, "originMinute"),
        open_keys,
    })
}

fn gzip_json<T: serde::Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut gz, value)?;
    gz.finish()
}

enum Attempt {
    Done(PartOutcome),
    Again(String),
}

fn decode_key(
    item: &HashMap<String, AttributeValue>,
) -> Result<(SeriesKey, StoredKey), StoreError> {
    const OPERATION: &str = "BatchGetItem keys";
    let pk = text(item, "pk").unwrap_or("?");
    let missing = |name: &str| corrupt(OPERATION, format!("key item {pk}: no {name}"));
    let key: SeriesKey = serde_json::from_str(text(item, "key").ok_or_else(|| missing("key"))?)
        .map_err(|e| corrupt_by(OPERATION, format!("key item {pk}: key"), e))?;
    let state = item
        .get("state")
        .and_then(|v| v.as_b().ok())
        .ok_or_else(|| missing("state"))?
        .as_ref()
        .to_vec();
    let attributions: KeyAttributions = match item.get("attributions").map(|v| v.as_b()) {
        Some(Ok(bytes)) => serde_json::from_reader(flate2::read::GzDecoder::new(bytes.as_ref()))
            .map_err(|e| corrupt_by(OPERATION, format!("key item {pk}: attributions"), e))?,
        _ => KeyAttributions::default(),
    };
    Ok((
        key,
        StoredKey {
            through: number(item, "through").ok_or_else(|| missing("through"))?,
            state,
            attributions,
        },
    ))
}

impl CellStore for DynamoDbInsightsStore {
    async fn put_part(&self, batch_id: &str, part: &BatchPart) -> Result<PartOutcome, StoreError> {
        // First attempt without reading the clock: cells are almost always on time.
        let mut closing = None;
        let mut last = String::new();
        for attempt in 0..PART_ATTEMPTS {
            if attempt > 0 {
                closing = self.read_clock().await?.0.closing_through;
            }
            match self.try_part(batch_id, part, closing).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Again(why) => last = why,
            }
        }
        Err(StoreError::GaveUp {
            operation: "TransactWriteItems",
            what: format!(
                "part {} of batch {batch_id} not written ({last})",
                part.index
            ),
            attempts: PART_ATTEMPTS,
        })
    }
}

impl EvaluationStore for DynamoDbInsightsStore {
    async fn acquire_lease(
        &self,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Clock>, StoreError> {
        StoreCalls::add(&self.calls.update_item);
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(self.clock_key().into_iter().collect()))
            .update_expression("SET leaseOwner = :me, leaseUntil = :until")
            .condition_expression(
                "attribute_not_exists(leaseUntil) OR leaseUntil < :now OR leaseOwner = :me",
            )
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":until", n(now_ms + ttl_ms))
            .expression_attribute_values(":now", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes() {
                Some(item) => clock_of(item, "UpdateItem lease").map(Some),
                None => Ok(Some(Clock::default())),
            },
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(store_error("UpdateItem lease", e)),
        }
    }

    async fn release_lease(&self, owner: &str) -> Result<(), StoreError> {
        self.update_clock_as_owner(
            owner,
            "UpdateItem lease",
            "REMOVE leaseOwner, leaseUntil",
            "",
            Vec::new(),
            true,
        )
        .await
        .map(|_| ())
    }

    async fn load_clock(&self) -> Result<Clock, StoreError> {
        Ok(self.read_clock().await?.0)
    }

    async fn fence(&self, owner: &str, through: i64) -> Result<(), StoreError> {
        let raised = self
            .update_clock_as_owner(
                owner,
                "UpdateItem fence",
                "SET closingThrough = :t",
                " AND (attribute_not_exists(closingThrough) OR closingThrough < :t)",
                vec![(":t", n(through))],
                true,
            )
            .await?;
        if raised {
            return Ok(());
        }
        // Either the fence is already at or past `through` (fine) or the lease is gone.
        match self.read_clock().await? {
            (clock, Some(o)) if o == owner && clock.closing_through >= Some(through) => Ok(()),
            _ => Err(StoreError::LeaseLost {
                operation: "UpdateItem fence",
                owner: owner.to_owned(),
            }),
        }
    }

    async fn read_cells(&self, after: i64, through: i64) -> Result<Vec<StoredCell>, StoreError> {
        let mut out = Vec::new();
        let first = after + 1;
        for hour in first.div_euclid(60)..=through.div_euclid(60) {
            let lo = first.max(hour * 60);
            let hi = through.min(hour * 60 + 59);
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                StoreCalls::add(&self.calls.query);
                let page = self
                    .client
                    .query()
                    .table_name(&*self.table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":pk", s(cells_pk(hour)))
                    .expression_attribute_values(":lo", s(minute_prefix(lo)))
                    .expression_attribute_values(":hi", s(format!("{hi:010}#~")))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| store_error("Query cells", e))?;
                for item in page.items() {
                    let sk = text(item, "sk").unwrap_or("");
                    let read_minute: i64 = sk
                        .split('#')
                        .next()
                        .and_then(|m| m.parse().ok())
                        .ok_or_else(|| corrupt("Query cells", format!("cell item sk {sk}")))?;
                    let cells: Vec<MinuteCell> =
                        serde_json::from_str(text(item, "cells").unwrap_or("[]"))
                            .map_err(|e| corrupt_by("Query cells", format!("cell item {sk}"), e))?;
                    out.extend(
                        cells
                            .into_iter()
                            .map(|cell| StoredCell { read_minute, cell }),
                    );
                }
                match page.last_evaluated_key() {
                    Some(k) if !k.is_empty() => start = Some(k.clone()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn load_keys(
        &self,
        keys: &[SeriesKey],
    ) -> Result<Vec<(SeriesKey, StoredKey)>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for key in chunk {
                request = request.keys(HashMap::from([
                    ("pk".to_owned(), s(key_pk(key))),
                    ("sk".to_owned(), s("state")),
                ]));
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| store_error("BatchGetItem keys", e))?,
            );
            let mut attempt = 0;
            while let Some(wanted) = pending.take() {
                attempt += 1;
                StoreCalls::add(&self.calls.batch_get_item);
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&*self.table, wanted)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem keys", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&*self.table))
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    found.push(decode_key(item)?);
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&*self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    if attempt >= BATCH_GET_ATTEMPTS {
                        return Err(StoreError::GaveUp {
                            operation: "BatchGetItem keys",
                            what: "keys still unprocessed".into(),
                            attempts: attempt,
                        });
                    }
                    tokio::time::sleep(UNPROCESSED_RETRY.delay(attempt)).await;
                }
            }
        }
        Ok(found)
    }

    async fn save_keys(&self, keys: &[(SeriesKey, StoredKey)]) -> Result<(), StoreError> {
        let store = Arc::new(DynamoDbInsightsStore {
            client: self.client.clone(),
            table: self.table.clone(),
            calls: self.calls.clone(),
        });
        let mut tasks = JoinSet::new();
        let mut queue = keys.iter().cloned();
        let mut first_error = None;
        loop {
            while tasks.len() < PUT_CONCURRENCY {
                let Some((key, stored)) = queue.next() else {
                    break;
                };
                let store = store.clone();
                tasks.spawn(async move { store.put_key(&key, &stored).await });
            }
            match tasks.join_next().await {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(store_error("PutItem key", e));
                }
                None => break,
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn save_clock_and_release(&self, owner: &str, clock: &Clock) -> Result<(), StoreError> {
        let open_keys = serde_json::to_string(&clock.open_keys)
            .map_err(|e| corrupt_by("UpdateItem clock", "openKeys".into(), e))?;
        let mut values = vec![
            (":closed", n(clock.closed_through.unwrap_or(i64::MIN))),
            (":open", s(open_keys)),
        ];
        let update = match clock.origin_minute {
            Some(origin) => {
                values.push((":origin", n(origin)));
                "SET closedThrough = :closed, openKeys = :open, originMinute = :origin \
                 REMOVE leaseOwner, leaseUntil"
            }
            None => {
                "SET closedThrough = :closed, openKeys = :open \
                 REMOVE originMinute, leaseOwner, leaseUntil"
            }
        };
        self.update_clock_as_owner(owner, "UpdateItem clock", update, "", values, false)
            .await
            .map(|_| ())
    }
}
