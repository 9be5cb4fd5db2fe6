//! One round of one partition: claim a batch, publish it, delete what was
//! acked. Plain async code; the relay actor decides when rounds run.
//!
//! The delete is folded into the next round's claim (one statement a
//! round): a round leaves its acked rows to the next claim, which comes at
//! once when rows keep arriving and within [`CARRIED_ROWS_WAIT`] when they
//! do not; a fenced round deletes them itself. Deleting acked rows needs
//! no lease, so rows carried by an actor that stops are deleted on its way
//! out.
//!
//! Publishing is pipelined across aggregates and serial within one: the
//! batch is split into per-aggregate chains (in id order), the chains run
//! concurrently (at most `max_in_flight` at once), and a chain stops at its
//! first failed publish, so an aggregate's later events never overtake an
//! earlier one. Rows not acked stay for the next round.
//!
//! Publishing is fenced by the lease: before each publish the round asks
//! the replica's [`LeaseView`] whether the partition is still certainly
//! its own, and abandons the rest of the round when it is not (see
//! [`crate::lease`]).
//!
//! A row that can never be published (a permanent failure: a header NATS
//! cannot carry, a message over the server's max payload) is parked —
//! moved to `outbox_parked` with the reason — so it stops costing the
//! partition a failed publish every round; its aggregate's later rows stay
//! behind it (the claim skips them) until an operator redrives or discards
//! it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use futures::StreamExt as _;
use ordo_resilience::classify::Permanent;
use sea_orm::{DatabaseConnection, DbErr};
use tower::{Service as _, ServiceExt as _};
use tracing::Instrument as _;

use crate::claim_group::ClaimGroup;
use crate::claims::{outbox_delete, outbox_park};
use crate::config::StreamSettings;
use crate::entity;
use crate::faults::Faults;
use crate::lease::LeaseView;
use crate::metrics::RelayMetrics;
use crate::publish::{OutboundEvent, PublishService};

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub claimed: usize,
    pub published: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub parked: usize,
    /// The lease ran out under the round: it published nothing more.
    pub fenced: bool,
    /// Rows acked and not yet deleted: the next claim deletes them.
    pub carried: Vec<i64>,
}

/// A round stops publishing this long before the lease view runs out.
pub const FENCE_MARGIN: std::time::Duration = std::time::Duration::from_millis(300);

impl RoundReport {
    /// The batch was full: more rows are probably waiting.
    pub fn was_full(&self, batch_size: u32) -> bool {
        self.claimed >= batch_size as usize
    }
}

/// Whether a round deletes its acked rows itself, or leaves them to the
/// next round's claim (one statement a round instead of two): it leaves
/// them unless the lease ran out under it (the next round may never come
/// here). The actor makes sure a next round comes within
/// [`CARRIED_ROWS_WAIT`].
pub fn delete_now(fenced: bool) -> bool {
    fenced
}

/// The longest acked rows wait for the next claim to delete them: a
/// partition whose rows come faster folds every delete into a claim; a
/// quieter one runs a claim this long after its round, which deletes them.
pub const CARRIED_ROWS_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Everything a partition's rounds need; shared by its actor's restarts.
#[derive(Clone)]
pub struct PartitionRelay {
    pub partition: i32,
    pub owner: Arc<str>,
    pub db: DatabaseConnection,
    /// Where the claims go: with the claims of the replica's other
    /// partitions that come at the same moment.
    pub claims: ClaimGroup,
    pub publisher: PublishService,
    pub stream: Arc<StreamSettings>,
    pub batch_size: u32,
    pub max_in_flight: usize,
    pub metrics: Arc<RelayMetrics>,
    pub faults: Arc<Faults>,
    /// The publish breaker (inside `publisher`), asked before each round.
    pub breaker: Arc<ordo_resilience::CircuitBreaker>,
    /// Until when this replica certainly holds each partition's lease.
    pub lease_view: Arc<LeaseView>,
}

