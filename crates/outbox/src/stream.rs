//! Creating the stream at start-up, idempotently.

use async_nats::jetstream::{self, stream};

use crate::config::StreamSettings;

/// Creates the stream if missing, else brings its subjects, duplicate window
/// and replicas in line with `settings`. Safe to run from every replica at
/// every start.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, async_nats::Error> {
    let wanted = stream::Config {
        name: settings.name.clone(),
        subjects: settings.subjects(),
        storage: stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    let mut existing = jetstream.get_or_create_stream(wanted.clone()).await?;
    let current = existing.info().await?.config.clone();
    if current.subjects != wanted.subjects
        || current.duplicate_window != wanted.duplicate_window
        || current.num_replicas != wanted.num_replicas
    {
        let updated = stream::Config {
            subjects: wanted.subjects,
            duplicate_window: wanted.duplicate_window,
            num_replicas: wanted.num_replicas,
            ..current
        };
        return Ok(jetstream.update_stream(updated).await?);
    }
    Ok(existing.info().await?.clone())
}
