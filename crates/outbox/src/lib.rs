//! The transactional outbox, shared by every Ordo service that emits events.
//!
//! A service that changes state writes the matching event in the same
//! database transaction, with [`outbox_insert_in_txn`]: either both the state
//! change and its [`OutboxEvent`] commit, or neither does. A relay (issue 3)
//! later claims the rows of a partition in `id` order, publishes each to
//! JetStream with `Nats-Msg-Id` = the event id, and deletes what was acked.
//!
//! ```text
//! service txn ──▶ outbox row (partition = hash(aggregate_id) mod P) ──▶ relay ──▶ JetStream
//! ```
//!
//! - [`event`]: the event to write and its CloudEvents headers.
//! - [`partition`]: the stable aggregate → partition mapping.
//! - [`entity`]: the SeaORM entity of the `outbox` table.
#![forbid(unsafe_code)]

pub mod entity;
pub mod event;
pub mod partition;

pub use event::{OutboxEvent, headers};
pub use partition::{PartitionCount, PartitionCountError};

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

/// Writes `event` into the outbox inside the caller's transaction (or
/// connection), into the partition its aggregate hashes to.
pub async fn outbox_insert_in_txn<C: ConnectionTrait>(
    txn: &C,
    partitions: PartitionCount,
    event: &OutboxEvent,
) -> Result<(), DbErr> {
    let row = entity::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        event_id: Set(event.event_id),
        partition: Set(partitions.partition_of(&event.aggregate_id)),
        aggregate_type: Set(event.aggregate_type.to_owned()),
        aggregate_id: Set(event.aggregate_id.clone()),
        subject: Set(event.subject.to_owned()),
        event_type: Set(event.event_type.to_owned()),
        payload: Set(event.payload.clone()),
        headers: Set(event.headers_json()),
        created_at: Set(event.occurred_at.fixed_offset()),
    };
    entity::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
