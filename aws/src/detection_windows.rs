//! Detection suppression windows in the state table, as the [`WindowStore`] port: one item a
//! key, `pk` = `detect#window#<rule|account|principal>`, `sk` = `window`, attributes `startMs`
//! (N, eventTime of the opening match), `openedBy` (S, its dedup key), `held` (N),
//! `previousHeld` (N) and `expiresAt` (the table's TTL: a day past the window's end).
//!
//! Opening is a `PutItem` conditional on the window read (absent, or opened by the same dedup
//! key); holding an `UpdateItem` `ADD held :1` conditional on `openedBy`. A failed condition is
//! a lost race, answered `false` for the caller to decide again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use trailwatch::detect::noise::Window;
use trailwatch::detect::windows::{StoredWindow, WindowStore};

use crate::describe;
use crate::insights_state::is_condition_failed;

/// Kept this long past the end of its window, so that a late delivery still finds it.
pub const WINDOW_TTL_MARGIN: Duration = Duration::from_secs(24 * 3600);

const SK: &str = "window";

/// Why the window store failed (the message is retried).
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("DynamoDB {operation} on {table}: {message}")]
    Call {
        operation: &'static str,
        table: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("suppression window {key} in {table} is not of the expected shape")]
    Corrupt { key: String, table: String },
}

pub struct DynamoDbWindows {
    client: Client,
    table: String,
}

fn pk(key: &str) -> AttributeValue {
    AttributeValue::S(format!("detect#window#{key}"))
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoDbWindows {
    pub fn new(client: Client, table: String) -> Self {
        DynamoDbWindows { client, table }
    }

    fn call_error<E>(&self, operation: &'static str, e: E) -> WindowError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        WindowError::Call {
            operation,
            table: self.table.clone(),
            message: describe(&e),
            source: Box::new(e),
        }
    }
}

impl WindowStore for DynamoDbWindows {
    type Error = WindowError;

    async fn get(&self, key: &str) -> Result<Option<StoredWindow>, WindowError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .key("sk", AttributeValue::S(SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.call_error("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let number = |name: &str| item.get(name)?.as_n().ok()?.parse::<i64>().ok();
        let opened_by = item.get("openedBy").and_then(|v| v.as_s().ok());
        let corrupt = || WindowError::Corrupt {
            key: key.to_owned(),
            table: self.table.clone(),
        };
        let (Some(start_ms), Some(opened_by)) = (number("startMs"), opened_by) else {
            return Err(corrupt());
        };
        let count = |name: &str| {
            number(name)
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0)
        };
        Ok(Some(StoredWindow {
            window: Window {
                start_ms,
                opened_by: opened_by.clone(),
                held: count("held"),
            },
            previous_held: count("previousHeld"),
        }))
    }

    async fn open(
        &self,
        key: &str,
        stored: &StoredWindow,
        previous: Option<&str>,
        minutes: u32,
    ) -> Result<bool, WindowError> {
        let until = SystemTime::now() + Duration::from_secs(u64::from(minutes) * 60);
        let expires = (until + WINDOW_TTL_MARGIN)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let w = &stored.window;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(key))
            .item("sk", AttributeValue::S(SK.into()))
            .item("startMs", n(w.start_ms))
            .item("openedBy", AttributeValue::S(w.opened_by.clone()))
            .item("held", n(w.held))
            .item("previousHeld", n(stored.previous_held))
            .item("expiresAt", n(expires));
        put = match previous {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(opened_by) => put
                .condition_expression("openedBy = :previous")
                .expression_attribute_values(":previous", AttributeValue::S(opened_by.into())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.call_error("PutItem", e)),
        }
    }

    async fn hold(&self, key: &str, opened_by: &str) -> Result<bool, WindowError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .key("sk", AttributeValue::S(SK.into()))
            .update_expression("ADD held :one")
            .condition_expression("openedBy = :opened")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":opened", AttributeValue::S(opened_by.into()));
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.call_error("UpdateItem", e)),
        }
    }
}
