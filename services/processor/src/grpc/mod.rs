//! `ordo.processor.v1.ProcessorService`: processing state for anyone, the
//! dead-letter admin API behind a bearer token.

mod convert;

pub use ordo_service_kit::admin::AdminToken;

use ordo_proto::processor::v1 as api;
use ordo_proto::processor::v1::processor_service_server::ProcessorService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::bulk::{Action, BulkRun, DEFAULT_RATE, MAX_RATE};
use crate::dead_letter::DeadLetters;
use crate::operator::{Decision, Operator, OperatorError};
use crate::selection::{Filter, Selection};
use crate::store::ProcessingStore;

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

/// The gRPC face of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorApi {
    store: ProcessingStore,
    dead_letters: DeadLetters,
    operator: Operator,
    admin: AdminToken,
}

impl ProcessorApi {
    pub fn new(operator: Operator, admin: AdminToken) -> Self {
        Self {
            store: operator.store.clone(),
            dead_letters: operator.dead_letters.clone(),
            operator,
            admin,
        }
    }
}

/// The outcomes of a bulk run, as they come.
pub type BulkStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

impl ProcessorApi {
    /// Checks a bulk request and starts its run; the run's outcomes, each
    /// wrapped by `wrap`.
    fn bulk<T: Send + 'static>(
        &self,
        action: Action,
        actor: String,
        request: BulkRequest<'_>,
        wrap: fn(api::BulkOutcome) -> T,
    ) -> Result<BulkStream<T>, Status> {
        let selection = Selection::from_proto(request.selection)
            .map_err(|(field, why)| invalid(&field, why))?;
        let reason = required_reason(request.reason)?;
        let max_per_second = match request.max_per_second {
            0 => DEFAULT_RATE,
            rate if rate <= MAX_RATE => rate,
            rate => {
                return Err(invalid(
                    "max_per_second",
                    format!("{rate} is above {MAX_RATE}"),
                ));
            }
        };
        tracing::info!(
            ?action,
            ?selection,
            actor,
            reason,
            dry_run = request.dry_run,
            max_per_second,
            "bulk dead-letter run"
        );
        let run = BulkRun {
            action,
            selection,
            actor,
            reason,
            dry_run: request.dry_run,
            max_per_second,
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(run.run(self.operator.clone(), sender));
        Ok(Box::pin(futures::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
            move |outcome| Ok(wrap(outcome)),
        )))
    }
}

/// The parts the two bulk requests share.
struct BulkRequest<'a> {
    selection: Option<&'a api::DeadLetterSelection>,
    reason: &'a str,
    dry_run: bool,
    max_per_second: u32,
}

#[tonic::async_trait]
impl ProcessorService for ProcessorApi {
    type RedriveDeadLettersStream = BulkStream<api::RedriveDeadLettersResponse>;
    type PurgeDeadLettersStream = BulkStream<api::PurgeDeadLettersResponse>;

