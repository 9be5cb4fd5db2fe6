//! `ordo.operator.v1.OperatorService`: what a service's messaging tables say
//! to an operator. Every service with an outbox and an inbox serves it.
//!
//! ```text
//! GetStatus      ─▶ outbox (backlog, oldest row per partition) + outbox_leases
//!                   + outbox_parked ─┐
//!                   ServiceView::status (consumers, dead letters, breakers) ─▶ answer
//! GetOrderTrail  ─▶ inbox rows about the order (stream sequence, publish time)
//!                   + its outbox rows still waiting or parked
//!                   + ServiceView::order_trail (the service's own records) ─▶ sorted
//! ```
//!
//! The shared part reads only PostgreSQL; what a service adds comes from
//! its [`ServiceView`]. What NATS cannot answer is named in `unavailable`
//! instead of failing the whole status.

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use ordo_proto::operator::v1 as api;
use ordo_proto::operator::v1::operator_service_server::OperatorService;
use ordo_service_kit::admin::AdminToken;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// Most entries of one kind a trail shows (an order that looped through
/// thousands of attempts still answers in one page).
pub const TRAIL_LIMIT: u64 = 500;

/// What one service adds to the shared operator view.
#[tonic::async_trait]
pub trait ServiceView: Send + Sync + 'static {
    /// Fills in consumers, dead letters and breakers; names what it could
    /// not ask in `unavailable`.
    async fn status(&self, status: &mut api::GetStatusResponse);
    /// The service's own records of the order (not its inbox or outbox
    /// rows, which the shared part reads).
    async fn order_trail(&self, order_id: Uuid) -> Result<Vec<api::TrailEntry>, Status>;
}

/// The service, over one service's database and view.
#[derive(Debug, Clone)]
pub struct OperatorApi<V> {
    db: DatabaseConnection,
    admin: AdminToken,
    service: &'static str,
    instance: String,
    view: V,
}

impl<V: ServiceView> OperatorApi<V> {
    pub fn new(
        db: DatabaseConnection,
        admin: AdminToken,
        service: &'static str,
        instance: String,
        view: V,
    ) -> Self {
        Self {
            db,
            admin,
            service,
            instance,
            view,
        }
    }
}

#[tonic::async_trait]
impl<V: ServiceView> OperatorService for OperatorApi<V> {
    async fn get_status(
        &self,
        request: Request<api::GetStatusRequest>,
    ) -> Result<Response<api::GetStatusResponse>, Status> {
        self.admin.check(request.metadata())?;
        let outbox = outbox_status(&self.db).await.map_err(unavailable)?;
        let mut status = api::GetStatusResponse {
            service: self.service.to_owned(),
            instance: self.instance.clone(),
            outbox: Some(outbox),
            read_time: Some(ordo_proto::timestamp(Utc::now())),
            ..Default::default()
        };
        self.view.status(&mut status).await;
        Ok(Response::new(status))
    }

    async fn get_order_trail(
        &self,
        request: Request<api::GetOrderTrailRequest>,
    ) -> Result<Response<api::GetOrderTrailResponse>, Status> {
        self.admin.check(request.metadata())?;
        let order_id = Uuid::parse_str(request.get_ref().order_id.trim())
            .map_err(|_| invalid_order_id(&request.get_ref().order_id))?;
        let mut entries = self.view.order_trail(order_id).await?;
        entries.extend(
            received_trail(&self.db, order_id)
                .await
                .map_err(unavailable)?,
        );
        entries.extend(
            outbox_trail(&self.db, &order_id.to_string())
                .await
                .map_err(unavailable)?,
        );
        sort_trail(&mut entries);
        Ok(Response::new(api::GetOrderTrailResponse {
            service: self.service.to_owned(),
            entries,
        }))
    }
}

/// Oldest first; entries of one instant keep the order they were given in.
pub fn sort_trail(entries: &mut [api::TrailEntry]) {
    entries.sort_by_key(|entry| {
        entry
            .occur_time
            .as_ref()
            .map_or((i64::MIN, 0), |at| (at.seconds, at.nanos))
    });
}