impl std::fmt::Debug for PartitionRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionRelay")
            .field("partition", &self.partition)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl PartitionRelay {
    /// Deletes `carried` (rows a round before acked) and claims (alone when
    /// the partition has a `backlog`, see [`ClaimGroup::claim`]), publishes
    /// and deletes one batch — or leaves its acked rows to the next round
    /// (see [`delete_now`]).
    pub async fn round(&self, carried: &[i64], backlog: bool) -> Result<RoundReport, DbErr> {
        Faults::strike(&self.faults.panic_before_claim, "panic before claim");
        let rows = self.claims.claim(self.partition, carried, backlog).await?;
        self.metrics.claims.fetch_add(1, Relaxed);
        if rows.is_empty() {
            self.metrics.empty_claims.fetch_add(1, Relaxed);
            return Ok(RoundReport::default());
        }
        let claimed = rows.len();
        self.faults.freeze_point().await;
        let chains = chains_by_aggregate(rows);
        let outcomes: Vec<ChainOutcome> = futures::stream::iter(chains)
            .map(|chain| self.publish_chain(chain))
            .buffer_unordered(self.max_in_flight.max(1))
            .collect()
            .await;

        let mut report = RoundReport {
            claimed,
            ..RoundReport::default()
        };
        let mut acked = Vec::with_capacity(claimed);
        let mut parked = Vec::new();
        for outcome in outcomes {
            report.published += outcome.acked.len();
            report.duplicates += outcome.duplicates;
            report.failed += usize::from(outcome.failed);
            report.fenced |= outcome.fenced;
            acked.extend(outcome.acked);
            parked.extend(outcome.parked);
        }
        if report.fenced {
            self.metrics.fenced_rounds.fetch_add(1, Relaxed);
            tracing::warn!(
                partition = self.partition,
                "the partition's lease ran out under the round; its other rows are left to the next owner"
            );
        }
        Faults::strike(&self.faults.panic_before_delete, "panic before delete");
        if delete_now(report.fenced) || !parked.is_empty() {
            outbox_delete(&self.db, self.partition, acked).await?;
        } else {
            report.carried = acked;
        }
        for (id, reason) in parked {
            outbox_park(&self.db, self.partition, id, &reason).await?;
            self.metrics.parked.fetch_add(1, Relaxed);
            report.parked += 1;
            tracing::error!(
                partition = self.partition,
                id,
                reason,
                "row parked: it can never be published as it is; its aggregate waits behind it"
            );
        }
        Ok(report)
    }

    /// Publishes one aggregate's rows in order, stopping at the first failure.
    async fn publish_chain(&self, chain: Vec<entity::Model>) -> ChainOutcome {
        let mut outcome = ChainOutcome::default();
        let mut publisher = self.publisher.clone();
        for row in chain {
            if !self.lease_view.holds(self.partition, FENCE_MARGIN) {
                outcome.fenced = true;
                break;
            }
            let id = row.id;
            let created_at = row.created_at;
            let mut event = self.outbound(row);
            let event_id = event.event_id.clone();
            let span = publish_span(&event, created_at);
            // The message carries the publish span's context, so a consumer
            // continues from here.
            let _entered = span.enter();
            event.headers.retain(|(name, _)| {
                !ordo_telemetry::propagation::TRACE_HEADERS.contains(&name.as_str())
            });
            event
                .headers
                .extend(ordo_telemetry::propagation::current_headers());
            drop(_entered);
            let result = match publisher.ready().await {
                Ok(ready) => ready.call(event).instrument(span.clone()).await,
                Err(err) => Err(err),
            };
            span.record(
                "outcome",
                if result.is_ok() {
                    "published"
                } else {
                    "failed"
                },
            );
            match result {
                Ok(published) => {
                    let waited = chrono::Utc::now().signed_duration_since(created_at);
                    self.metrics
                        .commit_to_ack
                        .record(waited.to_std().unwrap_or_default());
                    self.metrics.published.fetch_add(1, Relaxed);
                    if published.duplicate {
                        self.metrics.duplicates.fetch_add(1, Relaxed);
                        outcome.duplicates += 1;
                    }
                    outcome.acked.push(id);
                }
                Err(err) if err.is::<Permanent>() => {
                    outcome.parked = Some((id, err.to_string()));
                    break;
                }
                Err(err) => {
                    self.metrics.failed.fetch_add(1, Relaxed);
                    tracing::warn!(
                        partition = self.partition,
                        event_id,
                        error = %err,
                        "publish failed; the row and its aggregate's later rows wait for the next round"
                    );
                    outcome.failed = true;
                    break;
                }
            }
        }
        outcome
    }

    fn outbound(&self, row: entity::Model) -> OutboundEvent {
        let headers = match &row.headers {
            serde_json::Value::Object(map) => map
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
                .collect(),
            _ => Vec::new(),
        };
        OutboundEvent {
            subject: self.stream.subject_for(&row.subject),
            event_id: row.event_id.to_string(),
            headers,
            payload: Bytes::from(row.payload),
            aggregate_id: row.aggregate_id,
        }
    }
}

