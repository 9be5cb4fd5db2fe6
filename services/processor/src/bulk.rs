//! Redrives and purges of many dead letters in one call: the selection is
//! walked in batches (ids as given, or the stream from its start up to its
//! last sequence when the call began, so a message dead-lettered again
//! during the run is not taken twice), at most `max_per_second`, and each
//! dead letter's outcome is sent as soon as it is known. Every decision goes
//! through [`Operator`], which keeps it in the order's audit trail; a
//! failure of one dead letter is reported and the run goes on. A client that
//! goes away stops the run after the dead letter in hand.

use std::time::Duration;

use ordo_proto::processor::v1 as api;
use tokio::sync::mpsc;

use crate::dead_letter::DeadLetter;
use crate::operator::{Decision, Operator, OperatorError};
use crate::selection::Selection;

/// Dead letters read from the stream per batch (each may carry a payload
/// of up to the max payload, so batches stay small).
const BATCH: usize = 20;
/// `max_per_second` when the request says 0, and the most it may say.
pub const DEFAULT_RATE: u32 = 50;
pub const MAX_RATE: u32 = 1000;

/// Which bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redrive,
    Purge,
}

/// One bulk run, as the request asked for it.
#[derive(Debug, Clone)]
pub struct BulkRun {
    pub action: Action,
    pub selection: Selection,
    pub actor: String,
    pub reason: String,
    pub dry_run: bool,
    pub max_per_second: u32,
}

impl BulkRun {
    /// Runs to the end of the selection, sending one outcome per dead
    /// letter; stops early when `outcomes` is closed.
    pub async fn run(self, operator: Operator, outcomes: mpsc::Sender<api::BulkOutcome>) {
        let pace = Duration::from_secs(1) / self.max_per_second.clamp(1, MAX_RATE);
        let mut ticker = tokio::time::interval(pace);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut walk = Walk::start(&self.selection, &operator).await;
        loop {
            let batch = match walk.next_batch(&operator).await {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err(failed) => {
                    let _ = outcomes.send(failed).await;
                    return;
                }
            };
            for found in batch {
                if !self.dry_run {
                    ticker.tick().await;
                }
                let outcome = match found {
                    Found::Missing(id) => outcome(id, None, "not_found", "no such dead letter"),
                    Found::Letter(dead_letter) => self.decide(&operator, &dead_letter).await,
                };
                if outcomes.send(outcome).await.is_err() {
                    tracing::info!(action = ?self.action, "bulk run stopped: the client went away");
                    return;
                }
            }
        }
    }

    async fn decide(&self, operator: &Operator, dead_letter: &DeadLetter) -> api::BulkOutcome {
        let id = dead_letter.id;
        let decision = Decision {
            actor: &self.actor,
            reason: &self.reason,
        };
        let done = match (self.action, self.dry_run) {
            (Action::Redrive, true) => Ok((
                "would",
                format!(
                    "would publish it to {} again, to be processed once more",
                    dead_letter.source_subject
                ),
            )),
            (Action::Purge, true) => operator
                .purge_preview(dead_letter)
                .await
                .map(|what| ("would", what)),
            (Action::Redrive, false) => operator.redrive(id, decision).await.map(|redriven| {
                (
                    "done",
                    format!(
                        "redriven to {} as sequence {}",
                        redriven.subject, redriven.stream_sequence
                    ),
                )
            }),
            (Action::Purge, false) => operator
                .purge(id, decision)
                .await
                .map(|purged| ("done", format!("purged: {}", purged.outcome))),
        };
        match done {
            Ok((result, detail)) => outcome(id, Some(dead_letter), result, &detail),
            Err(OperatorError::NotFound(_)) => outcome(
                id,
                Some(dead_letter),
                "not_found",
                "gone meanwhile (redriven or purged by someone else)",
            ),
            Err(err) => {
                tracing::warn!(id, action = ?self.action, error = %err, "bulk: one dead letter failed");
                outcome(id, Some(dead_letter), "failed", &err.to_string())
            }
        }
    }
}

fn outcome(
    id: u64,
    dead_letter: Option<&DeadLetter>,
    result: &str,
    detail: &str,
) -> api::BulkOutcome {
    api::BulkOutcome {
        id,
        order_id: dead_letter
            .and_then(|dead_letter| dead_letter.order_id.clone())
            .unwrap_or_default(),
        subject: dead_letter
            .map(|dead_letter| dead_letter.source_subject.clone())
            .unwrap_or_default(),
        result: result.to_owned(),
        detail: ordo_telemetry::safe_text(detail, 1024),
    }
}

enum Found {
    Letter(Box<DeadLetter>),
    Missing(u64),
}

/// Where a run is in its selection.
enum Walk {
    Ids(std::vec::IntoIter<u64>),
    Stream {
        filter: crate::selection::Filter,
        next: Option<u64>,
        last: u64,
    },
    Failed(String),
}

impl Walk {
    async fn start(selection: &Selection, operator: &Operator) -> Self {
        match selection {
            Selection::Ids(ids) => Self::Ids(ids.clone().into_iter()),
            Selection::Matching(filter) => match operator.dead_letters.last_sequence().await {
                Ok(last) => Self::Stream {
                    filter: filter.clone(),
                    next: Some(1),
                    last,
                },
                Err(err) => Self::Failed(format!("the dead-letter stream is unavailable: {err}")),
            },
        }
    }

    /// The next batch; `None` at the end; a failed outcome (id 0) when the
    /// stream cannot be read.
    async fn next_batch(
        &mut self,
        operator: &Operator,
    ) -> Result<Option<Vec<Found>>, api::BulkOutcome> {
        match self {
            Self::Failed(why) => Err(outcome(0, None, "failed", why)),
            Self::Ids(ids) => {
                let mut batch = Vec::new();
                for id in ids.by_ref().take(BATCH) {
                    match operator.dead_letters.get(id).await {
                        Ok(Some(dead_letter)) => batch.push(Found::Letter(Box::new(dead_letter))),
                        Ok(None) => batch.push(Found::Missing(id)),
                        Err(err) => {
                            return Err(outcome(
                                id,
                                None,
                                "failed",
                                &format!("the dead-letter stream is unavailable: {err}"),
                            ));
                        }
                    }
                }
                Ok((!batch.is_empty()).then_some(batch))
            }
            Self::Stream { filter, next, last } => {
                let Some(from) = next.filter(|from| *from <= *last) else {
                    return Ok(None);
                };
                let page = operator
                    .dead_letters
                    .list(from, BATCH)
                    .await
                    .map_err(|err| {
                        outcome(
                            0,
                            None,
                            "failed",
                            &format!("the dead-letter stream is unavailable: {err}"),
                        )
                    })?;
                *next = page.next;
                let limit = *last;
                Ok(Some(
                    page.dead_letters
                        .into_iter()
                        .filter(|dead_letter| {
                            dead_letter.id <= limit && filter.matches(dead_letter)
                        })
                        .map(|dead_letter| Found::Letter(Box::new(dead_letter)))
                        .collect(),
                ))
            }
        }
    }
}
