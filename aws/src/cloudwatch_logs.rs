//! The trail log group in CloudWatch Logs, as a [`LogSink`].

use std::collections::HashSet;
use std::sync::Mutex;

use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, RejectedLogEventsInfo};
use aws_sdk_cloudwatchlogs::Client;
use trailwatch::deliver::{LogEvent, LogSink, RejectedRanges, SinkError};

use crate::describe;

pub struct CloudWatchLogs {
    client: Client,
    group: String,
    retention_days: Option<u32>,
    /// Streams known to exist, so creation is tried once per stream per container.
    ready: Mutex<HashSet<String>>,
}

impl CloudWatchLogs {
    pub fn new(client: Client, group: String, retention_days: Option<u32>) -> Self {
        CloudWatchLogs {
            client,
            group,
            retention_days,
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// Creates the group (with its retention) and the stream; "already exists" is success, so
    /// concurrent invocations racing to create them are fine.
    async fn create(&self, stream: &str) -> Result<(), SinkError> {
        match self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => {
                if let Some(days) = self.retention_days {
                    self.client
                        .put_retention_policy()
                        .log_group_name(&self.group)
                        .retention_in_days(days as i32)
                        .send()
                        .await
                        .map_err(|e| failure("PutRetentionPolicy", &self.group, e, true))?;
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(failure("CreateLogGroup", &self.group, e, true)),
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(failure("CreateLogStream", stream, e, true)),
        }
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.to_owned());
        Ok(())
    }
}

fn failure<E>(operation: &str, name: &str, error: E, retryable: bool) -> SinkError
where
    E: std::error::Error + Send + Sync + 'static,
{
    SinkError::new(
        retryable,
        format!("{operation} {name}: {}", describe(&error)),
    )
    .caused_by(error)
}

impl LogSink for CloudWatchLogs {
    async fn put_batch(
        &self,
        stream: &str,
        events: &[LogEvent<'_>],
    ) -> Result<RejectedRanges, SinkError> {
        let known = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(stream);
        if !known {
            // Creating first costs two calls per new stream per container; discovering a
            // missing stream by a failed put would cost the same and log an error.
            self.create(stream).await?;
        }
        let input: Vec<InputLogEvent> = events
            .iter()
            .map(|e| {
                InputLogEvent::builder()
                    .timestamp(e.timestamp_ms)
                    .message(e.message)
                    .build()
                    .expect("timestamp and message are set")
            })
            .collect();
        for attempt in 0..2 {
            let result = self
                .client
                .put_log_events()
                .log_group_name(&self.group)
                .log_stream_name(stream)
                .set_log_events(Some(input.clone()))
                .send()
                .await;
            match result {
                Ok(output) => return Ok(ranges(output.rejected_log_events_info())),
                Err(e) => {
                    let service = e.as_service_error();
                    if attempt == 0
                        && service.is_some_and(PutLogEventsError::is_resource_not_found_exception)
                    {
                        // Deleted behind our back: create again and retry once.
                        self.create(stream).await?;
                        continue;
                    }
                    // The SDK already retried throttling, 5xx, timeouts and dropped connections.
                    // An invalid parameter means a planner bug or a limit AWS changed: retrying
                    // the same batch cannot help, but the messages still go back to SQS (and
                    // then the dead-letter queue), so nothing is lost.
                    let retryable =
                        !service.is_some_and(PutLogEventsError::is_invalid_parameter_exception);
                    return Err(failure("PutLogEvents", stream, e, retryable));
                }
            }
        }
        Err(SinkError::new(
            true,
            format!("PutLogEvents {stream}: stream missing after creation"),
        ))
    }
}

/// CloudWatch Logs' rejected-event indices, as documented: tooOld and expired are exclusive
/// end indices, tooNew an inclusive start. (moto reports tooOld as inclusive — the index of the
/// last old event — one less than AWS; trailwatch screens old events out before the call, so
/// this path only sees events that aged past the limit in flight.)
fn ranges(info: Option<&RejectedLogEventsInfo>) -> RejectedRanges {
    let index = |v: Option<i32>| v.and_then(|i| usize::try_from(i).ok());
    match info {
        None => RejectedRanges::default(),
        Some(info) => RejectedRanges {
            too_new_start: index(info.too_new_log_event_start_index()),
            too_old_end: index(info.too_old_log_event_end_index()),
            expired_end: index(info.expired_log_event_end_index()),
        },
    }
}
