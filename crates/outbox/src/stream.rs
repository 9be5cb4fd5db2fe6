//! Creating the streams at start-up, idempotently, with their limits: no
//! stream grows without bound, and none drops what was not consumed to make
//! room — a full stream refuses new messages (discard policy `new`), so
//! publishing fails visibly and the outbox keeps the rows.

use async_nats::jetstream::{self, stream};

use crate::config::StreamSettings;

/// The stream `settings` describe.
pub fn stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: settings.name.clone(),
        subjects: settings.subjects(),
        storage: stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes.unwrap_or(-1),
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// The dead-letter stream of the stream `settings` describe: the same
/// window and replicas, a size cap of its own, and no age limit (a dead
/// letter waits for an operator).
pub fn dead_letter_stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: settings.dead_letter_name(),
        subjects: settings.dead_letter_subjects(),
        max_bytes: settings.dead_letter_max_bytes.unwrap_or(-1),
        max_age: std::time::Duration::ZERO,
        ..stream_config(settings)
    }
}

/// Creates the stream `wanted` if missing, else brings its subjects,
/// duplicate window, replicas and limits in line. Safe to run from every
/// replica at every start.
pub async fn ensure_stream_config(
    jetstream: &jetstream::Context,
    wanted: stream::Config,
) -> Result<stream::Info, async_nats::Error> {
    let mut existing = jetstream.get_or_create_stream(wanted.clone()).await?;
    let current = existing.info().await?.config.clone();
    if current.subjects != wanted.subjects
        || current.duplicate_window != wanted.duplicate_window
        || current.num_replicas != wanted.num_replicas
        || current.max_age != wanted.max_age
        || current.max_bytes != wanted.max_bytes
        || current.discard != wanted.discard
    {
        let updated = stream::Config {
            subjects: wanted.subjects,
            duplicate_window: wanted.duplicate_window,
            num_replicas: wanted.num_replicas,
            max_age: wanted.max_age,
            max_bytes: wanted.max_bytes,
            discard: wanted.discard,
            ..current
        };
        return Ok(jetstream.update_stream(updated).await?);
    }
    Ok(existing.info().await?.clone())
}

/// [`ensure_stream_config`] for the stream `settings` describe.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, async_nats::Error> {
    ensure_stream_config(jetstream, stream_config(settings)).await
}
