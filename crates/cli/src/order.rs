//! `ordo order show` and `ordo order list`.
//!
//! `show` asks four things at once — the order (order service), the
//! processor's record, and the trail of both services (OperatorService
//! GetOrderTrail) — then [`assemble`] decides, with no I/O, what can be
//! shown: a service that does not answer leaves a warning, the other's
//! side is still shown, and only when neither answers is the command
//! UNAVAILABLE. The trails are merged into one timeline by [`merge_timeline`].

use std::io::Write;

use chrono::{DateTime, Utc};
use ordo_proto::operator::v1::{GetOrderTrailRequest, TrailEntry};
use ordo_proto::order::v1::{GetOrderRequest, ListOrdersRequest, Order};
use ordo_proto::processor::v1::{
    DeadLetterFilter, GetOrderProcessingRequest, ListDeadLettersRequest, OrderProcessing,
};
use ordo_proto::{OperatorServiceClient, OrderServiceClient, ProcessorServiceClient};
use serde::Serialize;
use tonic::{Code, Status};

use crate::args::{OrderListArgs, OrderShowArgs};
use crate::connect::{Connection, MAX_ANSWER_BYTES, Service};
use crate::exit::{CliError, StatusText};
use crate::render::{
    Format, Table, enum_name, fields, money, one_line, short_id, warn, write_json,
};
use crate::time::{format_optional, from_optional};

/// The most orders one ListOrders page may hold.
const MAX_PAGE: u32 = 500;

/// One order, as the order service has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    /// pending, confirmed, rejected or cancelled.
    pub status: String,
    pub status_reason: String,
    pub currency: String,
    pub total_minor: i64,
    /// The total as the currency writes it, e.g. `18.00 EUR`.
    pub total: String,
    pub correlation_id: String,
    pub create_time: Option<DateTime<Utc>>,
    pub update_time: Option<DateTime<Utc>>,
    pub lines: Vec<LineView>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineView {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            status: enum_name(order.status().as_str_name(), "ORDER_STATUS_"),
            total: money(order.total_minor, &order.currency),
            create_time: from_optional(order.create_time.as_ref()),
            update_time: from_optional(order.update_time.as_ref()),
            lines: order
                .lines
                .into_iter()
                .map(|line| LineView {
                    sku: line.sku,
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                })
                .collect(),
            order_id: order.order_id,
            customer_id: order.customer_id,
            status_reason: order.status_reason,
            currency: order.currency,
            total_minor: order.total_minor,
            correlation_id: order.correlation_id,
        }
    }
}

/// The processor's record of an order (its failed attempts and the
/// operators' decisions are in the timeline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessingView {
    /// e.g. retrying, confirmed, dead_lettered.
    pub state: String,
    pub attempts: u32,
    pub status_reason: String,
    pub payment_id: String,
    pub refund_id: String,
    pub update_time: Option<DateTime<Utc>>,
}

impl From<OrderProcessing> for ProcessingView {
    fn from(processing: OrderProcessing) -> Self {
        Self {
            state: enum_name(processing.state().as_str_name(), "PROCESSING_STATE_"),
            attempts: processing.attempts,
            update_time: from_optional(processing.update_time.as_ref()),
            status_reason: processing.status_reason,
            payment_id: processing.payment_id,
            refund_id: processing.refund_id,
        }
    }
}

/// One thing that happened to the order in one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub time: Option<DateTime<Utc>>,
    pub service: String,
    pub kind: String,
    pub text: String,
    pub message_id: String,
    pub subject: String,
    /// The message's sequence in its stream, once known.
    pub stream_sequence: Option<u64>,
    pub stream: String,
    pub actor: String,
    pub code: String,
    pub correlation_id: String,
}

impl TimelineEntry {
    fn from_proto(service: &str, entry: TrailEntry) -> Self {
        Self {
            time: from_optional(entry.occur_time.as_ref()),
            service: service.to_owned(),
            kind: entry.kind,
            text: entry.text,
            message_id: entry.message_id,
            subject: entry.subject,
            stream_sequence: (entry.stream_sequence > 0).then_some(entry.stream_sequence),
            stream: entry.stream,
            actor: entry.actor,
            code: entry.code,
            correlation_id: entry.correlation_id,
        }
    }

