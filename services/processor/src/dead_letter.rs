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
//!
//! A dead letter always fits the server's max payload: the history header
//! keeps the newest entries that fit (`Ordo-DL-Error-History-Truncated`
//! says how many of how many; the database keeps them all), and an
//! original too large to travel with its headers stays where it is — the
//! dead letter says where (`Ordo-DL-Payload-Omitted`) and a redrive reads
//! it from there. Every header value is made one line first: nothing a
//! message carries can make writing its dead letter fail.

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
    pub const ERROR_HISTORY_TRUNCATED: &str = "Ordo-DL-Error-History-Truncated";
    pub const PAYLOAD_OMITTED: &str = "Ordo-DL-Payload-Omitted";
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
    /// The original's sequence in the source stream.
    pub source_sequence: u64,
    /// The payload was too large to travel with the dead letter: it is read
    /// from the source stream at `source_sequence`.
    pub payload_omitted: bool,
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

/// Most dead letters read for one filtered page.
pub const SCAN_BUDGET: usize = 500;

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

    /// Creates the dead-letter stream if missing, or brings it in line with
    /// the settings (file storage, the source's duplicate window and
    /// replicas, its own size cap, no age limit).
    pub async fn ensure(&self) -> Result<(), DeadLetterError> {
        ordo_outbox::stream::ensure_stream_config(
            &self.jetstream,
            ordo_outbox::stream::dead_letter_stream_config(&self.source),
        )
        .await
        .map(drop)
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
            one_line(&format!("deadletter:{}", draft.message_id)),
        );
        let mut put = |name: &'static str, text: &str| message_headers.insert(name, one_line(text));
        put(headers::SOURCE_STREAM, &self.source.name);
        put(headers::SOURCE_SUBJECT, &draft.source_subject);
        put(headers::SOURCE_SEQUENCE, &draft.source_sequence.to_string());
        put(headers::MESSAGE_ID, &draft.message_id);
        if let Some(order_id) = &draft.order_id {
            put(headers::ORDER_ID, order_id);
        }
        put(headers::REASON, &truncated(&draft.reason, MAX_REASON_BYTES));
        put(
            headers::TIME,
            &Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        let max_payload = self.jetstream.client().server_info().max_payload;
        let max_payload = if max_payload == 0 {
            DEFAULT_MAX_PAYLOAD
        } else {
            max_payload
        };
        let fixed = headers_size(&message_headers) + HEADROOM;
        let mut payload = draft.payload;
        if fixed + payload.len() > max_payload {
            message_headers.insert(
                headers::PAYLOAD_OMITTED,
                one_line(&format!(
                    "{} bytes, in stream {} at sequence {}",
                    payload.len(),
                    self.source.name,
                    draft.source_sequence
                )),
            );
            payload = Bytes::new();
        }
        let budget = max_payload.saturating_sub(fixed + payload.len());
        let (history, kept) = history_within(&draft.history, budget)?;
        message_headers.insert(headers::ERROR_HISTORY, one_line(&history));
        if kept < draft.history.len() {
            message_headers.insert(
                headers::ERROR_HISTORY_TRUNCATED,
                one_line(&format!(
                    "the newest {kept} of {} entries; all are in the processor's database",
                    draft.history.len()
                )),
            );
        }
        let subject = self.source.dead_letter_subject_for(&draft.source_subject);
        let ack = self
            .jetstream
            .publish_with_headers(subject, message_headers, payload)
            .await?
            .await?;
        Ok(ack.sequence)
    }

    /// The dead-letter stream's name, depth and oldest dead letter.
    pub async fn status(
        &self,
    ) -> Result<ordo_proto::operator::v1::DeadLetterStatus, DeadLetterError> {
        let mut stream = self.stream().await?;
        let info = stream.info().await?;
        let oldest = (info.state.messages > 0)
            .then(|| {
                let first = info.state.first_timestamp;
                chrono::DateTime::from_timestamp(first.unix_timestamp(), first.nanosecond())
            })
            .flatten();
        Ok(ordo_proto::operator::v1::DeadLetterStatus {
            stream: self.source.dead_letter_name(),
            messages: info.state.messages,
            oldest_time: oldest.map(ordo_proto::timestamp),
        })
    }

    /// The sequence of the newest dead letter so far (0 for none ever).
    pub async fn last_sequence(&self) -> Result<u64, DeadLetterError> {
        let mut stream = self.stream().await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    /// Up to `page_size` dead letters from sequence `from` on.
    pub async fn list(&self, from: u64, page_size: usize) -> Result<Page, DeadLetterError> {
        self.list_matching(from, page_size, |_| true).await
    }

    /// Up to `page_size` dead letters from sequence `from` on that `wanted`
    /// keeps. At most [`SCAN_BUDGET`] are read for one page, so a filter
    /// that matches little still answers in bounded time: the page is then
    /// short (maybe empty) and `next` says where to go on.
    pub async fn list_matching(
        &self,
        from: u64,
        page_size: usize,
        wanted: impl Fn(&DeadLetter) -> bool,
    ) -> Result<Page, DeadLetterError> {
        let stream = self.stream().await?;
        let filter = self.source.dead_letter_subjects().concat();
        let mut dead_letters = Vec::with_capacity(page_size);
        let mut next = from.max(1);
        let mut scanned = 0;
        while dead_letters.len() < page_size && scanned < SCAN_BUDGET {
            let found = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(filter.clone())
                .send()
                .await;
            match found {
                Ok(message) => {
                    next = message.sequence + 1;
                    scanned += 1;
                    let dead_letter = from_stored(message)?;
                    if wanted(&dead_letter) {
                        dead_letters.push(dead_letter);
                    }
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

    /// Publishes a dead letter's original back to its source subject and
    /// deletes the dead letter.
    pub async fn redrive(&self, dead_letter: DeadLetter) -> Result<Redriven, DeadLetterError> {
        let message_id = format!("{}~redrive-{}", dead_letter.message_id, dead_letter.id);
        let mut message_headers = HeaderMap::new();
        for (name, value) in &dead_letter.headers {
            if let (Ok(name), Ok(value)) = (
                name.parse::<async_nats::HeaderName>(),
                value.parse::<async_nats::HeaderValue>(),
            ) {
                message_headers.insert(name, value);
            }
        }
        message_headers.insert(async_nats::header::NATS_MESSAGE_ID, one_line(&message_id));
        let payload = if dead_letter.payload_omitted {
            self.jetstream
                .get_stream(&self.source.name)
                .await?
                .get_raw_message(dead_letter.source_sequence)
                .await?
                .payload
        } else {
            dead_letter.payload
        };
        let ack = self
            .jetstream
            .publish_with_headers(dead_letter.source_subject.clone(), message_headers, payload)
            .await?
            .await?;
        self.purge(dead_letter.id).await?;
        Ok(Redriven {
            subject: dead_letter.source_subject,
            message_id,
            stream_sequence: ack.sequence,
        })
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
            .get_or_create_stream(ordo_outbox::stream::dead_letter_stream_config(&self.source))
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
        source_sequence: header(headers::SOURCE_SEQUENCE)
            .and_then(|sequence| sequence.parse().ok())
            .unwrap_or_default(),
        payload_omitted: header(headers::PAYLOAD_OMITTED).is_some(),
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

/// The server's max payload when it does not say (NATS's default).
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Room kept for the protocol's own bytes around headers and payload.
const HEADROOM: usize = 1024;
/// The longest reason a dead letter carries.
const MAX_REASON_BYTES: usize = 2048;

/// A header value: NATS header values are one line, so line breaks become
/// spaces and nothing a message carries can make a header fail.
pub fn one_line(text: &str) -> async_nats::HeaderValue {
    let line = text.replace(['\r', '\n'], " ");
    line.parse().unwrap_or_default()
}

/// `text`, cut to at most `max` bytes on a character boundary.
fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Bytes the headers take on the wire, roughly: `name: value\r\n` each.
fn headers_size(map: &HeaderMap) -> usize {
    map.iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|value| AsRef::<str>::as_ref(name).len() + value.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum::<usize>()
        + 16
}

/// The history as JSON within `budget` bytes: the newest entries that fit,
/// and how many those are.
fn history_within(
    history: &[ErrorEntry],
    budget: usize,
) -> Result<(String, usize), serde_json::Error> {
    let budget = budget.saturating_sub(headers::ERROR_HISTORY.len() + 4);
    let mut kept = history.len();
    loop {
        let json = serde_json::to_string(&history[history.len() - kept..])?;
        if json.len() <= budget || kept == 0 {
            return Ok((json, kept));
        }
        kept /= 2;
    }
}
