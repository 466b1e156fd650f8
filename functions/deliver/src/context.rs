//! The deliver function's configuration, read once at cold start: the log group, the hold
//! queue, the ledger, the claim lease.

use aws_config::SdkConfig;
use trailwatch::deliver::ledger::{Attempt, BeginOutcome, Leases, DEFAULT_CLAIM_LEASE_MS};
use trailwatch::deliver::limits::is_valid_retention;
use trailwatch::deliver::{
    Carrier, CarryError, Claim, ClaimOutcome, DeliveredLedger, HeldMessage, InvocationOnly,
    LedgerError,
};
use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
use trailwatch_aws::dedup::DynamoDbLedger;
use trailwatch_aws::sqs::SqsSender;
use trailwatch_aws::{client, required_env, ConfigError};

pub const LOG_GROUP_ENV: &str = "TRAILWATCH_LOG_GROUP";
pub const RETENTION_ENV: &str = "TRAILWATCH_RETENTION_DAYS";
/// The table remembering delivered eventIDs across invocations (the stack's state table).
/// Unset: duplicates are dropped within an invocation only.
pub const DEDUP_TABLE_ENV: &str = "TRAILWATCH_DEDUP_TABLE";
/// CloudTrail's log groups are created with 90 days unless told otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// The hold queue (its URL; a FIFO queue, one message group per stream): where records of a
/// call that is not full wait for more of their stream. Unset: every call is put at once.
pub const HOLD_QUEUE_ENV: &str = "TRAILWATCH_HOLD_QUEUE_URL";
/// How long a record may wait for a fuller call, in seconds (0: never held back).
pub const MAX_WAIT_ENV: &str = "TRAILWATCH_MAX_WAIT_SECONDS";
/// CloudTrail itself takes about 5 minutes to deliver a record to CloudWatch Logs; holding
/// one back for at most two more fills the calls of every busy stream.
pub const DEFAULT_MAX_WAIT_SECONDS: u32 = 120;

/// How long an unconfirmed claim keeps other deliveries off a record, in seconds (see
/// `trailwatch::deliver::ledger::DEFAULT_CLAIM_LEASE_MS`, the default: 6 hours).
pub const CLAIM_LEASE_ENV: &str = "TRAILWATCH_CLAIM_LEASE_SECONDS";

/// What the function needs, built once at cold start.
pub struct DeliverContext {
    pub sink: CloudWatchLogs,
    pub retention_days: u32,
    pub hold: Option<HoldBack>,
    /// See [`CLAIM_LEASE_ENV`].
    pub claim_lease_ms: i64,
}

/// The hold queue as the place where records wait for a fuller call: each message goes to
/// its stream's message group, so the tails of a stream meet one invocation at a time.
pub struct HoldBack {
    pub sqs: SqsSender,
    pub queue_url: String,
    pub max_wait_ms: i64,
}

impl Carrier for HoldBack {
    fn max_wait_ms(&self) -> i64 {
        self.max_wait_ms
    }

    async fn send(&self, held: Vec<HeldMessage>) -> Result<(), CarryError> {
        let messages: Vec<(String, String)> =
            held.into_iter().map(|m| (m.stream, m.body)).collect();
        self.sqs
            .send_grouped(&self.queue_url, &messages)
            .await
            .map(drop)
            .map_err(CarryError::new)
    }

    fn keeps(&self) -> bool {
        true
    }
}

/// How long a held message that came back alone stays invisible at most before it comes back
/// (its stream's group waits behind it meanwhile). Shorter keeps latency and each record's
/// last wait closer to the limit; longer means fewer receives.
pub const KEEP_SECONDS: i64 = 20;

impl DeliverContext {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let group = required_env(LOG_GROUP_ENV)?;
        const RETENTION: &str = "a retention CloudWatch Logs accepts";
        let retention_days = match env_number(RETENTION_ENV, RETENTION)? {
            Some(days) if is_valid_retention(days) => days,
            Some(days) => {
                return Err(ConfigError::Invalid {
                    name: RETENTION_ENV.into(),
                    value: days.to_string(),
                    expected: RETENTION,
                })
            }
            None => DEFAULT_RETENTION_DAYS,
        };
        let max_wait_seconds = env_number(MAX_WAIT_ENV, "a whole number of seconds")?
            .unwrap_or(DEFAULT_MAX_WAIT_SECONDS);
        let hold = match std::env::var(HOLD_QUEUE_ENV) {
            Ok(queue_url) if !queue_url.is_empty() && max_wait_seconds > 0 => Some(HoldBack {
                sqs: SqsSender::new(client(sdk)),
                queue_url,
                max_wait_ms: i64::from(max_wait_seconds) * 1000,
            }),
            _ => {
                tracing::warn!(
                    "{HOLD_QUEUE_ENV} is not set or {MAX_WAIT_ENV} is 0: calls that are not full are put at once"
                );
                None
            }
        };
        let claim_lease_ms = env_number(CLAIM_LEASE_ENV, "a whole number of seconds")?
            .map_or(DEFAULT_CLAIM_LEASE_MS, |s| i64::from(s) * 1000);
        Ok(DeliverContext {
            hold,
            sink: CloudWatchLogs::new(client(sdk), group, Some(retention_days)),
            retention_days,
            claim_lease_ms,
        })
    }
}