    /// The message it concerns, short: `orders.placed #42 …0587e0ac2ee7`.
    fn message_cell(&self) -> String {
        let mut parts = Vec::new();
        if !self.subject.is_empty() {
            parts.push(self.subject.clone());
        }
        if let Some(sequence) = self.stream_sequence {
            parts.push(format!("#{sequence}"));
        }
        if !self.message_id.is_empty() {
            parts.push(short_id(&self.message_id));
        }
        parts.join(" ")
    }

    /// Who, and the error code of a failed attempt: `proc-1 / payment_timeout`.
    fn actor_cell(&self) -> String {
        [self.actor.as_str(), self.code.as_str()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// One service's trail: who answered, and its entries oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTrail {
    pub service: String,
    pub entries: Vec<TrailEntry>,
}

/// The trails of several services as one timeline, oldest first. The sort
/// is stable: entries at the same time keep the order of `trails` (the
/// order service's first), and within a service their own order; an entry
/// without a time comes first.
pub fn merge_timeline(trails: Vec<ServiceTrail>) -> Vec<TimelineEntry> {
    let mut merged: Vec<TimelineEntry> = trails
        .into_iter()
        .flat_map(|trail| {
            let service = trail.service;
            trail
                .entries
                .into_iter()
                .map(move |entry| TimelineEntry::from_proto(&service, entry))
        })
        .collect();
    merged.sort_by_key(|entry| entry.time);
    merged
}

/// What `ordo order show` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderShowView {
    pub order_id: String,
    /// The order service's order; null when it has none or did not answer.
    pub order: Option<OrderView>,
    /// The processor's record; null when it has none or did not answer.
    pub processing: Option<ProcessingView>,
    /// Both services' trails, merged, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The order's trace in Jaeger, with `--jaeger`.
    pub trace_url: Option<String>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub processor_answered: bool,
}

impl OrderShowView {
    /// The order's correlation id: the order's, else the first an entry carries.
    pub fn correlation_id(&self) -> Option<&str> {
        self.order
            .as_ref()
            .map(|order| order.correlation_id.as_str())
            .filter(|id| !id.is_empty())
            .or_else(|| {
                self.timeline
                    .iter()
                    .map(|entry| entry.correlation_id.as_str())
                    .find(|id| !id.is_empty())
            })
    }
}

/// What the four calls of `order show` answered (NOT_FOUND already turned
/// into `Ok(None)`).
#[derive(Debug)]
pub struct Answers {
    pub order: Result<Option<Order>, Status>,
    pub order_trail: Result<ServiceTrail, Status>,
    pub processor_trail: Result<ServiceTrail, Status>,
    pub processing: Result<Option<OrderProcessing>, Status>,
}

/// Whether a failed call means its service did not answer at all.
fn unanswered(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}

/// Decides what `order show` shows from what the services answered: a
/// service that did not answer leaves a warning; neither answering is
/// UNAVAILABLE; an order no service knows is NOT_FOUND; any other failure
/// (a refused token, a malformed id) ends the command with it.
pub fn assemble(order_id: &str, answers: Answers) -> Result<OrderShowView, CliError> {
    let Answers {
        order,
        order_trail,
        processor_trail,
        processing,
    } = answers;
    let calls: [(Service, &str, Option<&Status>); 4] = [
        (Service::Orders, "GetOrder", order.as_ref().err()),
        (Service::Orders, "GetOrderTrail", order_trail.as_ref().err()),
        (
            Service::Processor,
            "GetOrderTrail",
            processor_trail.as_ref().err(),
        ),
        (
            Service::Processor,
            "GetOrderProcessing",
            processing.as_ref().err(),
        ),
    ];
    let mut warnings = Vec::new();
    for (service, call, status) in calls {
        let Some(status) = status else { continue };
        match status.code() {
            _ if unanswered(status) => {}
            Code::Unimplemented => warnings.push(format!(
                "{} does not serve {call} (an older version?): its part is missing",
                service.name()
            )),
            _ => {
                return Err(CliError::rpc(
                    format!("{} {call}", service.name()),
                    status.clone(),
                ));
            }
        }
    }
    // A service is silent when every call to it went unanswered.
    let silence = |service: Service| -> Option<String> {
        let mut statuses = calls
            .iter()
            .filter(|(of, _, _)| *of == service)
            .map(|(_, _, status)| *status);
        let first = statuses.next().flatten()?;
        (unanswered(first) && statuses.all(|status| status.is_some_and(unanswered)))
            .then(|| StatusText(first).to_string())
    };
    let (orders_silent, processor_silent) = (silence(Service::Orders), silence(Service::Processor));
    match (&orders_silent, &processor_silent) {
        (Some(orders), Some(processor)) => {
            return Err(CliError::Unavailable(format!(
                "neither service answered: order-service: {orders}; processor: {processor}"
            )));
        }
        (Some(why), None) | (None, Some(why)) => {
            let service = if orders_silent.is_some() {
                Service::Orders
            } else {
                Service::Processor
            };
            warnings.push(format!(
                "{} did not answer ({why}): its side is missing",
                service.name()
            ));
        }
        (None, None) => {}
    }

    let order = order.ok().flatten();
    let processing = processing.ok().flatten();
    let trails: Vec<ServiceTrail> = [order_trail, processor_trail]
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let timeline = merge_timeline(trails);
    if order.is_none() && processing.is_none() && timeline.is_empty() {
        let message = format!("no service knows order {}", one_line(order_id));
        return Err(if orders_silent.is_some() || processor_silent.is_some() {
            CliError::Unavailable(format!("{message}, and one did not answer"))
        } else {
            CliError::NotFound(message)
        });
    }
    if order.is_none() && orders_silent.is_none() {
        warnings.push(format!(
            "the order service has no order {}",
            one_line(order_id)
        ));
    }
    Ok(OrderShowView {
        order_id: order_id.to_owned(),
        order: order.map(OrderView::from),
        processing: processing.map(ProcessingView::from),
        timeline,
        trace_url: None,
        warnings,
        processor_answered: processor_silent.is_none(),
    })
}

/// The Jaeger link of an order's trace: the trace itself when its id is
/// known, else a search for the order service's spans tagged with the
/// order's correlation id; `None` with neither.
pub fn trace_link(
    base: &str,
    trace_id: Option<&str>,
    correlation_id: Option<&str>,
) -> Option<String> {
    let base = base.trim().trim_end_matches('/');
    if let Some(trace_id) = trace_id {
        return Some(format!("{base}/trace/{trace_id}"));
    }
    let correlation_id = correlation_id.filter(|id| !id.is_empty())?;
    let mut tags = serde_json::Map::new();
    tags.insert(CORRELATION_TAG.to_owned(), correlation_id.into());
    let tags = serde_json::Value::Object(tags).to_string();
    Some(format!(
        "{base}/search?service=order-service&tags={}",
        percent_encode(&tags)
    ))
}

/// The span attribute the services record the correlation id under
/// (`ordo_telemetry::CORRELATION_ID`, not depended on for one string).
const CORRELATION_TAG: &str = "correlation_id";

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|byte| byte != b'0')
        && hex(parent_id, 16)
        && hex(flags, 2);
    valid.then(|| trace_id.to_ascii_lowercase())
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Turns NOT_FOUND into "none".
fn found<T>(answer: Result<Option<T>, Status>) -> Result<Option<T>, Status> {
    match answer {
        Err(status) if status.code() == Code::NotFound => Ok(None),
        other => other,
    }
}