/// The span of one publish: a child of the span that wrote the row (its
/// `traceparent` header), with how long the row waited in the outbox.
fn publish_span(
    event: &OutboundEvent,
    created_at: chrono::DateTime<chrono::FixedOffset>,
) -> tracing::Span {
    let waited = chrono::Utc::now().signed_duration_since(created_at);
    let correlation_id = event
        .headers
        .iter()
        .find(|(name, _)| name == crate::headers::CORRELATION_ID)
        .map_or("", |(_, value)| value.as_str());
    let span = tracing::info_span!(
        "outbox.publish",
        otel.name = %format!("publish {}", event.subject),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = %event.subject,
        messaging.message.id = %event.event_id,
        outbox.wait_ms = waited.num_milliseconds(),
        correlation_id = %correlation_id,
        outcome = tracing::field::Empty,
    );
    let parent = ordo_telemetry::propagation::context_from(
        event
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    ordo_telemetry::propagation::set_parent(&span, parent);
    span
}

#[derive(Debug, Default)]
struct ChainOutcome {
    acked: Vec<i64>,
    duplicates: usize,
    failed: bool,
    /// The row that can never be published, and why.
    parked: Option<(i64, String)>,
    /// Stopped because the lease view ran out.
    fenced: bool,
}

/// Splits rows (in id order) into per-aggregate chains, each in id order,
/// the chains ordered by their first row.
fn chains_by_aggregate(rows: Vec<entity::Model>) -> Vec<Vec<entity::Model>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut chains: Vec<Vec<entity::Model>> = Vec::new();
    for row in rows {
        match index.get(&row.aggregate_id) {
            Some(&chain) => chains[chain].push(row),
            None => {
                index.insert(row.aggregate_id.clone(), chains.len());
                chains.push(vec![row]);
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, aggregate: &str) -> entity::Model {
        entity::Model {
            id,
            event_id: uuid::Uuid::now_v7(),
            partition: 0,
            aggregate_type: "order".into(),
            aggregate_id: aggregate.into(),
            subject: "orders.placed".into(),
            event_type: "t".into(),
            payload: vec![],
            headers: serde_json::json!({}),
            created_at: chrono::Utc::now().fixed_offset(),
        }
    }

    #[test]
    fn only_a_fenced_round_deletes_its_rows_itself() {
        assert!(!delete_now(false), "the next claim deletes them");
        assert!(delete_now(true), "fenced: the next round may never come");
    }

    #[test]
    fn chains_keep_each_aggregates_rows_in_id_order() {
        let rows = vec![
            row(1, "a"),
            row(2, "b"),
            row(3, "a"),
            row(4, "c"),
            row(5, "b"),
        ];
        let chains: Vec<Vec<i64>> = chains_by_aggregate(rows)
            .iter()
            .map(|chain| chain.iter().map(|row| row.id).collect())
            .collect();
        assert_eq!(chains, vec![vec![1, 3], vec![2, 5], vec![4]]);
    }
}
