//! The dead-letter stream, `<source>_deadletter` (`ORDERS_deadletter`).
//!
//! A dead letter is the original message — payload and headers unchanged —
//! published on `deadletter.<source subject>` with `Ordo-DL-*` headers
//! saying where it came from, why it was given up, and its whole error
//! history (JSON). Its `Nats-Msg-Id` is `deadletter:<original id>`, so a
//! processor that crashes after publishing and tries again adds no second
//! copy. Redriving publishes the original back to its source subject under
//! `<original id>~redrive-<dead letter id>` (a repeated redrive is a
//! JetStream duplicate) and then deletes the dead letter.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use ordo_outbox::StreamSettings;

use crate::processing::ErrorEntry;

/// Header names a dead letter carries besides the original's.
pub mod headers {
    pub const SOURCE_STREAM: &str = "Ordo-DL-Source-Stream";
    pub const SOURCE_SUBJECT: &str = "Ordo-DL-Source-Subject";
    pub const SOURCE_SEQUENCE: &str = "Ordo-DL-Source-Sequence";
    pub const MESSAGE_ID: &str = "Ordo-DL-Message-Id";
    pub const ORDER_ID: &str = "Ordo-DL-Order-Id";
    pub const REASON: &str = "Ordo-DL-Reason";
    pub const TIME: &str = "Ordo-DL-Time";
    pub const ERROR_HISTORY: &str = "Ordo-DL-Error-History";
    pub const PREFIX: &str = "Ordo-DL-";
}

/// A message on its way to the dead-letter stream.
#[derive(Debug, Clone)]
pub struct DeadLetterDraft {
    pub source_subject: String,
    pub source_sequence: u64,
    pub message_id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub headers: Option<HeaderMap>,
    pub payload: Bytes,
    pub history: Vec<ErrorEntry>,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream.
    pub id: u64,
    pub source_stream: String,
    pub source_subject: String,
    pub message_id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// The original's headers (its `Nats-Msg-Id` is [`DeadLetter::message_id`]).
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
    pub history: Vec<ErrorEntry>,
}

/// Where a redriven message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub subject: String,
    pub message_id: String,
    pub stream_sequence: u64,
}

/// A page of dead letters and where the next starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub dead_letters: Vec<DeadLetter>,
    pub next: Option<u64>,
}

/// Errors talking to the dead-letter stream.
pub type DeadLetterError = async_nats::Error;

/// The dead-letter stream of one source stream.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    jetstream: jetstream::Context,
    source: StreamSettings,
}

impl DeadLetters {
    pub fn new(jetstream: jetstream::Context, source: StreamSettings) -> Self {
        Self { jetstream, source }
    }

    /// Creates the dead-letter stream if missing (file storage, the source's
    /// duplicate window and replicas).
    pub async fn ensure(&self) -> Result<(), DeadLetterError> {
        self.stream().await.map(drop)
    }