/// A trail entry at `at`, of `kind`, saying `text`.
pub fn entry(at: DateTime<Utc>, kind: &str, text: impl Into<String>) -> api::TrailEntry {
    api::TrailEntry {
        occur_time: Some(ordo_proto::timestamp(at)),
        kind: kind.to_owned(),
        text: text.into(),
        ..Default::default()
    }
}

fn invalid_order_id(given: &str) -> Status {
    let mut details = tonic_types::ErrorDetails::new();
    details.add_bad_request_violation("order_id", "must be a UUID");
    <Status as tonic_types::StatusExt>::with_error_details(
        tonic::Code::InvalidArgument,
        format!(
            "invalid order_id {:?}: must be a UUID",
            ordo_telemetry::safe_text(given, 64)
        ),
        details,
    )
}

/// UNAVAILABLE for a database that could not answer (the cause logged,
/// not sent; a row that cannot be read is logged the same way).
pub fn unavailable(err: DbErr) -> Status {
    tracing::warn!(error = %err, "operator: database unavailable");
    Status::unavailable("the database is unavailable; retry")
}

fn statement(sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The outbox per partition: backlog and oldest row, lease holders, and
/// the parked count.
pub async fn outbox_status(db: &impl ConnectionTrait) -> Result<api::OutboxStatus, DbErr> {
    let partition_count = db
        .query_one_raw(statement(
            "SELECT partitions FROM outbox_settings WHERE singleton",
            [],
        ))
        .await?
        .map(|row| row.try_get::<i32>("", "partitions"))
        .transpose()?
        .and_then(|count| u32::try_from(count).ok())
        .unwrap_or_default();
    let rows = db
        .query_all_raw(statement(
            "WITH backlog AS ( \
               SELECT partition, count(*) AS backlog, min(created_at) AS oldest \
               FROM outbox GROUP BY partition), \
             parts AS ( \
               SELECT partition FROM backlog UNION SELECT partition FROM outbox_leases \
               UNION SELECT generate_series(0, $1::int - 1)) \
             SELECT p.partition, coalesce(b.backlog, 0) AS backlog, b.oldest, \
                    CASE WHEN l.expires_at > now() THEN l.owner END AS holder, \
                    CASE WHEN l.expires_at > now() THEN l.expires_at END AS lease_expires \
             FROM parts p LEFT JOIN backlog b USING (partition) \
             LEFT JOIN outbox_leases l USING (partition) ORDER BY p.partition",
            [i64::from(partition_count).into()],
        ))
        .await?;
    let mut partitions = Vec::with_capacity(rows.len());
    for row in rows {
        partitions.push(api::PartitionStatus {
            partition: u32::try_from(row.try_get::<i32>("", "partition")?).unwrap_or_default(),
            backlog: u64::try_from(row.try_get::<i64>("", "backlog")?).unwrap_or_default(),
            oldest_create_time: row
                .try_get::<Option<DateTime<Utc>>>("", "oldest")?
                .map(ordo_proto::timestamp),
            lease_holder: row
                .try_get::<Option<String>>("", "holder")?
                .unwrap_or_default(),
            lease_expire_time: row
                .try_get::<Option<DateTime<Utc>>>("", "lease_expires")?
                .map(ordo_proto::timestamp),
        });
    }
    let parked = db
        .query_one_raw(statement(
            "SELECT count(*) AS parked FROM outbox_parked",
            [],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "parked"))
        .transpose()?
        .and_then(|parked| u64::try_from(parked).ok())
        .unwrap_or_default();
    Ok(api::OutboxStatus {
        partition_count,
        partitions,
        parked,
    })
}

/// The aggregate's events still in the outbox: waiting to be published,
/// or parked with the reason.
pub async fn outbox_trail(
    db: &impl ConnectionTrait,
    aggregate_id: &str,
) -> Result<Vec<api::TrailEntry>, DbErr> {
    let rows = db
        .query_all_raw(statement(
            "SELECT 'outbox_waiting' AS kind, event_id, subject, partition, created_at AS at, \
                    created_at, '' AS reason FROM outbox WHERE aggregate_id = $1 \
             UNION ALL \
             SELECT 'outbox_parked', event_id, subject, partition, parked_at, created_at, reason \
             FROM outbox_parked WHERE aggregate_id = $1 \
             ORDER BY at LIMIT $2",
            [
                aggregate_id.into(),
                i64::try_from(TRAIL_LIMIT).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("", "kind")?;
        let partition: i32 = row.try_get("", "partition")?;
        let created_at: DateTime<Utc> = row.try_get("", "created_at")?;
        let text = if kind == "outbox_parked" {
            format!(
                "parked in partition {partition} (written {}): {}",
                created_at.to_rfc3339(),
                row.try_get::<String>("", "reason")?
            )
        } else {
            format!("written to the outbox, partition {partition}; not published yet")
        };
        entries.push(api::TrailEntry {
            message_id: row.try_get::<Uuid>("", "event_id")?.to_string(),
            subject: row.try_get("", "subject")?,
            ..entry(row.try_get("", "at")?, &kind, text)
        });
    }
    Ok(entries)
}

/// Each message the inbox took about the order: when the stream stored it
/// (`published`, with its sequence) and when the consumer settled it
/// (`received`, with the outcome).
pub async fn received_trail(
    db: &impl ConnectionTrait,
    order_id: Uuid,
) -> Result<Vec<api::TrailEntry>, DbErr> {
    let received = ordo_inbox::inbox_received_for_order(db, order_id, TRAIL_LIMIT).await?;
    let mut entries = Vec::with_capacity(received.len() * 2);
    for message in received {
        let sequence = message.stream_sequence.unwrap_or_default();
        let about = |entry: api::TrailEntry| api::TrailEntry {
            message_id: message.message_id.clone(),
            subject: message.subject.clone(),
            stream_sequence: sequence,
            ..entry
        };
        if let Some(published_at) = message.published_at {
            entries.push(about(entry(
                published_at,
                "published",
                format!(
                    "{} stored in the stream as sequence {sequence}",
                    message.subject
                ),
            )));
        }
        let outcome = if message.outcome.is_empty() {
            "settled".to_owned()
        } else {
            message.outcome.clone()
        };
        entries.push(api::TrailEntry {
            actor: message.consumer.clone(),
            ..about(entry(
                message.received_at,
                "received",
                format!(
                    "{} taken by {}: {outcome}",
                    message.subject, message.consumer
                ),
            ))
        });
    }
    Ok(entries)
}

/// A durable consumer as the server sees it.
pub async fn consumer_status(
    jetstream: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<api::ConsumerStatus, String> {
    let asked = async {
        let mut consumer: jetstream::consumer::PullConsumer = jetstream
            .get_consumer_from_stream(durable, stream)
            .await
            .map_err(|err| err.to_string())?;
        let info = consumer.info().await.map_err(|err| err.to_string())?;
        Ok::<_, String>(api::ConsumerStatus {
            name: durable.to_owned(),
            stream: stream.to_owned(),
            pending: info.num_pending,
            ack_pending: u64::try_from(info.num_ack_pending).unwrap_or_default(),
            redelivered: u64::try_from(info.num_redelivered).unwrap_or_default(),
        })
    };
    tokio::time::timeout(NATS_ASK_TIMEOUT, asked)
        .await
        .map_err(|_| format!("no answer from NATS within {NATS_ASK_TIMEOUT:?}"))?
        .map_err(|err| format!("consumer {durable} on {stream}: {err}"))
}

/// How long a status waits for NATS before naming it unavailable.
pub const NATS_ASK_TIMEOUT: Duration = Duration::from_secs(3);
