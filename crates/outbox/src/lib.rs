//! The transactional outbox, shared by every Ordo service that emits events:
//! the write side (an event stored in the caller's transaction) and the
//! relay (an Actix supervisor and one relay actor per leased partition,
//! publishing to NATS JetStream).
//!
//! # Life of a row
//!
//! ```text
//! service txn ── outbox_insert_in_txn ──▶ outbox row (partition = fnv1a(aggregate_id) mod P)
//!      │ commit
//!      └─ Nudger::nudge(partition) ──▶ relay actor of that partition (if it runs here)
//!
//! relay actor round:
//!   claim:   SELECT … WHERE partition = p AND <p is leased to me> ORDER BY id LIMIT batch
//!            (the claims of partitions that come at once: one statement, [`claim_group`])
//!   publish: per-aggregate chains, in id order; chains concurrently (pipelined)
//!            Nats-Msg-Id = event_id, headers from the row; await each ack
//!   delete:  DELETE … WHERE id = ANY(<acked ids>)   (folded into the next claim)
//! ```
//!
//! NATS need not be up when the relay starts: it connects in the background
//! and sets up the stream as soon as the server answers; rows wait meanwhile.
//!
//! A crash anywhere loses nothing: before the delete the rows are still
//! there and are published again, and JetStream drops a re-publish of an
//! event id inside its duplicate window (`OUTBOX_DEDUP_WINDOW`, default
//! 2 min); consumers' inboxes drop one outside it.
//!
//! # Actor tree
//!
//! ```text
//! RelayHandle (any tokio runtime) ── dedicated thread: actix System
//!   └─ Supervisor ── heartbeat every TTL/3: renew · acquire fair share · hand back surplus
//!        ├─ RelayActor(partition 3)  ── rounds: claim → publish → delete
//!        ├─ RelayActor(partition 7)
//!        └─ …  one per leased partition; a dead one is restarted with backoff
//! ```
//!
//! A row that can never be published is parked (moved to `outbox_parked`
//! with the reason; its aggregate waits behind it); [`parked`] lists,
//! redrives and discards them, also over gRPC (`OutboxAdminService`).
//! The partition count is recorded with the outbox ([`repartition`]).
//!
//! Leases and their failure modes are described in [`lease`]; the
//! scheduling of rounds in [`actors`]'s relay actor; publishing is a tower
//! service ([`publish`]) so timeouts and breakers wrap it from outside.
//!
//! Per-aggregate order: an aggregate's events land in one partition, are
//! claimed in id order, and are published serially, a failure stopping the
//! aggregate's chain. Writers serialise an aggregate's transactions (a row
//! lock on it), so id order is commit order within an aggregate.
#![forbid(unsafe_code)]

pub mod actors;
pub mod claim_group;
pub mod claims;
pub mod config;
pub mod entity;
pub mod event;
pub mod faults;
pub mod handle;
pub mod lease;
pub mod metrics;
pub mod operator;
pub mod parked;
pub mod partition;
pub mod publish;
pub mod relay;
pub mod repartition;
pub mod settings;
pub mod statements;
pub mod stream;

pub use actors::Nudger;
pub use config::{RelayConfig, StreamSettings};
pub use event::{OutboxEvent, headers};
pub use handle::{NatsReachability, PublisherLayer, RelayError, RelayHandle};
pub use metrics::RelayMetrics;
pub use partition::{PartitionCount, PartitionCountError};
pub use publish::{OutboundEvent, PublishService, Published};
pub use repartition::{PartitionsError, outbox_partitions_record, outbox_repartition};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

/// Writes `event` into the outbox inside the caller's transaction (or
/// connection), into the partition its aggregate hashes to, and returns
/// that partition (to nudge its relay after the commit).
pub async fn outbox_insert_in_txn<C: ConnectionTrait>(
    txn: &C,
    partitions: PartitionCount,
    event: &OutboxEvent,
) -> Result<i32, DbErr> {
    let row = OutboxRow::of(partitions, event);
    let partition = row.partition;
    let sql = format!(
        "INSERT INTO outbox ({}) VALUES ({})",
        OutboxRow::COLUMNS,
        row.placeholders(1)
    );
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        row.into_values(),
    ))
    .await?;
    Ok(partition)
}

/// An outbox row for a statement of the writer's own, so a change, its
/// inbox record and its event can be one statement — one round trip — when
/// that is all a transaction would hold:
///
/// ```text
/// WITH moved AS (UPDATE … RETURNING …)
/// INSERT INTO outbox (<OutboxRow::COLUMNS>) SELECT <row.placeholders(n)> FROM moved
/// ```
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// The partition the event's aggregate hashes to (nudge it after commit).
    pub partition: i32,
    values: Vec<Value>,
}

impl OutboxRow {
    /// The columns [`OutboxRow::placeholders`] fill, in order.
    pub const COLUMNS: &'static str = "event_id, partition, aggregate_type, aggregate_id, subject, event_type, payload, headers, created_at";

    /// The row `event` becomes in `partitions` partitions.
    pub fn of(partitions: PartitionCount, event: &OutboxEvent) -> Self {
        let partition = partitions.partition_of(&event.aggregate_id);
        let values = vec![
            event.event_id.into(),
            partition.into(),
            event.aggregate_type.into(),
            event.aggregate_id.as_str().into(),
            event.subject.into(),
            event.event_type.into(),
            event.payload.clone().into(),
            event.headers_json().into(),
            event.occurred_at.fixed_offset().into(),
        ];
        Self { partition, values }
    }

    /// `$first, $first+1, …`: one placeholder per column.
    pub fn placeholders(&self, first: usize) -> String {
        (first..first + self.values.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The values, in column order.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}
