//! The delivered-records ledger in DynamoDB (the stack's state table), as a
//! [`DeliveredLedger`]. See `trailwatch::deliver::ledger` for the protocol and its crash
//! windows; this file only maps it onto conditional writes.
//!
//! One item per `(stream, eventID)`: `pk = "dedup#<stream>#<eventID>"`, `sk = "dedup"`,
//! `owner` (the SQS message id), `state` (`claimed` | `delivered`), `expiresAt` (epoch
//! seconds, the table's TTL attribute). A claim is a `PutItem` conditioned on
//! `attribute_not_exists(pk) OR (owner = :me AND state = :claimed)` — which also makes the
//! SDK's retry of a claim whose response was lost succeed, since the item is then our own.
//! `ConditionalCheckFailedException` means a duplicate. A release (records held back for a
//! fuller call, sent to the queue in a new message) is a `DeleteItem` conditioned on
//! `owner = :me AND state = :claimed`; its failed condition means the claim is gone already.
//!
//! Why single conditional `PutItem`s, [`PUT_CONCURRENCY`] at a time, rather than
//! `TransactWriteItems` of 100: a transactional write costs 2 write units per item against 1,
//! and write units are what DynamoDB bills; calls themselves are free. (Transactions would
//! also need every chunk holding a duplicate to be cancelled and sent again, and moto copies
//! the whole table on every transaction, which makes a 200,000-record test impossible.)
//! Cost per million records: 1,000,000 `PutItem` calls and write units for the claims, plus
//! one more per record of a message that goes back to SQS (confirms) and per record held
//! back (releases), and no reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use tokio::task::JoinSet;
use trailwatch::deliver::ledger::LedgerError;
use trailwatch::deliver::{Claim, ClaimOutcome, DeliveredLedger};
use trailwatch::retry::RetryPolicy;
use trailwatch::time::now_ms;

use crate::describe;

/// Conditional writes in flight at once per invocation.
pub const PUT_CONCURRENCY: usize = 32;
/// Rounds of SDK-retried attempts per ledger write before the record counts as unavailable,
/// with full-jitter pauses between them (100, 200, 400 ms at most).
const LEDGER_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base: Duration::from_millis(50),
    cap: Duration::from_millis(400),
};
/// DynamoDB: a standard write of an item up to 1 KB costs 1 write capacity unit (ledger
/// items are about 150 bytes).
pub const WCU_PER_ITEM: u64 = 1;
/// How long a ledger entry is kept: longer than a message can live in the delivery queue and
/// its dead-letter queue's redrive window, short enough to keep the table small.
pub const DEFAULT_LEDGER_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

const CLAIMED: &str = "claimed";
/// The item is the owner's claim, not yet confirmed.
const OWN_CLAIM: &str = "#owner = :me AND #state = :claimed";
const DELIVERED: &str = "delivered";

/// What the ledger cost so far (for the metrics and the cost figures).
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// PutItem calls that DynamoDB answered (written or condition failed).
    pub calls: AtomicU64,
    /// Claims refused because another message owns the record or it was delivered.
    pub taken: AtomicU64,
    /// Calls that got no answer even after the SDK's retries (tried again, up to a limit).
    pub failed_calls: AtomicU64,
}

impl LedgerStats {
    /// Write capacity units consumed: a condition that fails still costs the write.
    pub fn write_units(&self) -> u64 {
        self.calls.load(Ordering::Relaxed) * WCU_PER_ITEM
    }
}

pub struct DynamoDbLedger {
    client: Client,
    table: Arc<str>,
    ttl: Duration,
    pub stats: Arc<LedgerStats>,
}

/// One write to make: the key, the owner, what to do.
struct Write {
    key: String,
    owner: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Conditional `PutItem` of a `claimed` item.
    Claim,
    /// `PutItem` of a `delivered` item.
    Confirm,
    /// `DeleteItem` conditioned on the owner's unconfirmed claim; a failed condition means the
    /// claim is no longer the owner's, which is what releasing it wanted.
    Release,
}

impl DynamoDbLedger {
    pub fn new(client: Client, table: String) -> Self {
        DynamoDbLedger {
            client,
            table: table.into(),
            ttl: DEFAULT_LEDGER_TTL,
            stats: Arc::default(),
        }
    }

