//! Processing records and dead letters → `ordo.processor.v1` messages.

use ordo_proto::processor::v1 as api;

use ordo_lifecycle::payment::Stage;

use crate::dead_letter::DeadLetter;
use crate::events::timestamp;
use crate::processing::{AuditEntry, ErrorEntry, ProcessingRecord};

pub fn state_to_proto(stage: Stage) -> api::ProcessingState {
    match stage {
        Stage::New | Stage::Authorizing => api::ProcessingState::Retrying,
        Stage::DeadLettered => api::ProcessingState::DeadLettered,
        Stage::CancelRequested => api::ProcessingState::CancelRequested,
        Stage::VoidDue => api::ProcessingState::VoidDue,
        Stage::Rejecting => api::ProcessingState::Rejecting,
        Stage::Confirmed => api::ProcessingState::Confirmed,
        Stage::RefundDue => api::ProcessingState::RefundDue,
        Stage::Rejected => api::ProcessingState::Rejected,
        Stage::Cancelled => api::ProcessingState::Cancelled,
        Stage::Refunded => api::ProcessingState::Refunded,
    }
}

pub fn audit_to_proto(entry: AuditEntry) -> api::AuditEntry {
    api::AuditEntry {
        action: entry.action,
        actor: entry.actor,
        reason: entry.reason,
        outcome: entry.outcome,
        dead_letter_id: entry.dead_letter_id,
        message_id: entry.message_id,
        subject: entry.subject,
        occur_time: Some(timestamp(entry.occurred_at)),
    }
}

pub fn error_to_proto(entry: ErrorEntry) -> api::ErrorEntry {
    api::ErrorEntry {
        message_id: entry.message_id,
        subject: entry.subject,
        attempt: entry.attempt,
        occur_time: Some(timestamp(entry.occurred_at)),
        code: entry.code,
        text: entry.text,
        instance: entry.instance,
        correlation_id: entry.correlation_id,
    }
}

pub fn processing_to_proto(
    record: ProcessingRecord,
    history: Vec<ErrorEntry>,
    audit: Vec<AuditEntry>,
) -> api::OrderProcessing {
    api::OrderProcessing {
        order_id: record.order_id.to_string(),
        state: state_to_proto(record.state).into(),
        attempts: record.attempts,
        error_history: history.into_iter().map(error_to_proto).collect(),
        payment_id: record.payment_id.unwrap_or_default(),
        refund_id: record.refund_id.unwrap_or_default(),
        status_reason: record.status_reason,
        update_time: Some(timestamp(record.updated_at)),
        audit: audit.into_iter().map(audit_to_proto).collect(),
    }
}

pub fn dead_letter_to_proto(dead_letter: DeadLetter) -> api::DeadLetter {
    let correlation_id = dead_letter
        .headers
        .get(ordo_telemetry::CORRELATION_HEADER)
        .cloned()
        .or_else(|| {
            dead_letter
                .history
                .first()
                .map(|entry| entry.correlation_id.clone())
        })
        .unwrap_or_default();
    api::DeadLetter {
        correlation_id,
        code: crate::selection::code_of(&dead_letter),
        fingerprint: crate::selection::fingerprint_of(&dead_letter),
        id: dead_letter.id,
        source_stream: dead_letter.source_stream,
        source_subject: dead_letter.source_subject,
        message_id: dead_letter.message_id,
        order_id: dead_letter.order_id.unwrap_or_default(),
        reason: dead_letter.reason,
        dead_letter_time: dead_letter.dead_lettered_at.map(timestamp),
        headers: dead_letter.headers.into_iter().collect(),
        payload: dead_letter.payload.to_vec(),
        error_history: dead_letter
            .history
            .into_iter()
            .map(error_to_proto)
            .collect(),
    }
}
