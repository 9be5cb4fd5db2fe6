//! The events the relay parked, for operators: listed, put back where they
//! were (redriven), or dropped (discarded) — and the gRPC face of that,
//! `ordo.outbox.v1.OutboxAdminService`, which every service with an outbox
//! serves behind its admin tokens.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use ordo_proto::outbox::v1 as api;
use ordo_proto::outbox::v1::outbox_admin_service_server::OutboxAdminService;
use ordo_service_kit::admin::{AdminToken, required_reason};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement};
use tonic::{Request, Response, Status};

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

/// A parked outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub subject: String,
    pub event_type: String,
    pub reason: String,
    pub created_at: DateTime<FixedOffset>,
    pub parked_at: DateTime<FixedOffset>,
    pub headers: BTreeMap<String, String>,
    pub payload_size: u64,
}

fn statement(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Up to `limit` parked events with ids above `after`, oldest first.
pub async fn parked_list(
    db: &DatabaseConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<ParkedEvent>, DbErr> {
    let rows = db
        .query_all_raw(statement(
            "SELECT id, event_id, aggregate_type, aggregate_id, subject, event_type, reason, \
               created_at, parked_at, headers, octet_length(payload)::bigint AS payload_size \
             FROM outbox_parked WHERE id > $1 ORDER BY id LIMIT $2",
            [after.into(), i64::from(limit).into()],
        ))
        .await?;
    rows.iter().map(parked_from_row).collect()
}

fn parked_from_row(row: &QueryResult) -> Result<ParkedEvent, DbErr> {
    let headers: serde_json::Value = row.try_get("", "headers")?;
    Ok(ParkedEvent {
        id: row.try_get("", "id")?,
        event_id: row.try_get("", "event_id")?,
        aggregate_type: row.try_get("", "aggregate_type")?,
        aggregate_id: row.try_get("", "aggregate_id")?,
        subject: row.try_get("", "subject")?,
        event_type: row.try_get("", "event_type")?,
        reason: row.try_get("", "reason")?,
        created_at: row.try_get("", "created_at")?,
        parked_at: row.try_get("", "parked_at")?,
        headers: headers
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(name, value)| {
                        (
                            name.clone(),
                            value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        payload_size: u64::try_from(row.try_get::<i64>("", "payload_size")?).unwrap_or_default(),
    })
}

/// Puts parked event `id` back into the outbox under its id; `false` if
/// there is no such parked event.
pub async fn parked_redrive(db: &DatabaseConnection, id: i64) -> Result<bool, DbErr> {
    let done = db
        .execute_raw(statement(
            "WITH moved AS (DELETE FROM outbox_parked WHERE id = $1 RETURNING *) \
             INSERT INTO outbox (id, event_id, partition, aggregate_type, aggregate_id, subject, \
               event_type, payload, headers, created_at) OVERRIDING SYSTEM VALUE \
             SELECT id, event_id, partition, aggregate_type, aggregate_id, subject, event_type, \
               payload, headers, created_at FROM moved",
            [id.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Drops parked event `id` for good; `false` if there is no such event.
pub async fn parked_discard(db: &DatabaseConnection, id: i64) -> Result<bool, DbErr> {
    let done = db
        .execute_raw(statement(
            "DELETE FROM outbox_parked WHERE id = $1",
            [id.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// `ordo.outbox.v1.OutboxAdminService` over one service's outbox.
#[derive(Debug, Clone)]
pub struct OutboxAdmin {
    db: DatabaseConnection,
    admin: AdminToken,
}

impl OutboxAdmin {
    pub fn new(db: DatabaseConnection, admin: AdminToken) -> Self {
        Self { db, admin }
    }
}

fn timestamp(at: DateTime<FixedOffset>) -> prost_types::Timestamp {
    ordo_proto::timestamp(at.with_timezone(&Utc))
}

fn to_proto(event: ParkedEvent) -> api::ParkedEvent {
    api::ParkedEvent {
        id: u64::try_from(event.id).unwrap_or_default(),
        event_id: event.event_id.to_string(),
        aggregate_type: event.aggregate_type,
        aggregate_id: event.aggregate_id,
        subject: event.subject,
        event_type: event.event_type,
        reason: event.reason,
        create_time: Some(timestamp(event.created_at)),
        park_time: Some(timestamp(event.parked_at)),
        headers: event
            .headers
            .into_iter()
            .map(|(name, value)| (name, ordo_telemetry::safe_text(&value, 1024)))
            .collect(),
        payload_size: event.payload_size,
    }
}

fn invalid(field: &str, description: String) -> Status {
    let mut details = tonic_types::ErrorDetails::new();
    details.add_bad_request_violation(field, description.clone());
    <Status as tonic_types::StatusExt>::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid {field}: {description}"),
        details,
    )
}

fn unavailable(err: DbErr) -> Status {
    tracing::warn!(error = %err, "outbox admin: database unavailable");
    Status::unavailable("the database is unavailable; retry")
}

fn parked_id(id: u64) -> Result<i64, Status> {
    i64::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| invalid("id", "must be a parked event's id".to_owned()))
}

#[tonic::async_trait]
impl OutboxAdminService for OutboxAdmin {
    async fn list_parked_events(
        &self,
        request: Request<api::ListParkedEventsRequest>,
    ) -> Result<Response<api::ListParkedEventsResponse>, Status> {
        self.admin.check(request.metadata())?;
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size <= MAX_PAGE_SIZE => size,
            size => {
                return Err(invalid(
                    "page_size",
                    format!("{size} is above {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let after = match request.page_token.trim() {
            "" => 0,
            token => token
                .parse::<i64>()
                .ok()
                .filter(|after| *after > 0)
                .ok_or_else(|| {
                    invalid(
                        "page_token",
                        "not a token from a previous response".to_owned(),
                    )
                })?,
        };
        let mut events: Vec<api::ParkedEvent> = parked_list(&self.db, after, page_size + 1)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(to_proto)
            .collect();
        let more = events.len() > page_size as usize;
        events.truncate(page_size as usize);
        let kept = ordo_proto::items_within(&events, ordo_proto::MAX_PAGE_BYTES);
        let cut = kept < events.len();
        events.truncate(kept);
        let next_page_token = if more || cut {
            events
                .last()
                .map(|last| last.id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(api::ListParkedEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn redrive_parked_event(
        &self,
        request: Request<api::RedriveParkedEventRequest>,
    ) -> Result<Response<api::RedriveParkedEventResponse>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.into_inner();
        let id = parked_id(request.id)?;
        let reason = required_reason(&request.reason).map_err(|why| invalid("reason", why))?;
        if !parked_redrive(&self.db, id).await.map_err(unavailable)? {
            return Err(Status::not_found(format!("no parked event {id}")));
        }
        tracing::warn!(id, actor, reason, "parked event put back into the outbox");
        Ok(Response::new(api::RedriveParkedEventResponse {}))
    }

    async fn discard_parked_event(
        &self,
        request: Request<api::DiscardParkedEventRequest>,
    ) -> Result<Response<api::DiscardParkedEventResponse>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.into_inner();
        let id = parked_id(request.id)?;
        let reason = required_reason(&request.reason).map_err(|why| invalid("reason", why))?;
        if !parked_discard(&self.db, id).await.map_err(unavailable)? {
            return Err(Status::not_found(format!("no parked event {id}")));
        }
        tracing::warn!(
            id,
            actor,
            reason,
            "parked event discarded; its aggregate's later events flow"
        );
        Ok(Response::new(api::DiscardParkedEventResponse {}))
    }
}
