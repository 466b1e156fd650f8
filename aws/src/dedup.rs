//! The delivered-records ledger in DynamoDB (the stack's state table), as a
//! [`DeliveredLedger`]. See `trailwatch::deliver::ledger` for the protocol and its crash
//! windows; this file only maps it onto conditional writes.
//!
//! One item per `(stream, eventID)`: `pk = "dedup#<stream>#<eventID>"`, `sk = "dedup"`,
//! `owner` (the delivery id), `state` (`claimed` | `delivered`), `until` (epoch ms: the end of
//! the claim's lease), `expiresAt` (epoch seconds, the table's TTL attribute). A claim is a
//! `PutItem` conditioned on
//! `attribute_not_exists(pk) OR (owner = :me AND state = :claimed) OR (state = :claimed AND until < :now)`
//! — which also makes the SDK's retry of a claim whose response was lost succeed, since the
//! item is then our own. When the condition fails, the item it found comes back with the
//! error (`ReturnValuesOnConditionCheckFailure = ALL_OLD`, no read): delivered means a
//! duplicate; claimed by another delivery means reading that delivery's item (below, one
//! strongly consistent `GetItem` per owner): done means a duplicate, anything else that the
//! record waits. A release (records held back for a fuller call, sent to the queue in a new
//! message) is a `DeleteItem` conditioned on `owner = :me AND state = :claimed`; its failed
//! condition means the claim is gone already.
//!
//! One item per delivery: `pk = "delivery#<id>"`, `sk = "delivery"`, `state` (`holding` |
//! `done`), `attempt` (the SQS message id holding it), `until` (epoch ms), `expiresAt`.
//! Beginning is a `PutItem` conditioned on
//! `attribute_not_exists(pk) OR (state = :holding AND (attempt = :me OR until < :now))`;
//! finishing an unconditional `PutItem` of `done`; letting go (the attempt failed, its message
//! comes back) a `DeleteItem` conditioned on `state = :holding AND attempt = :me`.
//!
//! Why single conditional `PutItem`s, [`PUT_CONCURRENCY`] at a time, rather than
//! `TransactWriteItems` of 100: a transactional write costs 2 write units per item against 1,
//! and write units are what DynamoDB bills; calls themselves are free. (Transactions would
//! also need every chunk holding a duplicate to be cancelled and sent again, and moto copies
//! the whole table on every transaction, which makes a 200,000-record test impossible.)
//! Cost per million records: 1,000,000 `PutItem` calls and write units for the claims, plus
//! one more per record of a message that goes back to SQS (confirms) and per record held
//! back (releases), two per delivery message (begin, finish: about 1,000 records each), and a
//! read per other delivery holding a claim of a duplicate record.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use tokio::task::JoinSet;
use trailwatch::deliver::ledger::{Attempt, BeginOutcome, Leases, LedgerError};
use trailwatch::deliver::{Claim, ClaimOutcome, DeliveredLedger};
use trailwatch::retry::RetryPolicy;

use crate::describe;

/// Writes in flight at once per invocation.
pub const PUT_CONCURRENCY: usize = 32;
/// Rounds of SDK-retried attempts per ledger call before the record counts as unavailable,
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
const DELIVERED: &str = "delivered";
const HOLDING: &str = "holding";
const DONE: &str = "done";
/// The item is the owner's claim, not yet confirmed.
const OWN_CLAIM: &str = "#owner = :me AND #state = :claimed";

/// What the ledger cost so far (for the metrics and the cost figures).
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Write calls that DynamoDB answered (written or condition failed).
    pub calls: AtomicU64,
    /// Claims refused because the record was delivered or its owner is done.
    pub taken: AtomicU64,
    /// Strongly consistent reads of other deliveries' items.
    pub reads: AtomicU64,
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

type Item = HashMap<String, AttributeValue>;

/// One call to make.
#[derive(Debug, Clone)]
enum Op {
    /// Claim `key` for `owner` (see the module comment).
    Claim { key: String, owner: String },
    /// Mark `key` delivered by `owner`.
    Confirm { key: String, owner: String },
    /// Delete `owner`'s unconfirmed claim of `key`.
    Release { key: String, owner: String },
    /// Hold delivery `key` for `attempt`.
    Begin { key: String, attempt: String },
    /// Mark delivery `key` done.
    Finish { key: String },
    /// Delete delivery `key` if `attempt` holds it.
    LetGo { key: String, attempt: String },
    /// Read delivery `key`.
    Read { key: String },
}

