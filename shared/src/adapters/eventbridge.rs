//! EventBridge event sink: run reports and flow events on a dedicated bus, under ferry's own
//! source name (`Settings.event_source`, `ferry`).

use crate::error::StoreError;
use crate::ports::{Event, EventSink};
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

pub struct EventBridgeSink {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeSink {
    pub fn new(client: Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        EventBridgeSink {
            client,
            bus: bus.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
impl EventSink for EventBridgeSink {
    async fn publish(&self, event: &Event) -> Result<(), StoreError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(&event.detail_type)
            .detail(event.detail.to_string())
            .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                event.time.timestamp_millis(),
            ))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                super::sdk_error(format!("eventbridge PutEvents (bus {})", self.bus), e)
            })?;
        if out.failed_entry_count > 0 {
            let (code, msg) = out
                .entries
                .unwrap_or_default()
                .into_iter()
                .find(|e| e.error_code.is_some())
                .map(|e| {
                    (
                        e.error_code.unwrap_or_default(),
                        e.error_message.unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            return Err(StoreError::Invalid(format!(
                "eventbridge PutEvents on bus '{}' refused '{}': {code} {msg}",
                self.bus, event.detail_type
            )));
        }
        Ok(())
    }
}
