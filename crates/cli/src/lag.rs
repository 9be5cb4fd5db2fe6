//! `ordo lag`: OperatorService/GetStatus of both services, side by side.
//!
//! Both are asked at once; [`assemble`] decides with no I/O: a service
//! that does not answer is a warning (UNAVAILABLE only when neither does),
//! and whatever a service could not ask (its `unavailable` list, e.g. NATS
//! being down) becomes a warning too. Ages are measured against the
//! service's own `read_time`, so clocks apart do not skew them.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use ordo_proto::OperatorServiceClient;
use ordo_proto::operator::v1::{GetStatusRequest, GetStatusResponse};
use serde::Serialize;
use tonic::{Code, Status};

use crate::connect::{Connection, MAX_ANSWER_BYTES, Service};
use crate::exit::{CliError, StatusText};
use crate::render::{Format, Table, cell, warn, write_json};
use crate::time::{format_age, format_optional, from_optional};

/// One outbox partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionView {
    pub partition: u32,
    pub backlog: u64,
    pub oldest_create_time: Option<DateTime<Utc>>,
    /// Seconds the oldest waiting event has waited, at the read time.
    pub oldest_age_seconds: Option<i64>,
    pub lease_holder: String,
    pub lease_expire_time: Option<DateTime<Utc>>,
}

/// One service's outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxView {
    pub partition_count: u32,
    /// Events waiting over all partitions.
    pub backlog: u64,
    /// The longest any waiting event has waited, in seconds.
    pub oldest_age_seconds: Option<i64>,
    pub parked: u64,
    pub partitions: Vec<PartitionView>,
}

/// One durable consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerView {
    pub name: String,
    pub stream: String,
    pub pending: u64,
    pub ack_pending: u64,
    pub redelivered: u64,
}

/// One dead-letter stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterStreamView {
    pub stream: String,
    pub messages: u64,
    pub oldest_time: Option<DateTime<Utc>>,
}

/// One circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    pub name: String,
    pub state: String,
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatusView {
    pub service: String,
    pub instance: String,
    pub read_time: Option<DateTime<Utc>>,
    pub outbox: Option<OutboxView>,
    pub consumers: Vec<ConsumerView>,
    pub dead_letters: Vec<DeadLetterStreamView>,
    pub breakers: Vec<BreakerView>,
    /// What the service could not ask, and why.
    pub unavailable: Vec<String>,
}

impl ServiceStatusView {
    fn from_proto(fallback_name: &str, status: GetStatusResponse) -> Self {
        let read_time = from_optional(status.read_time.as_ref());
        let age_at = |time: Option<DateTime<Utc>>| {
            let now = read_time.unwrap_or_else(Utc::now);
            time.map(|time| (now - time).num_seconds().max(0))
        };
        let outbox = status.outbox.map(|outbox| {
            let partitions: Vec<PartitionView> = outbox
                .partitions
                .into_iter()
                .map(|partition| {
                    let oldest = from_optional(partition.oldest_create_time.as_ref());
                    PartitionView {
                        partition: partition.partition,
                        backlog: partition.backlog,
                        oldest_create_time: oldest,
                        oldest_age_seconds: age_at(oldest),
                        lease_holder: partition.lease_holder,
                        lease_expire_time: from_optional(partition.lease_expire_time.as_ref()),
                    }
                })
                .collect();
            OutboxView {
                partition_count: outbox.partition_count,
                backlog: partitions.iter().map(|partition| partition.backlog).sum(),
                oldest_age_seconds: partitions
                    .iter()
                    .filter_map(|partition| partition.oldest_age_seconds)
                    .max(),
                parked: outbox.parked,
                partitions,
            }
        });
        Self {
            service: if status.service.is_empty() {
                fallback_name.to_owned()
            } else {
                status.service
            },
            instance: status.instance,
            read_time,
            outbox,
            consumers: status
                .consumers
                .into_iter()
                .map(|consumer| ConsumerView {
                    name: consumer.name,
                    stream: consumer.stream,
                    pending: consumer.pending,
                    ack_pending: consumer.ack_pending,
                    redelivered: consumer.redelivered,
                })
                .collect(),
            dead_letters: status
                .dead_letters
                .into_iter()
                .map(|stream| DeadLetterStreamView {
                    oldest_time: from_optional(stream.oldest_time.as_ref()),
                    stream: stream.stream,
                    messages: stream.messages,
                })
                .collect(),
            breakers: status
                .breakers
                .into_iter()
                .map(|breaker| BreakerView {
                    name: breaker.name,
                    state: breaker.state,
                })
                .collect(),
            unavailable: status.unavailable,
        }
    }
}

