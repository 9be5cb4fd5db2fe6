//! The store carries out the payment machine's decisions faithfully: random
//! sequences of inputs — duplicates, reorderings, answers that make no
//! sense, writes that race a concurrent change — go through the real store
//! on real PostgreSQL and through `payment::next` on a record in memory,
//! and the two must agree on the record, the inbox and every announced
//! verdict.

use std::collections::HashSet;

use ordo_lifecycle::payment::{self, Answer, Input, Kind, Record, Then, Verdict, Voided};
use ordo_outbox::PartitionCount;
use ordo_testkit::{Schema, TestDatabase};
use processor::store::{MessageRef, OrderRef, ProcessingStore, RecordWrite};
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

/// One thing that happens, with the message it comes with.
#[derive(Debug, Clone)]
struct Event {
    message: u8,
    input: Input,
    /// Another write lands between this one's read and its write.
    raced: bool,
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(Answer::Approved {
            payment_id: "pay-1".into()
        }),
        Just(Answer::Declined {
            reason: "amount_above_limit".into()
        }),
        Just(Answer::Voided(Voided::NothingCharged)),
        Just(Answer::Voided(Voided::Refunded {
            payment_id: "pay-1".into(),
            refund_id: "ref-1".into()
        })),
        Just(Answer::Refunded {
            refund_id: "ref-1".into()
        }),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Placement), Just(Kind::Cancellation)]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => Just(Input::Placed),
        3 => Just(Input::Cancelled),
        4 => answer().prop_map(Input::Answer),
        1 => kind().prop_map(|kind| Input::Failed { kind, reason: "payment_timeout: slow".into() }),
        1 => kind().prop_map(|kind| Input::GaveUp { kind, reason: "5 attempts failed".into() }),
        1 => proptest::option::of(answer())
            .prop_map(|answer| Input::Purge { reason: "operator".into(), answer }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (0..4_u8, input(), proptest::bool::weighted(0.2)).prop_map(|(message, input, raced)| Event {
        message,
        input,
        raced,
    })
}

/// What the machine alone says happened.
#[derive(Debug, Default)]
struct Expected {
    record: Record,
    inbox: HashSet<String>,
    verdicts: Vec<&'static str>,
}

fn subject_of(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Confirmed { .. } => "orders.confirmed",
        Verdict::Rejected { .. } => "orders.rejected",
        Verdict::Refunded { .. } => "orders.refunded",
    }
}

async fn one_run(store: &ProcessingStore, events: Vec<Event>) -> Result<(), TestCaseError> {
    let order = OrderRef {
        order_id: Uuid::now_v7(),
        correlation_id: "store-model",
    };
    let mut expected = Expected::default();
    for event in events {
        let message_id = format!("{}-m{}", order.order_id, event.message);
        let message = MessageRef {
            message_id: &message_id,
            subject: "orders.placed",
            ..Default::default()
        };
        let settles_a_message = matches!(
            event.input,
            Input::Placed | Input::Cancelled | Input::Answer(_)
        );
        let mut raced = event.raced;
        loop {
            let lookup = store
                .message_lookup(&message_id, order.order_id)
                .await
                .map_err(fail)?;
            prop_assert_eq!(&lookup.machine(), &expected.record);
            if settles_a_message && expected.inbox.contains(&message_id) {
                prop_assert!(lookup.seen, "the inbox forgot {}", message_id);
                break;
            }
            prop_assert!(!lookup.seen || !settles_a_message);
            let step = payment::next(&lookup.machine(), &event.input);
            if raced {
                // A concurrent failed attempt moves the record first.
                raced = false;
                let moved = payment::next(
                    &lookup.machine(),
                    &Input::Failed {
                        kind: Kind::Placement,
                        reason: "raced".into(),
                    },
                );
                let wrote = store
                    .record_save(RecordWrite {
                        order,
                        expected: lookup.version(),
                        record: &moved.record,
                    })
                    .await
                    .map_err(fail)?;
                prop_assert!(wrote);
                expected.record = moved.record;
                let stale = RecordWrite {
                    order,
                    expected: lookup.version(),
                    record: &step.record,
                };
                prop_assert!(!store.record_save(stale).await.map_err(fail)?);
                continue;
            }
            let write = RecordWrite {
                order,
                expected: lookup.version(),
                record: &step.record,
            };
            match &step.then {
                Then::Settle { verdict, outcome } if settles_a_message => {
                    let settled = store
                        .message_settle(message, write, verdict.as_ref(), outcome)
                        .await
                        .map_err(fail)?;
                    prop_assert!(settled.is_some());
                    expected.inbox.insert(message_id.clone());
                    expected.verdicts.extend(verdict.iter().map(subject_of));
                }
                _ if step.record == lookup.machine() => {}
                _ => {
                    prop_assert!(store.record_save(write).await.map_err(fail)?);
                }
            }
            expected.record = step.record;
            break;
        }
    }
    let stored = store
        .processing_get(order.order_id)
        .await
        .map_err(fail)?
        .map_or_else(Record::new, |stored| stored.machine());
    prop_assert_eq!(stored, expected.record);
    let verdicts = store
        .connection()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT subject FROM outbox WHERE aggregate_id = $1 ORDER BY id",
            [order.order_id.to_string().into()],
        ))
        .await
        .map_err(fail)?
        .iter()
        .map(|row| row.try_get::<String>("", "subject"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    prop_assert_eq!(verdicts, expected.verdicts);
    Ok(())
}

fn fail(err: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(err.to_string())
}

#[test]
fn the_store_writes_what_the_machine_decides_for_any_sequence_of_inputs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(async {
        let database = TestDatabase::create_for(Schema::Processor).await.unwrap();
        let db = ordo_migrations::database::connect(database.url(), 4)
            .await
            .unwrap();
        (
            database,
            ProcessingStore::new(db, PartitionCount::new(4).unwrap(), None),
        )
    });
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(events in proptest::collection::vec(event(), 1..16))| {
        runtime.block_on(one_run(&store.1, events))?;
    });
}