    /// Makes one unconditional-outcome write per claim; an error when any was not written.
    async fn write_every(
        &self,
        claims: &[Claim<'_>],
        kind: Kind,
        what: &str,
    ) -> Result<(), LedgerError> {
        let outcomes = self
            .write_all(claims.iter().map(|c| write(c, kind)).collect())
            .await;
        match outcomes
            .iter()
            .filter(|o| **o != ClaimOutcome::Ours)
            .count()
        {
            0 => Ok(()),
            n => Err(LedgerError::new(format!(
                "{n} of {} {what} not written",
                claims.len()
            ))),
        }
    }

    /// Makes the writes, `PUT_CONCURRENCY` at a time; one outcome per write, in order.
    async fn write_all(&self, writes: Vec<Write>) -> Vec<ClaimOutcome> {
        let expires_at = ((now_ms() + self.ttl.as_millis() as i64) / 1000).to_string();
        let mut outcomes = vec![ClaimOutcome::Unavailable; writes.len()];
        let mut tasks = JoinSet::new();
        let mut writes = writes.into_iter().enumerate();
        loop {
            while tasks.len() < PUT_CONCURRENCY {
                let Some((i, write)) = writes.next() else {
                    break;
                };
                let (client, table) = (self.client.clone(), self.table.clone());
                let (stats, expires_at) = (self.stats.clone(), expires_at.clone());
                tasks.spawn(
                    async move { (i, put(&client, &table, write, &expires_at, &stats).await) },
                );
            }
            match tasks.join_next().await {
                Some(Ok((i, outcome))) => outcomes[i] = outcome,
                // A panicked write leaves its outcome Unavailable: the message comes back.
                Some(Err(_)) => {}
                None => break,
            }
        }
        outcomes
    }
}

async fn put(
    client: &Client,
    table: &str,
    write: Write,
    expires_at: &str,
    stats: &LedgerStats,
) -> ClaimOutcome {
    // The SDK's standard retries share a quota per client that a sustained error rate
    // drains; a ledger write that still fails is tried a few more times here, because giving
    // up sends the whole message back (and a failed confirm can double records).
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = if write.kind == Kind::Release {
            delete_claim(client, table, &write).await
        } else {
            put_item(client, table, &write, expires_at).await
        };
        match sent {
            Ok(()) => {
                stats.calls.fetch_add(1, Ordering::Relaxed);
                return ClaimOutcome::Ours;
            }
            Err(Failed::Condition) => {
                stats.calls.fetch_add(1, Ordering::Relaxed);
                if write.kind == Kind::Release {
                    return ClaimOutcome::Ours;
                }
                stats.taken.fetch_add(1, Ordering::Relaxed);
                return ClaimOutcome::Taken;
            }
            Err(Failed::Call(reason)) => {
                stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                if !LEDGER_RETRY.allows_after(attempt) {
                    tracing::warn!(table = %table, reason = %reason, "ledger write failed");
                    return ClaimOutcome::Unavailable;
                }
                tokio::time::sleep(LEDGER_RETRY.delay(attempt)).await;
            }
        }
    }
}

/// Why a write did not happen.
enum Failed {
    /// Its condition did not hold (the answer, not a fault).
    Condition,
    /// No answer, even after the SDK's retries.
    Call(String),
}

fn key(write: &Write) -> [(&'static str, AttributeValue); 2] {
    [
        ("pk", AttributeValue::S(write.key.clone())),
        ("sk", AttributeValue::S("dedup".to_owned())),
    ]
}

/// Deletes the owner's unconfirmed claim.
async fn delete_claim(client: &Client, table: &str, write: &Write) -> Result<(), Failed> {
    let [(pk, pk_value), (sk, sk_value)] = key(write);
    client
        .delete_item()
        .table_name(table)
        .key(pk, pk_value)
        .key(sk, sk_value)
        .condition_expression(OWN_CLAIM)
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":me", AttributeValue::S(write.owner.clone()))
        .expression_attribute_values(":claimed", AttributeValue::S(CLAIMED.to_owned()))
        .send()
        .await
        .map(drop)
        .map_err(|e| match e.as_service_error() {
            Some(s) if s.is_conditional_check_failed_exception() => Failed::Condition,
            _ => Failed::Call(describe(&e)),
        })
}

/// Puts a claim (conditioned on nobody else's) or a confirm.
async fn put_item(
    client: &Client,
    table: &str,
    write: &Write,
    expires_at: &str,
) -> Result<(), Failed> {
    let state = if write.kind == Kind::Claim {
        CLAIMED
    } else {
        DELIVERED
    };
    let [(pk, pk_value), (sk, sk_value)] = key(write);
    let mut request = client
        .put_item()
        .table_name(table)
        .item(pk, pk_value)
        .item(sk, sk_value)
        .item("owner", AttributeValue::S(write.owner.clone()))
        .item("state", AttributeValue::S(state.to_owned()))
        .item("expiresAt", AttributeValue::N(expires_at.to_owned()));
    if write.kind == Kind::Claim {
        request = request
            .condition_expression(format!("attribute_not_exists(pk) OR ({OWN_CLAIM})"))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":me", AttributeValue::S(write.owner.clone()))
            .expression_attribute_values(":claimed", AttributeValue::S(CLAIMED.to_owned()));
    }
    request
        .send()
        .await
        .map(drop)
        .map_err(|e| match e.as_service_error() {
            Some(s) if s.is_conditional_check_failed_exception() => Failed::Condition,
            _ => Failed::Call(describe(&e)),
        })
}

/// The ledger key of a record in a stream.
pub fn ledger_key(claim: &Claim<'_>) -> String {
    format!("dedup#{}#{}", claim.stream, claim.event_id)
}

fn write(claim: &Claim<'_>, kind: Kind) -> Write {
    Write {
        key: ledger_key(claim),
        owner: claim.owner.to_owned(),
        kind,
    }
}

impl DeliveredLedger for DynamoDbLedger {
    async fn claim(&self, claims: &[Claim<'_>]) -> Vec<ClaimOutcome> {
        self.write_all(claims.iter().map(|c| write(c, Kind::Claim)).collect())
            .await
    }

    async fn confirm(&self, delivered: &[Claim<'_>]) -> Result<(), LedgerError> {
        self.write_every(delivered, Kind::Confirm, "confirms").await
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        self.write_every(claims, Kind::Release, "releases").await
    }
}
