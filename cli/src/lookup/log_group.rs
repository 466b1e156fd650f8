//! The deployed trail's log group: FilterLogEvents, page after page, narrowed on the server
//! where CloudWatch Logs' filter syntax can say what the query asks, and re-checked exactly
//! here, since filter patterns (and moto, which ignores JSON patterns and stream prefixes) let
//! through more than asked.

use aws_sdk_cloudwatchlogs::error::SdkError;
use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use thiserror::Error;
use trailwatch::time::MS_PER_HOUR;

use super::query::{AttributeKey, Query};
use super::search::Searcher;

pub struct GroupSource {
    pub group: String,
    pub stream_prefix: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    /// FilterLogEvents' `limit` per call (default: the service's, 10,000).
    pub page_limit: Option<i32>,
}

/// What was asked of CloudWatch Logs, for the summary.
#[derive(Debug, Default)]
pub struct Calls {
    pub calls: usize,
    pub log_events: usize,
    pub pattern: Option<String>,
}

/// The server-side window is wider than the query's by this much on each side. CloudTrail's
/// log-event timestamp is taken to be the record's eventTime (trailwatch's deliver stage
/// writes exactly that; for CloudTrail itself it is inferred, not documented): should it be
/// the delivery time instead (minutes later), events near the end of the range would be
/// missed. The exact range is applied to eventTime here.
const WINDOW_SLACK_MS: i64 = MS_PER_HOUR;

/// Why CloudWatch Logs could not be asked.
#[derive(Debug, Error)]
pub enum GroupError {
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("no AWS Region for log group {0}: give --region or set AWS_REGION")]
    NoRegion(String),
    #[error(
        "FilterLogEvents on log group {group}: {}",
        trailwatch_aws::describe(source)
    )]
    Filter {
        group: String,
        #[source]
        source: Box<SdkError<FilterLogEventsError>>,
    },
}

/// Reads the log group's matching events into the searcher. `Err` when CloudWatch Logs could
/// not be asked (no such group, no credentials…): no partial answer is printed then.
pub fn search_group(
    source: &GroupSource,
    query: &Query,
    searcher: &mut Searcher,
) -> Result<Calls, GroupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GroupError::Runtime)?;
    runtime.block_on(fetch(source, query, searcher))
}

async fn client(source: &GroupSource) -> Result<aws_sdk_cloudwatchlogs::Client, GroupError> {
    let sdk = crate::sdk::load(source.region.as_deref(), source.profile.as_deref())
        .await
        .ok_or_else(|| GroupError::NoRegion(source.group.clone()))?;
    Ok(aws_sdk_cloudwatchlogs::Client::new(&sdk))
}

/// Every page of FilterLogEvents, through the SDK's paginator (which stops when NextToken is
/// absent or repeats).
async fn fetch(
    source: &GroupSource,
    query: &Query,
    searcher: &mut Searcher<'_>,
) -> Result<Calls, GroupError> {
    let client = client(source).await?;
    let mut calls = Calls {
        pattern: filter_pattern(query),
        ..Calls::default()
    };
    let mut pages = client
        .filter_log_events()
        .log_group_name(&source.group)
        .set_log_stream_name_prefix(source.stream_prefix.clone())
        .set_start_time(
            query
                .start_ms
                .map(|s| s.saturating_sub(WINDOW_SLACK_MS).max(0)),
        )
        .set_end_time(query.end_ms.map(|e| e.saturating_add(WINDOW_SLACK_MS)))
        .set_filter_pattern(calls.pattern.clone())
        .set_limit(source.page_limit)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source_error| GroupError::Filter {
            group: source.group.clone(),
            source: Box::new(source_error),
        })?;
        calls.calls += 1;
        for event in page.events() {
            calls.log_events += 1;
            read_event(source, event, searcher);
        }
    }
    Ok(calls)
}