/// `ordo order show`.
pub async fn show(
    connection: &Connection,
    args: &OrderShowArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let order_id = args.order_id.trim().to_owned();
    let orders = connection.channel(Service::Orders)?;
    let processor = connection.channel(Service::Processor)?;
    let mut order_client =
        OrderServiceClient::new(orders.clone()).max_decoding_message_size(MAX_ANSWER_BYTES);
    let mut order_operator =
        OperatorServiceClient::new(orders).max_decoding_message_size(MAX_ANSWER_BYTES);
    let mut processor_operator =
        OperatorServiceClient::new(processor.clone()).max_decoding_message_size(MAX_ANSWER_BYTES);
    let mut processor_client =
        ProcessorServiceClient::new(processor).max_decoding_message_size(MAX_ANSWER_BYTES);
    let trail_request = || GetOrderTrailRequest {
        order_id: order_id.clone(),
    };
    let trail = |service: Service| {
        move |response: tonic::Response<ordo_proto::operator::v1::GetOrderTrailResponse>| {
            let response = response.into_inner();
            ServiceTrail {
                service: if response.service.is_empty() {
                    service.name().to_owned()
                } else {
                    response.service
                },
                entries: response.entries,
            }
        }
    };
    let (order, order_trail, processor_trail, processing) = tokio::join!(
        order_client.get_order(connection.request(GetOrderRequest {
            order_id: order_id.clone(),
        })),
        order_operator.get_order_trail(connection.admin(trail_request())),
        processor_operator.get_order_trail(connection.admin(trail_request())),
        processor_client.get_order_processing(connection.request(GetOrderProcessingRequest {
            order_id: order_id.clone(),
        })),
    );
    let answers = Answers {
        order: found(order.map(|response| response.into_inner().order)),
        order_trail: order_trail.map(trail(Service::Orders)),
        processor_trail: processor_trail.map(trail(Service::Processor)),
        processing: found(processing.map(|response| response.into_inner().processing)),
    };
    let mut view = assemble(&order_id, answers)?;

    if let Some(base) = &args.jaeger {
        let trace_id = if view.processor_answered {
            dead_letter_trace_id(connection, &mut processor_client, &order_id).await
        } else {
            None
        };
        view.trace_url = trace_link(base, trace_id.as_deref(), view.correlation_id());
        if view.trace_url.is_none() {
            view.warnings
                .push("no trace id or correlation id is known: no trace link".to_owned());
        }
    }
    for warning in &view.warnings {
        warn(warning);
    }
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(out.write_all(render_show(&view).as_bytes())?),
    }
}