/// What `ordo lag` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagView {
    /// The services that answered, order service first.
    pub services: Vec<ServiceStatusView>,
    pub warnings: Vec<String>,
}

/// Decides what `lag` shows from both answers (order service first).
pub fn assemble(
    answers: Vec<(Service, Result<GetStatusResponse, Status>)>,
) -> Result<LagView, CliError> {
    let mut services = Vec::new();
    let mut warnings = Vec::new();
    let mut silent = Vec::new();
    for (service, answer) in answers {
        match answer {
            Ok(status) => {
                let view = ServiceStatusView::from_proto(service.name(), status);
                warnings.extend(
                    view.unavailable
                        .iter()
                        .map(|what| format!("{}: {what}", view.service)),
                );
                services.push(view);
            }
            Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                silent.push(format!("{}: {}", service.name(), StatusText(&status)));
            }
            Err(status) => {
                return Err(CliError::rpc(
                    format!("{} GetStatus", service.name()),
                    status,
                ));
            }
        }
    }
    if services.is_empty() {
        return Err(CliError::Unavailable(format!(
            "no service answered: {}",
            silent.join("; ")
        )));
    }
    warnings.splice(
        0..0,
        silent
            .into_iter()
            .map(|why| format!("did not answer: {why}")),
    );
    Ok(LagView { services, warnings })
}

/// `ordo lag`.
pub async fn lag(
    connection: &Connection,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut orders = OperatorServiceClient::new(connection.channel(Service::Orders)?)
        .max_decoding_message_size(MAX_ANSWER_BYTES);
    let mut processor = OperatorServiceClient::new(connection.channel(Service::Processor)?)
        .max_decoding_message_size(MAX_ANSWER_BYTES);
    let (from_orders, from_processor) = tokio::join!(
        orders.get_status(connection.admin(GetStatusRequest {})),
        processor.get_status(connection.admin(GetStatusRequest {})),
    );
    let view = assemble(vec![
        (
            Service::Orders,
            from_orders.map(tonic::Response::into_inner),
        ),
        (
            Service::Processor,
            from_processor.map(tonic::Response::into_inner),
        ),
    ])?;
    for warning in &view.warnings {
        warn(warning);
    }
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(out.write_all(render(&view).as_bytes())?),
    }
}

/// `lag` as text, a section per service. Of the partitions only those
/// with a backlog or without a lease holder get a row; the rest are summed
/// up by lease holder (`-o json` has every one).
pub fn render(view: &LagView) -> String {
    let mut text = String::new();
    for (index, service) in view.services.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "{}  instance {}  at {}\n",
            cell(&service.service),
            cell(&service.instance),
            format_optional(service.read_time)
        ));
        if let Some(outbox) = &service.outbox {
            text.push_str(&render_outbox(outbox, service.read_time));
        }
        if !service.consumers.is_empty() {
            let mut table = Table::new(&[
                "CONSUMER",
                "STREAM",
                "PENDING",
                "ACK PENDING",
                "REDELIVERED",
            ]);
            for consumer in &service.consumers {
                table.row([
                    consumer.name.clone(),
                    consumer.stream.clone(),
                    consumer.pending.to_string(),
                    consumer.ack_pending.to_string(),
                    consumer.redelivered.to_string(),
                ]);
            }
            text.push_str(&table.render());
        }
        if !service.dead_letters.is_empty() {
            let mut table = Table::new(&["DEAD LETTERS", "MESSAGES", "OLDEST"]);
            for stream in &service.dead_letters {
                table.row([
                    stream.stream.clone(),
                    stream.messages.to_string(),
                    format_optional(stream.oldest_time),
                ]);
            }
            text.push_str(&table.render());
        }
        if !service.breakers.is_empty() {
            let breakers: Vec<String> = service
                .breakers
                .iter()
                .map(|breaker| format!("{} {}", cell(&breaker.name), cell(&breaker.state)))
                .collect();
            text.push_str(&format!("breakers: {}\n", breakers.join(", ")));
        }
        for what in &service.unavailable {
            text.push_str(&format!("unavailable: {}\n", cell(what)));
        }
    }
    text
}