fn read_event(source: &GroupSource, event: &FilteredLogEvent, searcher: &mut Searcher<'_>) {
    let stream = event.log_stream_name().unwrap_or("");
    if source
        .stream_prefix
        .as_deref()
        .is_some_and(|p| !stream.starts_with(p))
    {
        return;
    }
    let id = event.event_id().unwrap_or("");
    match event.message() {
        Some(message) => searcher.record(message, || {
            format!("log group {}, stream {stream}, event {id}", source.group)
        }),
        None => searcher.problem(format!(
            "log group {}, stream {stream}, event {id}: no message",
            source.group
        )),
    }
}

/// The FilterLogEvents pattern that narrows the search to the query's attribute, where
/// CloudWatch Logs' syntax can say it without risk of leaving out a match:
///
/// * fields copied verbatim from the record — EventId, EventName, EventSource, AccessKeyId —
///   as JSON equality (`{ $.eventName = "DeleteBucket" }`, the form AWS documents for
///   CloudTrail logs); for Insights the name and source are in `insightDetails`;
/// * ReadOnly as `IS TRUE` / `IS FALSE` (or the string, as exports write it);
/// * Username and ResourceName, which lookup derives, as a quoted term: the value appears in
///   the record's text (a userName, an ARN's last part, a request parameter). Only plain
///   ASCII values are sent, as JSON text may escape others; "root" is not sent (a Root
///   record need not spell it).
/// * ResourceType is not sent: lookup derives it from request parameters, so the text
///   of a matching record need not contain it.
///
/// A value with `"` or `\` is never sent. Whatever the pattern, every event returned is
/// checked again exactly.
pub fn filter_pattern(query: &Query) -> Option<String> {
    let attribute = query.attribute.as_ref()?;
    let value = attribute.value.as_str();
    if value.contains(['"', '\\']) || value.chars().any(char::is_control) {
        return None;
    }
    let equals = |paths: &[&str]| {
        let terms: Vec<String> = paths
            .iter()
            .map(|p| format!("($.{p} = \"{value}\")"))
            .collect();
        Some(format!("{{ {} }}", terms.join(" || ")))
    };
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=,".contains(&b));
    match attribute.key {
        AttributeKey::EventId => equals(&["eventID"]),
        AttributeKey::EventName if query.insight => {
            equals(&["eventName", "insightDetails.eventName"])
        }
        AttributeKey::EventName => equals(&["eventName"]),
        AttributeKey::EventSource if query.insight => {
            equals(&["eventSource", "insightDetails.eventSource"])
        }
        AttributeKey::EventSource => equals(&["eventSource"]),
        AttributeKey::AccessKeyId => equals(&["userIdentity.accessKeyId"]),
        AttributeKey::ReadOnly => {
            let upper = if value == "true" { "TRUE" } else { "FALSE" };
            Some(format!(
                "{{ ($.readOnly IS {upper}) || ($.readOnly = \"{value}\") }}"
            ))
        }
        AttributeKey::Username | AttributeKey::ResourceName if plain && value != "root" => {
            Some(format!("\"{value}\""))
        }
        AttributeKey::Username | AttributeKey::ResourceName | AttributeKey::ResourceType => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::Attribute;
    use super::*;

    fn pattern(key: AttributeKey, value: &str) -> Option<String> {
        filter_pattern(&Query {
            attribute: Some(Attribute {
                key,
                value: value.into(),
            }),
            ..Query::default()
        })
    }

    #[test]
    fn patterns() {
        assert_eq!(
            pattern(AttributeKey::EventName, "DeleteBucket").as_deref(),
            Some("{ ($.eventName = \"DeleteBucket\") }")
        );
        assert_eq!(
            pattern(AttributeKey::ReadOnly, "false").as_deref(),
            Some("{ ($.readOnly IS FALSE) || ($.readOnly = \"false\") }")
        );
        assert_eq!(
            pattern(AttributeKey::ResourceName, "my-bucket").as_deref(),
            Some("\"my-bucket\"")
        );
        assert_eq!(pattern(AttributeKey::Username, "root"), None);
        assert_eq!(pattern(AttributeKey::ResourceType, "AWS::S3::Bucket"), None);
        assert_eq!(pattern(AttributeKey::EventName, "a\"b"), None);
        assert_eq!(pattern(AttributeKey::ResourceName, "caf\u{e9}"), None);
    }
}