/// What DynamoDB answered.
#[derive(Debug)]
enum Answer {
    Written,
    /// The condition failed; the item it found, when DynamoDB returned it.
    Refused(Option<Item>),
    /// What a read found.
    Found(Option<Item>),
    /// No answer after every attempt.
    Unavailable,
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

    /// Makes the calls, [`PUT_CONCURRENCY`] at a time; one answer per call, in order.
    async fn run(&self, ops: Vec<Op>, leases: &Leases) -> Vec<Answer> {
        let expires_at = ((leases.now_ms + self.ttl.as_millis() as i64) / 1000).to_string();
        let mut answers: Vec<Answer> = ops.iter().map(|_| Answer::Unavailable).collect();
        let mut tasks = JoinSet::new();
        let mut ops = ops.into_iter().enumerate();
        loop {
            while tasks.len() < PUT_CONCURRENCY {
                let Some((i, op)) = ops.next() else { break };
                let call = Call {
                    client: self.client.clone(),
                    table: self.table.clone(),
                    expires_at: expires_at.clone(),
                    leases: *leases,
                    stats: self.stats.clone(),
                };
                tasks.spawn(async move { (i, call.make(op).await) });
            }
            match tasks.join_next().await {
                Some(Ok((i, answer))) => answers[i] = answer,
                // A panicked call leaves its answer Unavailable: the message comes back.
                Some(Err(_)) => {}
                None => break,
            }
        }
        answers
    }

    /// Makes one write per item, whatever its condition says; an error when any got no
    /// answer.
    async fn write_every(
        &self,
        ops: Vec<Op>,
        what: &str,
        leases: &Leases,
    ) -> Result<(), LedgerError> {
        let total = ops.len();
        let answers = self.run(ops, leases).await;
        match answers
            .iter()
            .filter(|a| matches!(a, Answer::Unavailable))
            .count()
        {
            0 => Ok(()),
            n => Err(LedgerError::new(format!(
                "{n} of {total} {what} not written"
            ))),
        }
    }

    /// Whether each owner's delivery is done (`None`: the ledger could not answer).
    async fn done(&self, owners: &[String], leases: &Leases) -> HashMap<String, Option<bool>> {
        let ops = owners
            .iter()
            .map(|o| Op::Read {
                key: delivery_key(o),
            })
            .collect();
        let answers = self.run(ops, leases).await;
        owners
            .iter()
            .cloned()
            .zip(answers.into_iter().map(|answer| match answer {
                Answer::Found(item) => Some(item.is_some_and(|i| text(&i, "state") == Some(DONE))),
                _ => None,
            }))
            .collect()
    }
}

/// One call, with what it needs.
struct Call {
    client: Client,
    table: Arc<str>,
    expires_at: String,
    leases: Leases,
    stats: Arc<LedgerStats>,
}

impl Call {
    /// Makes the call; the SDK's standard retries share a quota per client that a sustained
    /// error rate drains, so a call that still fails is tried a few more times here, because
    /// giving up sends the whole message back (and a failed confirm can double records).
    async fn make(&self, op: Op) -> Answer {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(&op).await {
                Ok(answer) => {
                    let counter = if matches!(op, Op::Read { .. }) {
                        &self.stats.reads
                    } else {
                        &self.stats.calls
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return answer;
                }
                Err(reason) => {
                    self.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                    if !LEDGER_RETRY.allows_after(attempt) {
                        tracing::warn!(table = %self.table, reason = %reason, "ledger call failed");
                        return Answer::Unavailable;
                    }
                    tokio::time::sleep(LEDGER_RETRY.delay(attempt)).await;
                }
            }
        }
    }

    async fn send(&self, op: &Op) -> Result<Answer, String> {
        match op {
            Op::Claim { key, owner } => self.claim(key, owner).await,
            Op::Confirm { key, owner } => self.put(key, "dedup", self.delivered(owner)).await,
            Op::Release { key, owner } => self.release(key, owner).await,
            Op::Begin { key, attempt } => self.begin(key, attempt).await,
            Op::Finish { key } => self.put(key, "delivery", self.done()).await,
            Op::LetGo { key, attempt } => self.let_go(key, attempt).await,
            Op::Read { key } => self.read(key).await,
        }
    }

    fn delivered(&self, owner: &str) -> Item {
        HashMap::from([
            ("owner".to_owned(), s(owner)),
            ("state".to_owned(), s(DELIVERED)),
            (
                "expiresAt".to_owned(),
                AttributeValue::N(self.expires_at.clone()),
            ),
        ])
    }