    /// Publishes a dead letter and waits for JetStream to store it; its id.
    pub async fn publish(&self, draft: DeadLetterDraft) -> Result<u64, DeadLetterError> {
        let mut message_headers = HeaderMap::new();
        if let Some(original) = &draft.headers {
            for (name, values) in original.iter() {
                if is_message_id(name) {
                    continue;
                }
                for value in values {
                    message_headers.append(name.clone(), value.clone());
                }
            }
        }
        message_headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("deadletter:{}", draft.message_id).as_str(),
        );
        message_headers.insert(headers::SOURCE_STREAM, self.source.name.as_str());
        message_headers.insert(headers::SOURCE_SUBJECT, draft.source_subject.as_str());
        message_headers.insert(
            headers::SOURCE_SEQUENCE,
            draft.source_sequence.to_string().as_str(),
        );
        message_headers.insert(headers::MESSAGE_ID, draft.message_id.as_str());
        if let Some(order_id) = &draft.order_id {
            message_headers.insert(headers::ORDER_ID, order_id.as_str());
        }
        message_headers.insert(headers::REASON, one_line(&draft.reason).as_str());
        message_headers.insert(
            headers::TIME,
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_str(),
        );
        message_headers.insert(
            headers::ERROR_HISTORY,
            serde_json::to_string(&draft.history)?.as_str(),
        );
        let subject = self.source.dead_letter_subject_for(&draft.source_subject);
        let ack = self
            .jetstream
            .publish_with_headers(subject, message_headers, draft.payload)
            .await?
            .await?;
        Ok(ack.sequence)
    }

    /// Up to `page_size` dead letters from sequence `from` on.
    pub async fn list(&self, from: u64, page_size: usize) -> Result<Page, DeadLetterError> {
        let stream = self.stream().await?;
        let filter = self.source.dead_letter_subjects().concat();
        let mut dead_letters = Vec::with_capacity(page_size);
        let mut next = from.max(1);
        while dead_letters.len() < page_size {
            let found = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(filter.clone())
                .send()
                .await;
            match found {
                Ok(message) => {
                    next = message.sequence + 1;
                    dead_letters.push(from_stored(message)?);
                }
                Err(err) if is_not_found(&err) => {
                    return Ok(Page {
                        dead_letters,
                        next: None,
                    });
                }
                Err(err) => return Err(err.into()),
            }
        }
        // One more look, so the last page says it is the last.
        let more = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(filter)
            .send()
            .await;
        match more {
            Ok(_) => Ok(Page {
                dead_letters,
                next: Some(next),
            }),
            Err(err) if is_not_found(&err) => Ok(Page {
                dead_letters,
                next: None,
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// One dead letter, if it exists.
    pub async fn get(&self, id: u64) -> Result<Option<DeadLetter>, DeadLetterError> {
        let stream = self.stream().await?;
        match stream.get_raw_message(id).await {
            Ok(message) => Ok(Some(from_stored(message)?)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Publishes dead letter `id`'s original back to its source subject and
    /// deletes it; `None` if there is no such dead letter.
    pub async fn redrive(&self, id: u64) -> Result<Option<Redriven>, DeadLetterError> {
        let Some(dead_letter) = self.get(id).await? else {
            return Ok(None);
        };
        let message_id = format!("{}~redrive-{id}", dead_letter.message_id);
        let mut message_headers = HeaderMap::new();
        for (name, value) in &dead_letter.headers {
            message_headers.insert(name.as_str(), value.as_str());
        }
        message_headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        let ack = self
            .jetstream
            .publish_with_headers(
                dead_letter.source_subject.clone(),
                message_headers,
                dead_letter.payload,
            )
            .await?
            .await?;
        self.purge(id).await?;
        Ok(Some(Redriven {
            subject: dead_letter.source_subject,
            message_id,
            stream_sequence: ack.sequence,
        }))
    }

    /// Deletes dead letter `id`; `false` if there was none.
    pub async fn purge(&self, id: u64) -> Result<bool, DeadLetterError> {
        let stream = self.stream().await?;
        match stream.delete_message(id).await {
            Ok(deleted) => Ok(deleted),
            Err(err)
                if matches!(
                    err.kind(),
                    stream::DeleteMessageErrorKind::JetStream(ref js)
                        if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND
                            || (js.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_DELETE_FAILED
                                && js.to_string().contains("no message found"))
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn stream(&self) -> Result<stream::Stream, DeadLetterError> {
        Ok(self
            .jetstream
            .get_or_create_stream(stream::Config {
                name: self.source.dead_letter_name(),
                subjects: self.source.dead_letter_subjects(),
                storage: stream::StorageType::File,
                duplicate_window: self.source.duplicate_window,
                num_replicas: self.source.replicas,
                ..Default::default()
            })
            .await?)
    }
}

fn is_not_found(err: &stream::RawMessageError) -> bool {
    matches!(err.kind(), stream::RawMessageErrorKind::NoMessageFound)
}

fn from_stored(message: jetstream::message::StreamMessage) -> Result<DeadLetter, DeadLetterError> {
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    let history = match header(headers::ERROR_HISTORY) {
        Some(json) => serde_json::from_str(&json)?,
        None => Vec::new(),
    };
    let original = message
        .headers
        .iter()
        .filter(|(name, _)| {
            let text: &str = name.as_ref();
            !text.starts_with(headers::PREFIX) && !is_message_id(name)
        })
        .filter_map(|(name, values)| {
            values
                .first()
                .map(|value| (name.to_string(), value.as_str().to_owned()))
        })
        .collect();
    Ok(DeadLetter {
        id: message.sequence,
        source_stream: header(headers::SOURCE_STREAM).unwrap_or_default(),
        source_subject: header(headers::SOURCE_SUBJECT).unwrap_or_default(),
        message_id: header(headers::MESSAGE_ID).unwrap_or_default(),
        order_id: header(headers::ORDER_ID),
        reason: header(headers::REASON).unwrap_or_default(),
        dead_lettered_at: header(headers::TIME)
            .and_then(|time| DateTime::parse_from_rfc3339(&time).ok())
            .map(|time| time.with_timezone(&Utc)),
        headers: original,
        payload: message.payload,
        history,
    })
}

fn is_message_id(name: &async_nats::HeaderName) -> bool {
    let name: &str = name.as_ref();
    name.eq_ignore_ascii_case(async_nats::header::NATS_MESSAGE_ID.as_ref() as &str)
}

/// NATS header values are one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
