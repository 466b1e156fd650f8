//! An EventBridge bus, as an [`EventBus`].

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use aws_smithy_types::date_time::{DateTime, Format};
use trailwatch::forward::{BusError, Entry, EntryOutcome, EventBus};

use crate::describe;

pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: String) -> Self {
        EventBridgeBus { client, bus_name }
    }
}

impl EventBus for EventBridgeBus {
    async fn put_events(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, BusError> {
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_time(
                        e.time
                            .as_deref()
                            .and_then(|t| DateTime::from_str(t, Format::DateTime).ok()),
                    )
                    .set_resources((!e.resources.is_empty()).then(|| e.resources.clone()))
                    .build()
            })
            .collect();
        let output = self
            .client
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| BusError {
                // The SDK already retried throttling and transient faults; a validation error
                // will not pass on a retry.
                retryable: e
                    .as_service_error()
                    .is_none_or(|s| s.meta().code() != Some("ValidationException")),
                message: format!("PutEvents to {}: {}", self.bus_name, describe(&e)),
                source: Some(Box::new(e)),
            })?;
        Ok(output
            .entries()
            .iter()
            .map(|r| match (r.event_id(), r.error_code()) {
                (Some(id), None) => EntryOutcome::Accepted {
                    event_id: id.to_owned(),
                },
                (_, code) => EntryOutcome::Failed {
                    code: code.unwrap_or("Unknown").to_owned(),
                    message: r.error_message().unwrap_or("").to_owned(),
                },
            })
            .collect())
    }
}