/// The trace id in the headers of the order's dead letter, if it has one
/// (the only place the API carries a trace id); any failure is no id.
async fn dead_letter_trace_id(
    connection: &Connection,
    client: &mut ProcessorServiceClient<tonic::transport::Channel>,
    order_id: &str,
) -> Option<String> {
    let page = client
        .list_dead_letters(connection.admin(ListDeadLettersRequest {
            page_size: 1,
            page_token: String::new(),
            filter: Some(DeadLetterFilter {
                order_id: order_id.to_owned(),
                ..DeadLetterFilter::default()
            }),
        }))
        .await
        .ok()?
        .into_inner();
    page.dead_letters
        .iter()
        .find_map(|letter| letter.headers.get("traceparent"))
        .and_then(|traceparent| trace_id_of(traceparent))
}

/// The order's header and its timeline as text.
pub fn render_show(view: &OrderShowView) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("order", view.order_id.clone())];
    if let Some(order) = &view.order {
        let status = if order.status_reason.is_empty() {
            order.status.clone()
        } else {
            format!("{} ({})", order.status, order.status_reason)
        };
        pairs.extend([
            ("status", status),
            ("customer", order.customer_id.clone()),
            (
                "total",
                format!(
                    "{} in {} line{}",
                    order.total,
                    order.lines.len(),
                    if order.lines.len() == 1 { "" } else { "s" }
                ),
            ),
            ("correlation id", order.correlation_id.clone()),
            ("placed", format_optional(order.create_time)),
            ("updated", format_optional(order.update_time)),
        ]);
    }
    match &view.processing {
        Some(processing) => {
            let mut state = format!(
                "{}, {} failed attempt{}",
                processing.state,
                processing.attempts,
                if processing.attempts == 1 { "" } else { "s" }
            );
            if !processing.status_reason.is_empty() {
                state.push_str(&format!(": {}", processing.status_reason));
            }
            pairs.push(("processor", state));
            if !processing.payment_id.is_empty() {
                pairs.push(("payment", processing.payment_id.clone()));
            }
            if !processing.refund_id.is_empty() {
                pairs.push(("refund", processing.refund_id.clone()));
            }
        }
        None if view.processor_answered => pairs.push(("processor", "no record".to_owned())),
        None => {}
    }
    if let Some(url) = &view.trace_url {
        pairs.push(("trace", url.clone()));
    }
    // The text last: it is the longest, and unpadded there.
    let mut table = Table::new(&["TIME", "SERVICE", "KIND", "ACTOR/CODE", "MESSAGE", "TEXT"]);
    for entry in &view.timeline {
        table.row([
            format_optional(entry.time),
            entry.service.clone(),
            entry.kind.clone(),
            entry.actor_cell(),
            entry.message_cell(),
            entry.text.clone(),
        ]);
    }
    format!("{}\n{}", fields(&pairs), table.render())
}