    async fn redrive_dead_letters(
        &self,
        request: Request<api::RedriveDeadLettersRequest>,
    ) -> Result<Response<Self::RedriveDeadLettersStream>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.get_ref();
        let outcomes = self.bulk(
            Action::Redrive,
            actor,
            BulkRequest {
                selection: request.selection.as_ref(),
                reason: &request.reason,
                dry_run: request.dry_run,
                max_per_second: request.max_per_second,
            },
            |outcome| api::RedriveDeadLettersResponse {
                outcome: Some(outcome),
            },
        )?;
        Ok(Response::new(outcomes))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<api::PurgeDeadLettersRequest>,
    ) -> Result<Response<Self::PurgeDeadLettersStream>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.get_ref();
        let outcomes = self.bulk(
            Action::Purge,
            actor,
            BulkRequest {
                selection: request.selection.as_ref(),
                reason: &request.reason,
                dry_run: request.dry_run,
                max_per_second: request.max_per_second,
            },
            |outcome| api::PurgeDeadLettersResponse {
                outcome: Some(outcome),
            },
        )?;
        Ok(Response::new(outcomes))
    }

    async fn get_order_processing(
        &self,
        request: Request<api::GetOrderProcessingRequest>,
    ) -> Result<Response<api::GetOrderProcessingResponse>, Status> {
        let raw = request.into_inner().order_id;
        let order_id = Uuid::parse_str(raw.trim()).map_err(|_| {
            invalid(
                "order_id",
                format!("{:?} is not a UUID", ordo_telemetry::safe_text(&raw, 64)),
            )
        })?;
        let history = self
            .store
            .order_history(order_id)
            .await
            .map_err(unavailable)?;
        let record = history.record.ok_or_else(|| {
            Status::not_found(format!("the processor has no record of order {order_id}"))
        })?;
        let correlation_id = record.correlation_id.clone();
        let mut response = Response::new(api::GetOrderProcessingResponse {
            processing: Some(convert::processing_to_proto(
                record,
                history.errors,
                history.audit,
            )),
        });
        if let Ok(value) = correlation_id.parse() {
            response
                .metadata_mut()
                .insert(ordo_telemetry::CORRELATION_HEADER, value);
        }
        Ok(response)
    }

    async fn list_dead_letters(
        &self,
        request: Request<api::ListDeadLettersRequest>,
    ) -> Result<Response<api::ListDeadLettersResponse>, Status> {
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
        let from = match request.page_token.trim() {
            "" => 1,
            token => token
                .parse::<u64>()
                .ok()
                .filter(|from| *from >= 1)
                .ok_or_else(|| {
                    invalid(
                        "page_token",
                        "not a token from a previous response".to_owned(),
                    )
                })?,
        };
        let filter = Filter::from_proto(request.filter.as_ref())
            .map_err(|(field, why)| invalid(&field, why))?;
        let page = self
            .dead_letters
            .list_matching(
                from,
                usize::try_from(page_size).unwrap_or(20),
                |dead_letter| filter.matches(dead_letter),
            )
            .await
            .map_err(nats_unavailable)?;
        let mut dead_letters: Vec<api::DeadLetter> = page
            .dead_letters
            .into_iter()
            .map(convert::dead_letter_to_proto)
            .collect();
        // Dead letters carry their payloads (up to 1 MiB each): a page is cut
        // short before it outgrows what a client accepts.
        let kept = ordo_proto::items_within(&dead_letters, ordo_proto::MAX_PAGE_BYTES);
        let next = match dead_letters.get(kept) {
            Some(first_left_out) => Some(first_left_out.id),
            None => page.next,
        };
        dead_letters.truncate(kept);
        Ok(Response::new(api::ListDeadLettersResponse {
            dead_letters,
            next_page_token: next.map(|next| next.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_dead_letter(
        &self,
        request: Request<api::GetDeadLetterRequest>,
    ) -> Result<Response<api::GetDeadLetterResponse>, Status> {
        self.admin.check(request.metadata())?;
        let id = dead_letter_id(request.into_inner().id)?;
        let dead_letter = self
            .dead_letters
            .get(id)
            .await
            .map_err(nats_unavailable)?
            .ok_or_else(|| not_found(id))?;
        Ok(Response::new(api::GetDeadLetterResponse {
            dead_letter: Some(convert::dead_letter_to_proto(dead_letter)),
        }))
    }

    async fn redrive_dead_letter(
        &self,
        request: Request<api::RedriveDeadLetterRequest>,
    ) -> Result<Response<api::RedriveDeadLetterResponse>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.into_inner();
        let id = dead_letter_id(request.id)?;
        let reason = required_reason(&request.reason)?;
        let decision = Decision {
            actor: &actor,
            reason: &reason,
        };
        let redriven = self
            .operator
            .redrive(id, decision)
            .await
            .map_err(operator_status)?;
        tracing::info!(
            id,
            subject = redriven.subject,
            message_id = redriven.message_id,
            actor,
            reason,
            "dead letter redriven"
        );
        Ok(Response::new(api::RedriveDeadLetterResponse {
            subject: redriven.subject,
            message_id: redriven.message_id,
            stream_sequence: redriven.stream_sequence,
        }))
    }

    async fn purge_dead_letter(
        &self,
        request: Request<api::PurgeDeadLetterRequest>,
    ) -> Result<Response<api::PurgeDeadLetterResponse>, Status> {
        let actor = self.admin.check(request.metadata())?;
        let request = request.into_inner();
        let id = dead_letter_id(request.id)?;
        let reason = required_reason(&request.reason)?;
        let decision = Decision {
            actor: &actor,
            reason: &reason,
        };
        let purged = self
            .operator
            .purge(id, decision)
            .await
            .map_err(operator_status)?;
        Ok(Response::new(api::PurgeDeadLetterResponse {
            state: purged
                .stage
                .map_or(api::ProcessingState::Unspecified, convert::state_to_proto)
                .into(),
            outcome: purged.outcome,
        }))
    }
}

/// An operator's reason: required, one line, at most 512 characters.
fn required_reason(raw: &str) -> Result<String, Status> {
    ordo_service_kit::admin::required_reason(raw).map_err(|why| invalid("reason", why))
}

fn operator_status(err: OperatorError) -> Status {
    match err {
        OperatorError::NotFound(id) => not_found(id),
        OperatorError::DeadLetters(err) => nats_unavailable(err),
        OperatorError::Database(err) => unavailable(err),
        OperatorError::Provider(failure) => {
            tracing::warn!(
                code = failure.code,
                error = failure.text,
                "purge refused: the payment provider did not answer"
            );
            Status::unavailable(format!(
                "the payment provider could not confirm that nothing stays charged ({}); \
                 the dead letter is kept: try again later",
                failure.code
            ))
        }
        OperatorError::Contention => Status::aborted("the order's record kept changing; try again"),
    }
}

fn dead_letter_id(id: u64) -> Result<u64, Status> {
    if id == 0 {
        return Err(invalid(
            "id",
            "must be a dead letter's id (1 or more)".to_owned(),
        ));
    }
    Ok(id)
}

fn not_found(id: u64) -> Status {
    Status::not_found(format!("no dead letter {id}"))
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

fn unavailable(err: sea_orm::DbErr) -> Status {
    tracing::warn!(error = %err, "database unavailable");
    Status::unavailable("the processor's database is unavailable; retry")
}

fn nats_unavailable(err: async_nats::Error) -> Status {
    tracing::warn!(error = %err, "dead-letter stream unavailable");
    Status::unavailable("the dead-letter stream is unavailable; retry")
}
