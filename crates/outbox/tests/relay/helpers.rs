//! A database and stream per test, writing events as a service would, and
//! checking what reached the stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ordo_outbox::{OutboxEvent, PartitionCount, RelayConfig, StreamSettings, outbox_insert_in_txn};
use ordo_testkit::{StreamMessage, TestDatabase, TestStream, eventually, nats::shared_nats_url};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

/// One written event: its aggregate, its place in that aggregate, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub aggregate: String,
    pub seq: usize,
    pub event_id: String,
}

pub struct Harness {
    pub db: DatabaseConnection,
    pub stream: TestStream,
    pub nats_url: String,
    pub database: TestDatabase,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_nats(shared_nats_url()).await
    }

    pub async fn with_nats(nats_url: String) -> Self {
        let database = TestDatabase::create().await.unwrap();
        let db = database.connect().await.unwrap();
        Self {
            db,
            stream: TestStream::new().await,
            nats_url,
            database,
        }
    }

    /// Quick leases and polls, so tests see takeovers in seconds. (A TTL
    /// much below 3 s leaves a busy machine's heartbeats too little slack:
    /// the supervisor would keep stopping its actors as leases run short.)
    pub fn config(&self) -> RelayConfig {
        let mut config = RelayConfig::new(self.database.url(), self.nats_url.clone());
        config.stream = StreamSettings::isolated(&self.stream.name, &self.stream.subject_prefix);
        config.lease_ttl = Duration::from_secs(3);
        config.poll_interval = Duration::from_millis(100);
        config.publish_timeout = Duration::from_secs(1);
        config.database_connections = 4;
        config
    }

    /// Writes `per_aggregate` events for each of `aggregates` aggregates,
    /// interleaved (round by round), 100 events per transaction.
    pub async fn write(
        &self,
        prefix: &str,
        aggregates: usize,
        per_aggregate: usize,
    ) -> Vec<Written> {
        self.write_in(PartitionCount::default(), prefix, aggregates, per_aggregate)
            .await
    }

    /// [`Harness::write`] for a relay running `partitions` partitions.
    pub async fn write_in(
        &self,
        partitions: PartitionCount,
        prefix: &str,
        aggregates: usize,
        per_aggregate: usize,
    ) -> Vec<Written> {
        let mut events = Vec::new();
        for seq in 0..per_aggregate {
            for n in 0..aggregates {
                events.push((format!("{prefix}{n}"), seq));
            }
        }
        let mut written = Vec::new();
        for chunk in events.chunks(100) {
            let txn = self.db.begin().await.unwrap();
            for (aggregate, seq) in chunk {
                written.push(write_event_in_partitions(&txn, partitions, aggregate, *seq).await);
            }
            txn.commit().await.unwrap();
        }
        written
    }

    pub async fn outbox_len(&self) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT count(*) AS n FROM outbox",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    pub async fn drained(&self, within: Duration) {
        eventually("the outbox to drain", within, || async {
            self.outbox_len().await == 0
        })
        .await;
    }

    pub async fn messages(&self) -> Vec<StreamMessage> {
        self.stream.messages(&self.nats_url).await.unwrap()
    }

    /// Every written event is in the stream exactly once, and each
    /// aggregate's events stand in the order they were written.
    pub async fn assert_stream_holds_exactly(&self, written: &[Written]) {
        let messages = self.messages().await;
        let ids: HashSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            messages.len(),
            "a Nats-Msg-Id is in the stream twice"
        );
        let expected: HashSet<&str> = written.iter().map(|w| w.event_id.as_str()).collect();
        assert_eq!(
            messages.len(),
            written.len(),
            "stream holds {} messages, {} written",
            messages.len(),
            written.len()
        );
        assert_eq!(
            ids, expected,
            "the stream's ids differ from the written ones"
        );

        let mut per_aggregate: HashMap<String, Vec<usize>> = HashMap::new();
        for message in &messages {
            let payload = String::from_utf8(message.payload.clone()).unwrap();
            let (aggregate, seq) = payload.rsplit_once(':').unwrap();
            per_aggregate
                .entry(aggregate.to_owned())
                .or_default()
                .push(seq.parse().unwrap());
        }
        for (aggregate, seqs) in per_aggregate {
            let in_order: Vec<usize> = (0..seqs.len()).collect();
            assert_eq!(
                seqs, in_order,
                "aggregate {aggregate} out of order in the stream"
            );
        }
        for message in &messages {
            assert!(message.subject.starts_with(&self.stream.subject_prefix));
            assert_eq!(message.header("x-correlation-id"), Some("corr-test"));
            assert_eq!(message.header("ce-id"), Some(message.message_id.as_str()));
        }
    }
}

/// Writes one event, payload `<aggregate>:<seq>`, inside `txn`.
pub async fn write_event_in_txn<C: ConnectionTrait>(
    txn: &C,
    aggregate: &str,
    seq: usize,
) -> Written {
    write_event_in_partitions(txn, PartitionCount::default(), aggregate, seq).await
}

/// [`write_event_in_txn`] for a relay running `partitions` partitions.
pub async fn write_event_in_partitions<C: ConnectionTrait>(
    txn: &C,
    partitions: PartitionCount,
    aggregate: &str,
    seq: usize,
) -> Written {
    let event = OutboxEvent::new(
        "/ordo/test",
        "order",
        aggregate.to_owned(),
        "orders.placed",
        "ordo.test.Event",
        chrono::Utc::now(),
        "corr-test",
    )
    .with_payload(format!("{aggregate}:{seq}").into_bytes());
    outbox_insert_in_txn(txn, partitions, &event).await.unwrap();
    Written {
        aggregate: aggregate.to_owned(),
        seq,
        event_id: event.event_id.to_string(),
    }
}
