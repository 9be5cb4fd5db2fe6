//! `ordo parked list|redrive|discard --service order|processor`: the events
//! a service's outbox relay parked, over ordo.outbox.v1.OutboxAdminService.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use ordo_proto::OutboxAdminServiceClient;
use ordo_proto::outbox::v1::{
    DiscardParkedEventRequest, ListParkedEventsRequest, ParkedEvent, RedriveParkedEventRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::args::{ParkedAction, ParkedService};
use crate::connect::{Connection, MAX_ANSWER_BYTES, Service};
use crate::dlq::check_reason;
use crate::exit::CliError;
use crate::render::{Format, Table, plural, write_json};
use crate::time::{format_optional, from_optional};

/// The largest page ListParkedEvents gives.
const PAGE_SIZE: u32 = 100;

/// One parked event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedView {
    pub id: u64,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub subject: String,
    pub event_type: String,
    pub reason: String,
    pub create_time: Option<DateTime<Utc>>,
    pub park_time: Option<DateTime<Utc>>,
    pub headers: BTreeMap<String, String>,
    pub payload_size: u64,
}

impl From<ParkedEvent> for ParkedView {
    fn from(event: ParkedEvent) -> Self {
        Self {
            id: event.id,
            create_time: from_optional(event.create_time.as_ref()),
            park_time: from_optional(event.park_time.as_ref()),
            headers: event.headers.into_iter().collect(),
            event_id: event.event_id,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            subject: event.subject,
            event_type: event.event_type,
            reason: event.reason,
            payload_size: event.payload_size,
        }
    }
}

/// What `parked list` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedListView {
    pub service: &'static str,
    pub events: Vec<ParkedView>,
}

fn service_of(service: ParkedService) -> Service {
    match service {
        ParkedService::Order => Service::Orders,
        ParkedService::Processor => Service::Processor,
    }
}

fn client(
    connection: &Connection,
    service: Service,
) -> Result<OutboxAdminServiceClient<Channel>, CliError> {
    Ok(OutboxAdminServiceClient::new(connection.channel(service)?)
        .max_decoding_message_size(MAX_ANSWER_BYTES))
}

/// `ordo parked list`.
pub async fn list(
    connection: &Connection,
    service: ParkedService,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let service = service_of(service);
    let mut client = client(connection, service)?;
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_parked_events(connection.admin(ListParkedEventsRequest {
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
            }))
            .await
            .map_err(|status| {
                CliError::rpc(format!("{} ListParkedEvents", service.name()), status)
            })?
            .into_inner();
        events.extend(page.events.into_iter().map(ParkedView::from));
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            break;
        }
        page_token = page.next_page_token;
    }
    let view = ParkedListView {
        service: service.name(),
        events,
    };
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(out.write_all(render_list(&view).as_bytes())?),
    }
}

/// `parked list` as a table.
pub fn render_list(view: &ParkedListView) -> String {
    let mut table = Table::new(&["ID", "PARKED", "SUBJECT", "AGGREGATE", "BYTES", "REASON"]);
    for event in &view.events {
        table.row([
            event.id.to_string(),
            format_optional(event.park_time),
            event.subject.clone(),
            format!("{} {}", event.aggregate_type, event.aggregate_id),
            event.payload_size.to_string(),
            event.reason.clone(),
        ]);
    }
    format!(
        "{}{} in {}'s outbox\n",
        table.render(),
        plural(view.events.len(), "parked event"),
        view.service
    )
}

/// What `parked redrive` / `parked discard` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedDone {
    pub service: &'static str,
    pub id: u64,
    /// redriven or discarded.
    pub result: &'static str,
}

/// Whether to put the event back or drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedDecision {
    Redrive,
    Discard,
}

/// `ordo parked redrive` / `ordo parked discard`.
pub async fn decide(
    connection: &Connection,
    decision: ParkedDecision,
    args: &ParkedAction,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let reason = check_reason(&args.reason)?;
    let service = service_of(args.target.service);
    let mut client = client(connection, service)?;
    let result = match decision {
        ParkedDecision::Redrive => {
            client
                .redrive_parked_event(connection.admin(RedriveParkedEventRequest {
                    id: args.id,
                    reason,
                }))
                .await
                .map_err(|status| {
                    CliError::rpc(format!("{} RedriveParkedEvent", service.name()), status)
                })?;
            "redriven"
        }
        ParkedDecision::Discard => {
            client
                .discard_parked_event(connection.admin(DiscardParkedEventRequest {
                    id: args.id,
                    reason,
                }))
                .await
                .map_err(|status| {
                    CliError::rpc(format!("{} DiscardParkedEvent", service.name()), status)
                })?;
            "discarded"
        }
    };
    let view = ParkedDone {
        service: service.name(),
        id: args.id,
        result,
    };
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(writeln!(
            out,
            "parked event {} of {}: {}",
            view.id, view.service, view.result
        )?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_the_service_and_each_event() {
        let view = ParkedListView {
            service: "order-service",
            events: vec![ParkedView::from(ParkedEvent {
                id: 9,
                aggregate_type: "order".into(),
                aggregate_id: "o-1".into(),
                subject: "orders.placed".into(),
                reason: "header value with a line break".into(),
                payload_size: 120,
                ..ParkedEvent::default()
            })],
        };
        let text = render_list(&view);
        assert!(
            text.contains("9   -       orders.placed  order o-1  120    header value"),
            "{text}"
        );
        assert!(
            text.ends_with("1 parked event in order-service's outbox\n"),
            "{text}"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["events"][0]["payload_size"], 120);
    }
}