/// What `ordo order list` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderListView {
    pub orders: Vec<OrderView>,
    /// Whether more orders match than were fetched.
    pub more: bool,
}

/// `ordo order list`: pages until `--limit` orders or the last page.
pub async fn list(
    connection: &Connection,
    args: &OrderListArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut client = OrderServiceClient::new(connection.channel(Service::Orders)?)
        .max_decoding_message_size(MAX_ANSWER_BYTES);
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let mut orders: Vec<OrderView> = Vec::new();
    let mut page_token = String::new();
    let more = loop {
        let wanted = u32::try_from(limit - orders.len()).unwrap_or(MAX_PAGE);
        let page = client
            .list_orders(connection.request(ListOrdersRequest {
                customer_id: args.customer.clone().unwrap_or_default(),
                status: args.status.map_or(0, |status| status.to_proto() as i32),
                page_size: wanted.min(MAX_PAGE),
                page_token: std::mem::take(&mut page_token),
            }))
            .await
            .map_err(|status| CliError::rpc("order-service ListOrders", status))?
            .into_inner();
        let last = page.next_page_token.is_empty() || page.orders.is_empty();
        orders.extend(page.orders.into_iter().map(OrderView::from));
        if orders.len() >= limit {
            let more = orders.len() > limit || !last;
            orders.truncate(limit);
            break more;
        }
        if last {
            break false;
        }
        page_token = page.next_page_token;
    };
    let view = OrderListView { orders, more };
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => {
            let mut table =
                Table::new(&["ORDER", "STATUS", "CUSTOMER", "TOTAL", "PLACED", "REASON"]);
            for order in &view.orders {
                table.row([
                    order.order_id.clone(),
                    order.status.clone(),
                    order.customer_id.clone(),
                    order.total.clone(),
                    format_optional(order.create_time),
                    order.status_reason.clone(),
                ]);
            }
            out.write_all(table.render().as_bytes())?;
            if view.more {
                writeln!(out, "(more orders match: raise --limit)")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use ordo_proto::order::v1::OrderStatus;
    use ordo_proto::processor::v1::ProcessingState;

    use super::*;

    fn at(raw: &str) -> prost_types::Timestamp {
        let time = DateTime::parse_from_rfc3339(raw)
            .unwrap()
            .with_timezone(&Utc);
        ordo_proto::timestamp(time)
    }

    fn entry(time: &str, kind: &str) -> TrailEntry {
        TrailEntry {
            occur_time: Some(at(time)),
            kind: kind.to_owned(),
            ..TrailEntry::default()
        }
    }

    fn trail(service: &str, entries: Vec<TrailEntry>) -> ServiceTrail {
        ServiceTrail {
            service: service.to_owned(),
            entries,
        }
    }

    fn order() -> Order {
        Order {
            order_id: "0190f3a2-1111-7222-8333-444455556666".into(),
            customer_id: "cust-42".into(),
            currency: "EUR".into(),
            total_minor: 1800,
            status: OrderStatus::Pending as i32,
            correlation_id: "checkout-1".into(),
            create_time: Some(at("2025-05-01T12:00:00Z")),
            ..Order::default()
        }
    }

    fn kinds(timeline: &[TimelineEntry]) -> Vec<(String, String)> {
        timeline
            .iter()
            .map(|entry| (entry.service.clone(), entry.kind.clone()))
            .collect()
    }

    fn pair(service: &str, kind: &str) -> (String, String) {
        (service.to_owned(), kind.to_owned())
    }

    #[test]
    fn trails_merge_by_time_with_ties_to_the_order_service() {
        let orders = trail(
            "order-service",
            vec![
                entry("2025-05-01T12:00:00Z", "placed"),
                entry("2025-05-01T12:00:01Z", "published"),
                entry("2025-05-01T12:00:05Z", "status_changed"),
            ],
        );
        let processor = trail(
            "processor",
            vec![
                entry("2025-05-01T12:00:01Z", "received"),
                entry("2025-05-01T12:00:02Z", "attempt_failed"),
                entry("2025-05-01T12:00:04Z", "payment"),
            ],
        );
        assert_eq!(
            kinds(&merge_timeline(vec![orders, processor])),
            vec![
                pair("order-service", "placed"),
                pair("order-service", "published"),
                pair("processor", "received"),
                pair("processor", "attempt_failed"),
                pair("processor", "payment"),
                pair("order-service", "status_changed"),
            ]
        );
    }

    #[test]
    fn entries_at_the_same_time_keep_their_order_within_a_service() {
        let processor = trail(
            "processor",
            vec![
                entry("2025-05-01T12:00:01Z", "received"),
                entry("2025-05-01T12:00:01Z", "payment"),
                TrailEntry {
                    kind: "timeless".into(),
                    ..TrailEntry::default()
                },
            ],
        );
        assert_eq!(
            kinds(&merge_timeline(vec![processor])),
            vec![
                pair("processor", "timeless"),
                pair("processor", "received"),
                pair("processor", "payment"),
            ]
        );
        assert!(merge_timeline(Vec::new()).is_empty());
    }

    fn answers() -> Answers {
        Answers {
            order: Ok(Some(order())),
            order_trail: Ok(trail(
                "order-service",
                vec![entry("2025-05-01T12:00:00Z", "placed")],
            )),
            processor_trail: Ok(trail(
                "processor",
                vec![TrailEntry {
                    code: "payment_unavailable".into(),
                    ..entry("2025-05-01T12:00:02Z", "attempt_failed")
                }],
            )),
            processing: Ok(Some(OrderProcessing {
                state: ProcessingState::Retrying as i32,
                attempts: 1,
                ..OrderProcessing::default()
            })),
        }
    }

    #[test]
    fn both_services_answering_gives_the_whole_life() {
        let view = assemble("o-1", answers()).unwrap();
        assert!(view.warnings.is_empty(), "{:?}", view.warnings);
        assert_eq!(view.order.as_ref().unwrap().status, "pending");
        assert_eq!(view.processing.as_ref().unwrap().state, "retrying");
        assert_eq!(view.timeline.len(), 2);
        assert_eq!(view.correlation_id(), Some("checkout-1"));
    }

    #[test]
    fn a_silent_processor_leaves_a_warning_and_the_order_services_side() {
        let view = assemble(
            "o-1",
            Answers {
                processor_trail: Err(Status::unavailable("connection refused")),
                processing: Err(Status::unavailable("connection refused")),
                ..answers()
            },
        )
        .unwrap();
        assert_eq!(view.timeline.len(), 1);
        assert!(!view.processor_answered);
        assert_eq!(view.warnings.len(), 1);
        assert!(
            view.warnings[0]
                .starts_with("processor did not answer (unavailable: connection refused)"),
            "{:?}",
            view.warnings
        );
    }

    #[test]
    fn neither_service_answering_is_unavailable() {
        let down = || Status::unavailable("connection refused");
        let error = assemble(
            "o-1",
            Answers {
                order: Err(down()),
                order_trail: Err(Status::deadline_exceeded("slow")),
                processor_trail: Err(down()),
                processing: Err(down()),
            },
        )
        .unwrap_err();
        assert_eq!(error.exit().code(), 5, "{error}");
    }

    #[test]
    fn a_refused_token_ends_the_command() {
        let error = assemble(
            "o-1",
            Answers {
                processor_trail: Err(Status::unauthenticated("wrong token")),
                ..answers()
            },
        )
        .unwrap_err();
        assert_eq!(error.exit().code(), 4);
        assert!(
            error.to_string().starts_with("processor GetOrderTrail"),
            "{error}"
        );
    }

    #[test]
    fn an_order_nobody_knows_is_not_found_unless_a_service_was_silent() {
        let nothing = || Answers {
            order: Ok(None),
            order_trail: Ok(trail("order-service", Vec::new())),
            processor_trail: Ok(trail("processor", Vec::new())),
            processing: Ok(None),
        };
        assert_eq!(assemble("o-1", nothing()).unwrap_err().exit().code(), 3);
        let silent = Answers {
            processor_trail: Err(Status::unavailable("down")),
            processing: Err(Status::unavailable("down")),
            ..nothing()
        };
        assert_eq!(assemble("o-1", silent).unwrap_err().exit().code(), 5);
    }

    #[test]
    fn an_order_only_the_processor_knows_is_shown_with_a_warning() {
        let view = assemble(
            "o-1",
            Answers {
                order: Ok(None),
                ..answers()
            },
        )
        .unwrap();
        assert!(view.order.is_none());
        assert_eq!(view.warnings, vec!["the order service has no order o-1"]);
    }

    #[test]
    fn an_older_service_without_trails_still_shows_the_order() {
        let view = assemble(
            "o-1",
            Answers {
                order_trail: Err(Status::unimplemented("")),
                ..answers()
            },
        )
        .unwrap();
        assert!(view.warnings[0].contains("does not serve GetOrderTrail"));
        assert_eq!(view.timeline.len(), 1);
    }

    #[test]
    fn the_trace_link_prefers_the_trace_id() {
        assert_eq!(
            trace_link(
                "http://127.0.0.1:16686/",
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                Some("c-1")
            ),
            Some("http://127.0.0.1:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736".to_owned())
        );
        assert_eq!(
            trace_link("http://127.0.0.1:16686", None, Some("checkout 1")),
            Some(
                "http://127.0.0.1:16686/search?service=order-service&tags=\
                 %7B%22correlation_id%22%3A%22checkout%201%22%7D"
                    .to_owned()
            )
        );
        assert_eq!(trace_link("http://j", None, Some("")), None);
        assert_eq!(trace_link("http://j", None, None), None);
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned())
        );
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_show_table_has_the_header_and_one_row_per_entry() {
        let view = assemble("0190f3a2-1111-7222-8333-444455556666", answers()).unwrap();
        let text = render_show(&view);
        assert!(text.contains("status          pending\n"), "{text}");
        assert!(
            text.contains("total           18.00 EUR in 0 lines\n"),
            "{text}"
        );
        assert!(
            text.contains("processor       retrying, 1 failed attempt\n"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("TIME"))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[1].contains("order-service  placed"), "{text}");
        assert!(rows[2].contains("  payment_unavailable  "), "{text}");
    }

    #[test]
    fn the_show_json_has_a_stable_shape() {
        let view = assemble("o-1", answers()).unwrap();
        let json = serde_json::to_value(&view).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "order",
                "order_id",
                "processing",
                "timeline",
                "trace_url",
                "warnings"
            ]
        );
        assert_eq!(json["order"]["total"], "18.00 EUR");
        assert_eq!(json["order"]["create_time"], "2025-05-01T12:00:00Z");
        assert_eq!(json["timeline"][1]["code"], "payment_unavailable");
        assert_eq!(
            json["timeline"][1]["stream_sequence"],
            serde_json::Value::Null
        );
    }
}
