//! Messages that keep failing, or cannot be read, go to the dead-letter
//! stream with their whole error history; a redrive processes them once.

use std::time::Duration;

use ordo_proto::processor::v1::{
    DeadLetter, GetDeadLetterRequest, ListDeadLettersRequest, ProcessingState,
    PurgeDeadLetterRequest, RedriveDeadLetterRequest,
};
use sea_orm::ConnectionTrait as _;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestProcessor, authorized};

async fn dead_letters(processor: &TestProcessor) -> Vec<DeadLetter> {
    processor
        .client
        .clone()
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

async fn wait_for_dead_letters(processor: &TestProcessor, count: usize) -> Vec<DeadLetter> {
    ordo_testkit::eventually(
        &format!("{count} dead letters"),
        Duration::from_secs(20),
        || async { dead_letters(processor).await.len() >= count },
    )
    .await;
    dead_letters(processor).await
}

#[tokio::test]
async fn a_message_failing_every_time_is_dead_lettered_after_five_attempts_and_redriven_once() {
    let processor = TestProcessor::spawn().await;
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    let message_id = processor.publish_placed(order_id, 4200).await;

    let record = processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
    assert_eq!(record.attempts, 5);
    assert!(
        record
            .status_reason
            .starts_with("dead-lettered: 5 attempts failed"),
        "{}",
        record.status_reason
    );
    let attempts: Vec<u32> = record
        .error_history
        .iter()
        .map(|entry| entry.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5]);
    for entry in &record.error_history {
        assert_eq!(entry.message_id, message_id);
        assert_eq!(entry.code, "payment_unavailable");
        assert!(entry.text.contains("Unavailable"), "{}", entry.text);
        assert!(!entry.instance.is_empty());
        assert!(entry.occur_time.is_some());
    }

    let listed = wait_for_dead_letters(&processor, 1).await;
    assert_eq!(listed.len(), 1);
    let dead = &listed[0];
    assert_eq!(dead.message_id, message_id);
    assert_eq!(dead.order_id, order_id.to_string());
    assert_eq!(dead.source_stream, processor.stream.name);
    assert_eq!(
        dead.source_subject,
        processor.stream_settings.subject_for("orders.placed")
    );
    assert_eq!(dead.error_history, record.error_history);
    assert_eq!(
        dead.headers.get("x-correlation-id").map(String::as_str),
        Some("corr-test")
    );
    let fetched = processor
        .client
        .clone()
        .get_dead_letter(authorized(
            GetDeadLetterRequest { id: dead.id },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.dead_letter.as_ref(), Some(dead));
    assert_eq!(processor.payments.counts(order_id).await.authorizations, 0);

    processor.payments.set_faults(0.0, false).await;
    let redriven = processor
        .client
        .clone()
        .redrive_dead_letter(authorized(
            RedriveDeadLetterRequest {
                id: dead.id,
                reason: "the provider is back".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redriven.subject, dead.source_subject);
    assert_ne!(redriven.message_id, message_id);
    let confirmed = processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    assert_eq!(confirmed.attempts, 5, "the history stays with the order");
    assert!(dead_letters(&processor).await.is_empty());
    let again = processor
        .client
        .clone()
        .redrive_dead_letter(authorized(
            RedriveDeadLetterRequest {
                id: dead.id,
                reason: "the provider is back".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    ordo_testkit::eventually("one confirmation", Duration::from_secs(10), || async {
        processor.emitted("confirmed").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(processor.emitted("confirmed").await.len(), 1);
    assert_eq!(processor.payments.counts(order_id).await.authorizations, 1);
}

#[tokio::test]
async fn an_undecodable_message_is_dead_lettered_at_once_and_never_retried() {
    let processor = TestProcessor::spawn().await;
    processor
        .publish(
            "orders.placed",
            "garbage-1",
            b"\xff\xfe not protobuf".to_vec(),
        )
        .await;

    let listed = wait_for_dead_letters(&processor, 1).await;
    let dead = &listed[0];
    assert_eq!(dead.message_id, "garbage-1");
    assert!(dead.reason.starts_with("undecodable: "), "{}", dead.reason);
    assert_eq!(dead.payload, b"\xff\xfe not protobuf");
    assert_eq!(dead.error_history.len(), 1);
    assert_eq!(dead.error_history[0].attempt, 1);
    assert_eq!(dead.order_id, "");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        processor
            .count("SELECT count(*) FROM processing_errors")
            .await,
        1
    );
    assert_eq!(dead_letters(&processor).await.len(), 1);

    processor
        .client
        .clone()
        .purge_dead_letter(authorized(
            PurgeDeadLetterRequest {
                id: dead.id,
                reason: "not wanted".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    assert!(dead_letters(&processor).await.is_empty());
    let gone = processor
        .client
        .clone()
        .purge_dead_letter(authorized(
            PurgeDeadLetterRequest {
                id: dead.id,
                reason: "not wanted".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn dead_letters_page_oldest_first() {
    let processor = TestProcessor::spawn().await;
    for n in 0..5 {
        processor
            .publish("orders.placed", &format!("bad-{n}"), vec![0xff, n])
            .await;
    }
    wait_for_dead_letters(&processor, 5).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = processor
            .client
            .clone()
            .list_dead_letters(authorized(
                ListDeadLettersRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    filter: None,
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.dead_letters.len() <= 2);
        seen.extend(page.dead_letters.into_iter().map(|dead| dead.message_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = (0..5).map(|n| format!("bad-{n}")).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn old_error_histories_are_swept_only_once_their_orders_are_settled() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.error_history_retention.interval = Duration::from_millis(100);
        settings
    })
    .await;
    processor.payments.set_faults(0.0, true).await;
    let open_order = Uuid::now_v7();
    processor.publish_placed(open_order, 100).await;
    processor
        .wait_for_state(open_order, ProcessingState::DeadLettered)
        .await;
    processor.payments.set_faults(0.0, false).await;
    let settled = Uuid::now_v7();
    processor.publish_placed(settled, 100).await;
    processor
        .wait_for_state(settled, ProcessingState::Confirmed)
        .await;
    // Both histories, and one of an order the processor never knew, are old.
    processor
        .db
        .execute_unprepared(&format!(
            "INSERT INTO processing_errors (message_id, attempt, order_id, subject, code, message, instance) \
             VALUES ('settled-1', 1, '{settled}', 'orders.placed', 'payment_timeout', 'slow', 'test'), \
                    ('unknown-1', 1, NULL, 'orders.placed', 'undecodable', 'junk', 'test'); \
             UPDATE processing_errors SET occurred_at = now() - interval '40 days'"
        ))
        .await
        .unwrap();
    ordo_testkit::eventually("the settled histories swept", Duration::from_secs(10), || async {
        processor
            .count("SELECT count(*) FROM processing_errors WHERE order_id IS DISTINCT FROM NULL AND order_id <> '00000000-0000-0000-0000-000000000000'")
            .await
            == 5
            && processor
                .count("SELECT count(*) FROM processing_errors WHERE message_id = 'unknown-1'")
                .await
                == 0
    })
    .await;
    let left: i64 = processor
        .count(&format!(
            "SELECT count(*) FROM processing_errors WHERE order_id = '{open_order}'"
        ))
        .await;
    assert_eq!(left, 5, "the dead-lettered order keeps its whole history");
    assert_eq!(
        processor
            .count("SELECT count(*) FROM processing_errors")
            .await,
        5
    );
}