fn render_outbox(outbox: &OutboxView, read_time: Option<DateTime<Utc>>) -> String {
    let oldest = outbox
        .partitions
        .iter()
        .filter_map(|partition| partition.oldest_create_time)
        .min();
    let age = match (oldest, read_time) {
        (Some(oldest), Some(now)) => format!(", oldest {}", format_age(oldest, now)),
        (Some(oldest), None) => format!(", oldest {}", format_age(oldest, Utc::now())),
        _ => String::new(),
    };
    let mut text = format!(
        "outbox: {} waiting in {} partitions{age}, {} parked\n",
        outbox.backlog, outbox.partition_count, outbox.parked
    );
    let mut table = Table::new(&[
        "PARTITION",
        "BACKLOG",
        "OLDEST",
        "LEASE HOLDER",
        "LEASE EXPIRES",
    ]);
    let mut quiet: BTreeMap<&str, usize> = BTreeMap::new();
    for partition in &outbox.partitions {
        if partition.backlog == 0 && !partition.lease_holder.is_empty() {
            *quiet.entry(partition.lease_holder.as_str()).or_default() += 1;
            continue;
        }
        let age = match (partition.oldest_create_time, read_time) {
            (Some(oldest), Some(now)) => format_age(oldest, now),
            (Some(oldest), None) => format_age(oldest, Utc::now()),
            (None, _) => String::new(),
        };
        table.row([
            partition.partition.to_string(),
            partition.backlog.to_string(),
            age,
            partition.lease_holder.clone(),
            format_optional(partition.lease_expire_time),
        ]);
    }
    if !table.is_empty() {
        text.push_str(&table.render());
    }
    if !quiet.is_empty() {
        let holders: Vec<String> = quiet
            .iter()
            .map(|(holder, count)| format!("{} ({count})", cell(holder)))
            .collect();
        let count: usize = quiet.values().sum();
        text.push_str(&format!(
            "{count} partitions empty, leased by {}\n",
            holders.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use ordo_proto::operator::v1::{
        BreakerStatus, ConsumerStatus, DeadLetterStatus, OutboxStatus, PartitionStatus,
    };

    use super::*;

    fn at(raw: &str) -> prost_types::Timestamp {
        ordo_proto::timestamp(
            DateTime::parse_from_rfc3339(raw)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    fn processor_status() -> GetStatusResponse {
        GetStatusResponse {
            service: "processor".into(),
            instance: "proc-1".into(),
            read_time: Some(at("2025-05-01T12:10:00Z")),
            outbox: Some(OutboxStatus {
                partition_count: 3,
                partitions: vec![
                    PartitionStatus {
                        partition: 0,
                        backlog: 0,
                        lease_holder: "proc-1".into(),
                        ..PartitionStatus::default()
                    },
                    PartitionStatus {
                        partition: 1,
                        backlog: 4,
                        oldest_create_time: Some(at("2025-05-01T12:07:55Z")),
                        lease_holder: "proc-1".into(),
                        lease_expire_time: Some(at("2025-05-01T12:10:08Z")),
                    },
                    PartitionStatus {
                        partition: 2,
                        backlog: 0,
                        ..PartitionStatus::default()
                    },
                ],
                parked: 1,
            }),
            consumers: vec![ConsumerStatus {
                name: "processor-placed".into(),
                stream: "ORDERS".into(),
                pending: 7,
                ack_pending: 2,
                redelivered: 1,
            }],
            dead_letters: vec![DeadLetterStatus {
                stream: "ORDERS_deadletter".into(),
                messages: 3,
                oldest_time: Some(at("2025-05-01T11:00:00Z")),
            }],
            breakers: vec![BreakerStatus {
                name: "payments".into(),
                state: "open".into(),
            }],
            unavailable: Vec::new(),
        }
    }

    #[test]
    fn one_silent_service_is_a_warning() {
        let view = assemble(vec![
            (
                Service::Orders,
                Err(Status::unavailable("connection refused")),
            ),
            (Service::Processor, Ok(processor_status())),
        ])
        .unwrap();
        assert_eq!(view.services.len(), 1);
        assert_eq!(
            view.warnings,
            vec!["did not answer: order-service: unavailable: connection refused"]
        );
        let outbox = view.services[0].outbox.as_ref().unwrap();
        assert_eq!(outbox.backlog, 4);
        assert_eq!(outbox.oldest_age_seconds, Some(125));
    }

    #[test]
    fn neither_answering_is_unavailable_and_a_refusal_ends_it() {
        let down = || Err(Status::unavailable("down"));
        let error = assemble(vec![
            (Service::Orders, down()),
            (Service::Processor, down()),
        ])
        .unwrap_err();
        assert_eq!(error.exit().code(), 5);
        let refused = assemble(vec![
            (
                Service::Orders,
                Err(Status::permission_denied("no token configured")),
            ),
            (Service::Processor, Ok(processor_status())),
        ])
        .unwrap_err();
        assert_eq!(refused.exit().code(), 4);
    }

    #[test]
    fn what_a_service_could_not_ask_is_a_warning() {
        let status = GetStatusResponse {
            unavailable: vec!["consumers: NATS unreachable".into()],
            ..processor_status()
        };
        let view = assemble(vec![(Service::Processor, Ok(status))]).unwrap();
        assert_eq!(
            view.warnings,
            vec!["processor: consumers: NATS unreachable"]
        );
        assert!(render(&view).contains("unavailable: consumers: NATS unreachable\n"));
    }

    #[test]
    fn the_table_shows_busy_partitions_and_sums_up_the_rest() {
        let view = assemble(vec![(Service::Processor, Ok(processor_status()))]).unwrap();
        let text = render(&view);
        let expected = "\
processor  instance proc-1  at 2025-05-01T12:10:00.000Z
outbox: 4 waiting in 3 partitions, oldest 2m05s, 1 parked
PARTITION  BACKLOG  OLDEST  LEASE HOLDER  LEASE EXPIRES
1          4        2m05s   proc-1        2025-05-01T12:10:08.000Z
2          0        -       -             -
1 partitions empty, leased by proc-1 (1)
CONSUMER          STREAM  PENDING  ACK PENDING  REDELIVERED
processor-placed  ORDERS  7        2            1
DEAD LETTERS       MESSAGES  OLDEST
ORDERS_deadletter  3         2025-05-01T11:00:00.000Z
breakers: payments open
";
        assert_eq!(text, expected);
    }

    #[test]
    fn the_json_has_every_partition() {
        let view = assemble(vec![(Service::Processor, Ok(processor_status()))]).unwrap();
        let json = serde_json::to_value(&view).unwrap();
        let service = &json["services"][0];
        assert_eq!(service["outbox"]["partitions"].as_array().unwrap().len(), 3);
        assert_eq!(
            service["outbox"]["partitions"][1]["oldest_age_seconds"],
            125
        );
        assert_eq!(service["consumers"][0]["ack_pending"], 2);
        assert_eq!(service["dead_letters"][0]["messages"], 3);
        assert_eq!(service["breakers"][0]["state"], "open");
        assert_eq!(json["warnings"], serde_json::json!([]));
    }
}
