//! SeaORM entity of the `outbox` table (see `migrations/sql/0002_outbox.up.sql`).

use sea_orm::entity::prelude::*;

/// One event waiting to be published.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Claim order within a partition.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Published as `Nats-Msg-Id`.
    pub event_id: Uuid,
    /// `fnv1a(aggregate_id) mod P`; with `id`, the primary key.
    pub partition: i32,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub subject: String,
    pub event_type: String,
    pub payload: Vec<u8>,
    /// A JSON object of header name → value.
    pub headers: Json,
    pub created_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