/// An environment variable holding a whole number; `None` when it is unset or empty.
fn env_number(name: &str, expected: &'static str) -> Result<Option<u32>, ConfigError> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            name: name.into(),
            value: text,
            expected,
        }),
        _ => Ok(None),
    }
}

/// Where deliveries are remembered across invocations.
pub enum Ledger {
    DynamoDb(DynamoDbLedger),
    InvocationOnly,
}

impl Ledger {
    /// The DynamoDB ledger when `TRAILWATCH_DEDUP_TABLE` names a table, else in-invocation
    /// dedupe only; says which at cold start.
    pub fn from_env(sdk: &SdkConfig) -> Self {
        match std::env::var(DEDUP_TABLE_ENV) {
            Ok(table) if !table.is_empty() => {
                tracing::info!(table = %table, "duplicates dropped across invocations");
                Ledger::DynamoDb(DynamoDbLedger::new(client(sdk), table))
            }
            _ => {
                tracing::warn!(
                    "{DEDUP_TABLE_ENV} is not set: duplicates are dropped within an invocation only"
                );
                Ledger::InvocationOnly
            }
        }
    }
}

impl DeliveredLedger for Ledger {
    async fn begin(&self, attempts: &[Attempt<'_>], leases: &Leases) -> Vec<BeginOutcome> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.begin(attempts, leases).await,
            Ledger::InvocationOnly => InvocationOnly.begin(attempts, leases).await,
        }
    }

    async fn claim(&self, claims: &[Claim<'_>], leases: &Leases) -> Vec<ClaimOutcome> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.claim(claims, leases).await,
            Ledger::InvocationOnly => InvocationOnly.claim(claims, leases).await,
        }
    }

    async fn confirm(&self, delivered: &[Claim<'_>], leases: &Leases) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.confirm(delivered, leases).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }

    async fn release(&self, claims: &[Claim<'_>]) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.release(claims).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }

    async fn finish(&self, deliveries: &[&str], leases: &Leases) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.finish(deliveries, leases).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }

    async fn let_go(&self, attempts: &[Attempt<'_>]) -> Result<(), LedgerError> {
        match self {
            Ledger::DynamoDb(ledger) => ledger.let_go(attempts).await,
            Ledger::InvocationOnly => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use trailwatch::deliver::ledger::{DEFAULT_CLAIM_LEASE_MS, DEFAULT_RUN_LEASE_MS};

    /// The value of `name:` in the block of resource `resource` in the template (or in
    /// `Globals` for the functions' settings), as a number.
    fn template_number(template: &str, resource: &str, name: &str) -> i64 {
        let start = template
            .lines()
            .position(|l| l.trim_end() == format!("  {resource}:"))
            .unwrap_or_else(|| panic!("{resource} not in template.yaml"));
        template
            .lines()
            .skip(start + 1)
            .take_while(|l| l.is_empty() || l.starts_with("   ") || l.starts_with('#'))
            .find_map(|l| {
                let value = l.trim().strip_prefix(name)?.strip_prefix(':')?;
                value.split('#').next()?.trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("{resource}.{name} not in template.yaml"))
    }

    #[test]
    fn the_leases_fit_the_stacks_queues_and_timeout() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template = std::fs::read_to_string(path).unwrap();
        let timeout_ms = template_number(&template, "Function", "Timeout") * 1000;
        let mut longest_retry_life_ms = 0;
        for queue in ["DeliveryQueue", "HoldQueue"] {
            let visibility_ms = template_number(&template, queue, "VisibilityTimeout") * 1000;
            let receives = template_number(&template, queue, "maxReceiveCount");
            longest_retry_life_ms = longest_retry_life_ms.max(receives * visibility_ms);
            // A redrive comes a visibility timeout after the last receive at the earliest: the
            // attempt that held the delivery has ended by then.
            assert!(DEFAULT_RUN_LEASE_MS < visibility_ms, "{queue}");
        }
        assert!(DEFAULT_RUN_LEASE_MS > timeout_ms);
        // No owner that may still come back is overtaken.
        assert!(
            DEFAULT_CLAIM_LEASE_MS >= longest_retry_life_ms + timeout_ms,
            "{DEFAULT_CLAIM_LEASE_MS} < {longest_retry_life_ms} + {timeout_ms}"
        );
    }
}