    fn done(&self) -> Item {
        HashMap::from([
            ("state".to_owned(), s(DONE)),
            (
                "expiresAt".to_owned(),
                AttributeValue::N(self.expires_at.clone()),
            ),
        ])
    }

    /// An unconditional put.
    async fn put(&self, key: &str, sk: &str, item: Item) -> Result<Answer, String> {
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .item("pk", s(key))
            .item("sk", s(sk))
            .send()
            .await
            .map(|_| Answer::Written)
            .map_err(|e| describe(&e))
    }

    async fn claim(&self, key: &str, owner: &str) -> Result<Answer, String> {
        let until = self.leases.now_ms + self.leases.claim_ms;
        let sent = self
            .client
            .put_item()
            .table_name(&*self.table)
            .item("pk", s(key))
            .item("sk", s("dedup"))
            .item("owner", s(owner))
            .item("state", s(CLAIMED))
            .item("until", n(until))
            .item("expiresAt", AttributeValue::N(self.expires_at.clone()))
            .condition_expression(format!(
                "attribute_not_exists(pk) OR ({OWN_CLAIM}) OR (#state = :claimed AND #until < :now)"
            ))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":claimed", s(CLAIMED))
            .expression_attribute_values(":now", n(self.leases.now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        put_answer(sent)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<Answer, String> {
        let sent = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .key("pk", s(key))
            .key("sk", s("dedup"))
            .condition_expression(OWN_CLAIM)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":claimed", s(CLAIMED))
            .send()
            .await;
        delete_answer(sent)
    }

    async fn let_go(&self, key: &str, attempt: &str) -> Result<Answer, String> {
        let sent = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .key("pk", s(key))
            .key("sk", s("delivery"))
            .condition_expression("#state = :holding AND #attempt = :me")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#attempt", "attempt")
            .expression_attribute_values(":holding", s(HOLDING))
            .expression_attribute_values(":me", s(attempt))
            .send()
            .await;
        delete_answer(sent)
    }

    async fn begin(&self, key: &str, attempt: &str) -> Result<Answer, String> {
        let until = self.leases.now_ms + self.leases.run_ms;
        let sent = self
            .client
            .put_item()
            .table_name(&*self.table)
            .item("pk", s(key))
            .item("sk", s("delivery"))
            .item("state", s(HOLDING))
            .item("attempt", s(attempt))
            .item("until", n(until))
            .item("expiresAt", AttributeValue::N(self.expires_at.clone()))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :holding AND (#attempt = :me OR #until < :now))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#attempt", "attempt")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":holding", s(HOLDING))
            .expression_attribute_values(":me", s(attempt))
            .expression_attribute_values(":now", n(self.leases.now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        put_answer(sent)
    }

    async fn read(&self, key: &str) -> Result<Answer, String> {
        self.client
            .get_item()
            .table_name(&*self.table)
            .key("pk", s(key))
            .key("sk", s("delivery"))
            .consistent_read(true)
            .send()
            .await
            .map(|out| Answer::Found(out.item().cloned()))
            .map_err(|e| describe(&e))
    }
}

/// A conditional put's answer: written, or refused with the item it found.
fn put_answer<T>(sent: Result<T, SdkError<PutItemError, HttpResponse>>) -> Result<Answer, String> {
    match sent {
        Ok(_) => Ok(Answer::Written),
        Err(e) => match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                Ok(Answer::Refused(refused.item().cloned()))
            }
            _ => Err(describe(&e)),
        },
    }
}

/// A conditional delete's answer: deleted, or refused (the item was not as the condition said).
fn delete_answer<T>(
    sent: Result<T, SdkError<DeleteItemError, HttpResponse>>,
) -> Result<Answer, String> {
    match sent {
        Ok(_) => Ok(Answer::Written),
        Err(e)
            if e.as_service_error()
                .is_some_and(DeleteItemError::is_conditional_check_failed_exception) =>
        {
            Ok(Answer::Refused(None))
        }
        Err(e) => Err(describe(&e)),
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: i64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn text<'i>(item: &'i Item, name: &str) -> Option<&'i str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The ledger key of a record in a stream.
pub fn ledger_key(claim: &Claim<'_>) -> String {
    format!("dedup#{}#{}", claim.stream, claim.event_id)
}

/// The ledger key of a delivery.
pub fn delivery_key(delivery: &str) -> String {
    format!("delivery#{delivery}")
}

/// What a refused claim found: delivered (a duplicate), or claimed by another owner.
enum Refusal {
    Delivered,
    ClaimedBy(String),
}

fn refusal(item: Option<&Item>) -> Refusal {
    match item {
        Some(item) if text(item, "state") == Some(CLAIMED) => {
            Refusal::ClaimedBy(text(item, "owner").unwrap_or_default().to_owned())
        }
        // Delivered, or (without the item) nothing to say otherwise: the item existed and
        // was not ours to take.
        Some(_) => Refusal::Delivered,
        None => Refusal::ClaimedBy(String::new()),
    }
}

impl DeliveredLedger for DynamoDbLedger {
    async fn begin(&self, attempts: &[Attempt<'_>], leases: &Leases) -> Vec<BeginOutcome> {
        let ops = attempts
            .iter()
            .map(|a| Op::Begin {
                key: delivery_key(a.delivery),
                attempt: a.attempt.to_owned(),
            })
            .collect();
        self.run(ops, leases)
            .await
            .into_iter()
            .map(|answer| match answer {
                Answer::Written => BeginOutcome::Go,
                Answer::Refused(Some(item)) if text(&item, "state") == Some(DONE) => {
                    BeginOutcome::Done
                }
                Answer::Refused(_) => BeginOutcome::Busy,
                Answer::Found(_) | Answer::Unavailable => BeginOutcome::Unavailable,
            })
            .collect()
    }

    async fn claim(&self, claims: &[Claim<'_>], leases: &Leases) -> Vec<ClaimOutcome> {
        let ops = claims
            .iter()
            .map(|c| Op::Claim {
                key: ledger_key(c),
                owner: c.owner.to_owned(),
            })
            .collect();
        let answers = self.run(ops, leases).await;
        let refusals: Vec<Option<Refusal>> = answers
            .iter()
            .map(|a| match a {
                Answer::Refused(item) => Some(refusal(item.as_ref())),
                _ => None,
            })
            .collect();
        let owners: Vec<String> = refusals
            .iter()
            .filter_map(|r| match r {
                Some(Refusal::ClaimedBy(owner)) if !owner.is_empty() => Some(owner.clone()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let done = self.done(&owners, leases).await;
        let outcomes: Vec<ClaimOutcome> = answers
            .iter()
            .zip(&refusals)
            .map(|(answer, refusal)| match (answer, refusal) {
                (Answer::Written, _) => ClaimOutcome::Ours,
                (_, Some(Refusal::Delivered)) => ClaimOutcome::Taken,
                (_, Some(Refusal::ClaimedBy(owner))) => match done.get(owner) {
                    Some(Some(true)) => ClaimOutcome::Taken,
                    Some(None) => ClaimOutcome::Unavailable,
                    _ => ClaimOutcome::Waiting,
                },
                _ => ClaimOutcome::Unavailable,
            })
            .collect();
        let taken = outcomes
            .iter()
            .filter(|o| **o == ClaimOutcome::Taken)
            .count();
        self.stats.taken.fetch_add(taken as u64, Ordering::Relaxed);
        outcomes
    }

    async fn confirm(&self, delivered: &[Claim<'_>], leases: &Leases) -> Result<(), LedgerError> {
        let ops = delivered
            .iter()
            .map(|c| Op::Confirm {
                key: ledger_key(c),
                owner: c.owner.to_owned(),
            })
            .collect();
        self.write_every(ops, "confirms", leases).await
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        let ops = claims
            .iter()
            .map(|c| Op::Release {
                key: ledger_key(c),
                owner: c.owner.to_owned(),
            })
            .collect();
        // Nothing in a release depends on the time.
        let now = Leases::at(trailwatch::time::now_ms());
        self.write_every(ops, "releases", &now).await
    }

    async fn finish(&self, deliveries: &[&str], leases: &Leases) -> Result<(), LedgerError> {
        let ops = deliveries
            .iter()
            .map(|d| Op::Finish {
                key: delivery_key(d),
            })
            .collect();
        self.write_every(ops, "finishes", leases).await
    }

    async fn let_go(&self, attempts: &[Attempt<'_>]) -> Result<(), LedgerError> {
        let ops = attempts
            .iter()
            .map(|a| Op::LetGo {
                key: delivery_key(a.delivery),
                attempt: a.attempt.to_owned(),
            })
            .collect();
        let now = Leases::at(trailwatch::time::now_ms());
        self.write_every(ops, "lets go", &now).await
    }
}
