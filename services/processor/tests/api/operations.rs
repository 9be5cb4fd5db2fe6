//! What an operator asks of the processor: an order's trail
//! (`OperatorService.GetOrderTrail`), the backlog (`GetStatus`), dead
//! letters filtered and grouped by cause, and bulk redrives and purges with
//! a dry run — against a real database, NATS and payment simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use ordo_proto::OperatorServiceClient;
use ordo_proto::operator::v1::{GetOrderTrailRequest, GetStatusRequest, TrailEntry};
use ordo_proto::processor::v1::{
    BulkOutcome, DeadLetter, DeadLetterFilter, DeadLetterSelection, ListDeadLettersRequest,
    ProcessingState, PurgeDeadLettersRequest, RedriveDeadLettersRequest,
};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestProcessor, authorized};

async fn operator(processor: &TestProcessor) -> OperatorServiceClient<Channel> {
    OperatorServiceClient::connect(format!("http://{}", processor.addr))
        .await
        .unwrap()
}

async fn trail(processor: &TestProcessor, order_id: Uuid) -> Vec<TrailEntry> {
    operator(processor)
        .await
        .get_order_trail(authorized(
            GetOrderTrailRequest {
                order_id: order_id.to_string(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries
}

async fn listed(processor: &TestProcessor, filter: Option<DeadLetterFilter>) -> Vec<DeadLetter> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = processor
            .client
            .clone()
            .list_dead_letters(authorized(
                ListDeadLettersRequest {
                    page_size: 100,
                    page_token,
                    filter: filter.clone(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        all.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Every outcome a bulk call streams, until it ends.
async fn collected<T>(
    call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    outcome: fn(T) -> Option<BulkOutcome>,
) -> Result<Vec<BulkOutcome>, tonic::Status> {
    let mut stream = call?.into_inner();
    let mut outcomes = Vec::new();
    while let Some(next) = stream.message().await? {
        outcomes.push(outcome(next).unwrap());
    }
    Ok(outcomes)
}

async fn redrive_all(
    processor: &TestProcessor,
    request: RedriveDeadLettersRequest,
) -> Result<Vec<BulkOutcome>, tonic::Status> {
    let call = processor
        .client
        .clone()
        .redrive_dead_letters(authorized(request, ADMIN_TOKEN))
        .await;
    collected(call, |next| next.outcome).await
}

async fn purge_all(
    processor: &TestProcessor,
    request: PurgeDeadLettersRequest,
) -> Result<Vec<BulkOutcome>, tonic::Status> {
    let call = processor
        .client
        .clone()
        .purge_dead_letters(authorized(request, ADMIN_TOKEN))
        .await;
    collected(call, |next| next.outcome).await
}

#[tokio::test]
async fn a_stuck_orders_trail_shows_each_failed_attempt_its_publish_and_the_verdict() {
    let processor = TestProcessor::spawn().await;
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    let message_id = processor.publish_placed(order_id, 4200).await;
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;

    let entries = trail(&processor, order_id).await;
    let failed: Vec<&TrailEntry> = entries
        .iter()
        .filter(|entry| entry.kind == "attempt_failed")
        .collect();
    assert_eq!(failed.len(), 5, "{entries:#?}");
    for entry in &failed {
        assert_eq!(entry.code, "payment_unavailable");
        assert_eq!(entry.message_id, message_id);
        assert!(!entry.actor.is_empty(), "the replica is named");
    }
    let state = entries.iter().find(|entry| entry.kind == "state").unwrap();
    assert!(state.text.contains("dead_lettered"), "{}", state.text);
    let times: Vec<_> = entries
        .iter()
        .map(|entry| entry.occur_time.unwrap())
        .map(|at| (at.seconds, at.nanos))
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first"
    );

    // Redriven once the provider is back: the redrive, the message's publish
    // (with its stream sequence) and its settling are in the trail.
    processor.payments.set_faults(0.0, false).await;
    let dead = listed(&processor, None).await;
    processor.redrive(dead[0].id, "provider back").await;
    processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    let entries = trail(&processor, order_id).await;
    let operator_entry = entries
        .iter()
        .find(|entry| entry.kind == "operator")
        .unwrap();
    assert_eq!(operator_entry.actor, "admin");
    assert!(operator_entry.text.contains("provider back"));
    let published = entries
        .iter()
        .find(|entry| entry.kind == "published")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert!(published.stream_sequence > 0);
    let received = entries
        .iter()
        .find(|entry| entry.kind == "received")
        .unwrap();
    assert_eq!(received.stream_sequence, published.stream_sequence);
    assert!(received.text.contains("confirmed"), "{}", received.text);
    // The verdict waits in (or has left) the processor's outbox: either way
    // the state says where the order is.
    let state = entries.iter().rfind(|entry| entry.kind == "state").unwrap();
    assert!(state.text.contains("confirmed"), "{}", state.text);
}

#[tokio::test]
async fn deferrals_by_the_open_breaker_are_in_the_trail_without_attempts() {
    // The first failed calls open the breaker, and it stays open.
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.payments.breaker = ordo_resilience::BreakerConfig {
            window: Duration::from_secs(10),
            buckets: 2,
            min_calls: 2,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(60),
            half_open_probes: 1,
        };
        settings
    })
    .await;
    let order_id = Uuid::now_v7();
    processor.payments.set_faults(0.0, true).await;
    processor.publish_placed(order_id, 100).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let entries = trail(&processor, order_id).await;
        if entries.iter().any(|entry| entry.kind == "deferred") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deferral in the trail; breaker {:?}; {entries:#?}",
            processor.payments_breaker.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entries = trail(&processor, order_id).await;
    let deferred = entries
        .iter()
        .find(|entry| entry.kind == "deferred")
        .unwrap();
    assert!(deferred.text.contains("breaker"), "{}", deferred.text);
}

#[tokio::test]
async fn the_status_shows_consumers_dead_letters_the_breaker_and_every_partition() {
    let processor = TestProcessor::spawn().await;
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 100).await;
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
    ordo_testkit::eventually("the dead letter", Duration::from_secs(20), || async {
        !listed(&processor, None).await.is_empty()
    })
    .await;

    let status = operator(&processor)
        .await
        .get_status(authorized(GetStatusRequest {}, ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.service, "processor");
    assert!(status.unavailable.is_empty(), "{:?}", status.unavailable);
    let names: BTreeSet<&str> = status
        .consumers
        .iter()
        .map(|consumer| consumer.name.as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["processor-cancelled", "processor-placed"])
    );
    for consumer in &status.consumers {
        assert_eq!(consumer.stream, processor.stream.name);
    }
    assert_eq!(status.dead_letters.len(), 1);
    assert_eq!(status.dead_letters[0].messages, 1);
    assert!(status.dead_letters[0].oldest_time.is_some());
    assert_eq!(status.breakers[0].name, "payments");
    let outbox = status.outbox.unwrap();
    assert!(outbox.partition_count > 0);
    assert_eq!(outbox.partitions.len(), outbox.partition_count as usize);
    assert!(
        outbox
            .partitions
            .iter()
            .any(|partition| !partition.lease_holder.is_empty()),
        "the relay holds leases: {:?}",
        outbox.partitions
    );
    assert!(!status.instance.is_empty());

    // Without the token: nothing.
    let refused = operator(&processor)
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = operator(&processor)
        .await
        .get_order_trail(authorized(
            GetOrderTrailRequest {
                order_id: "not-a-uuid".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// A processor whose payments breaker never opens: every failure is an
/// attempt, so messages reach the dead-letter stream instead of waiting.
async fn spawn_without_breaker() -> TestProcessor {
    TestProcessor::spawn_with(|mut settings| {
        settings.payments.breaker.min_calls = u32::MAX;
        settings
    })
    .await
}

/// Three dead letters of one cause (the provider down) and one of another
/// (an undecodable message).
async fn two_causes(processor: &TestProcessor) -> (Vec<Uuid>, Vec<DeadLetter>) {
    processor.payments.set_faults(0.0, true).await;
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for order_id in &orders {
        processor.publish_placed(*order_id, 100).await;
    }
    processor
        .publish(
            "orders.placed",
            "garbage-1",
            b"\xff\xfe not protobuf".to_vec(),
        )
        .await;
    ordo_testkit::eventually("four dead letters", Duration::from_secs(30), || async {
        listed(processor, None).await.len() >= 4
    })
    .await;
    // The dead letter is stored first, then its record settles in the next
    // settlement commit: an instant apart.
    for order_id in &orders {
        processor
            .wait_for_state(*order_id, ProcessingState::DeadLettered)
            .await;
    }
    (orders, listed(processor, None).await)
}

#[tokio::test]
async fn dead_letters_are_filtered_and_grouped_by_cause() {
    let processor = spawn_without_breaker().await;
    let (orders, all) = two_causes(&processor).await;
    assert_eq!(all.len(), 4);
    let fingerprints: BTreeSet<&str> = all.iter().map(|dead| dead.fingerprint.as_str()).collect();
    assert_eq!(fingerprints.len(), 2, "{fingerprints:?}");
    let outage = all
        .iter()
        .find(|dead| dead.code == "payment_unavailable")
        .unwrap();
    let same_cause = listed(
        &processor,
        Some(DeadLetterFilter {
            fingerprint: outage.fingerprint.clone(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(same_cause.len(), 3);
    let undecodable = listed(
        &processor,
        Some(DeadLetterFilter {
            code: "undecodable".into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(undecodable.len(), 1);
    let one_order = listed(
        &processor,
        Some(DeadLetterFilter {
            order_id: orders[1].to_string(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(one_order.len(), 1);
    assert_eq!(one_order[0].order_id, orders[1].to_string());
    let future = listed(
        &processor,
        Some(DeadLetterFilter {
            since: Some(ordo_proto::timestamp(
                chrono::Utc::now() + chrono::Duration::hours(1),
            )),
            ..Default::default()
        }),
    )
    .await;
    assert!(future.is_empty());
}

#[tokio::test]
async fn a_group_redrive_dry_run_changes_nothing_and_the_real_one_settles_each_order_once() {
    let processor = spawn_without_breaker().await;
    let (orders, all) = two_causes(&processor).await;
    let group = all
        .iter()
        .find(|dead| dead.code == "payment_unavailable")
        .unwrap()
        .fingerprint
        .clone();
    let selection = DeadLetterSelection {
        filter: Some(DeadLetterFilter {
            fingerprint: group.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };

    let dry = redrive_all(
        &processor,
        RedriveDeadLettersRequest {
            selection: Some(selection.clone()),
            reason: "checking".into(),
            dry_run: true,
            max_per_second: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.len(), 3, "{dry:?}");
    assert!(dry.iter().all(|outcome| outcome.result == "would"));
    assert_eq!(listed(&processor, None).await.len(), 4, "nothing moved");
    for order_id in &orders {
        let record = processor.processing(*order_id).await.unwrap();
        assert_eq!(record.state(), ProcessingState::DeadLettered);
        assert!(record.audit.is_empty(), "a dry run is not a decision");
    }

    processor.payments.set_faults(0.0, false).await;
    let done = redrive_all(
        &processor,
        RedriveDeadLettersRequest {
            selection: Some(selection),
            reason: "provider back".into(),
            dry_run: false,
            max_per_second: 20,
        },
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(
        done.iter().all(|outcome| outcome.result == "done"),
        "{done:?}"
    );
    for order_id in &orders {
        let record = processor
            .wait_for_state(*order_id, ProcessingState::Confirmed)
            .await;
        assert_eq!(record.audit.len(), 1);
        assert_eq!(record.audit[0].reason, "provider back");
        let counts = processor.payments.counts(*order_id).await;
        assert_eq!(counts.approvals, 1, "charged once: {counts:?}");
    }
    let left = listed(&processor, None).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].code, "undecodable");
    // A record settles before the relay publishes its verdict.
    ordo_testkit::eventually("three confirmations", Duration::from_secs(10), || async {
        processor.emitted("confirmed").await.len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        processor.emitted("confirmed").await.len(),
        3,
        "one verdict per order"
    );
}

#[tokio::test]
async fn a_bulk_call_needs_a_reason_and_a_selection_and_a_purge_dry_run_says_what_it_would_do() {
    let processor = spawn_without_breaker().await;
    let (_, all) = two_causes(&processor).await;
    let placement = all
        .iter()
        .find(|dead| dead.code == "payment_unavailable")
        .unwrap();
    let garbage = all.iter().find(|dead| dead.code == "undecodable").unwrap();

    let no_reason = purge_all(
        &processor,
        PurgeDeadLettersRequest {
            selection: Some(DeadLetterSelection {
                all: true,
                ..Default::default()
            }),
            reason: String::new(),
            dry_run: false,
            max_per_second: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(no_reason.code(), tonic::Code::InvalidArgument);
    let nothing_selected = purge_all(
        &processor,
        PurgeDeadLettersRequest {
            selection: Some(DeadLetterSelection::default()),
            reason: "oops".into(),
            dry_run: false,
            max_per_second: 0,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(nothing_selected.code(), tonic::Code::InvalidArgument);
    assert_eq!(listed(&processor, None).await.len(), 4);

    let preview = purge_all(
        &processor,
        PurgeDeadLettersRequest {
            selection: Some(DeadLetterSelection {
                ids: vec![placement.id, 999_999, garbage.id],
                ..Default::default()
            }),
            reason: "give up".into(),
            dry_run: true,
            max_per_second: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(preview.len(), 3, "{preview:?}");
    assert_eq!(preview[0].result, "would");
    assert!(
        preview[0].detail.contains("void"),
        "a given-up placement is voided: {}",
        preview[0].detail
    );
    assert_eq!(preview[1].result, "not_found");
    assert!(
        preview[2].detail.contains("about no order"),
        "{}",
        preview[2].detail
    );
    assert_eq!(listed(&processor, None).await.len(), 4, "nothing moved");

    // The provider is down: it cannot confirm that nothing stays charged,
    // so those purges fail and their dead letters stay; the rest go on.
    let all_purge = || PurgeDeadLettersRequest {
        selection: Some(DeadLetterSelection {
            all: true,
            ..Default::default()
        }),
        reason: "give up".into(),
        dry_run: false,
        max_per_second: 1000,
    };
    let first = purge_all(&processor, all_purge()).await.unwrap();
    assert_eq!(first.len(), 4, "{first:?}");
    let failed = first
        .iter()
        .filter(|outcome| outcome.result == "failed")
        .count();
    assert_eq!(failed, 3, "{first:?}");
    assert_eq!(listed(&processor, None).await.len(), 3);

    processor.payments.set_faults(0.0, false).await;
    let second = purge_all(&processor, all_purge()).await.unwrap();
    assert_eq!(second.len(), 3, "{second:?}");
    assert!(
        second.iter().all(|outcome| outcome.result == "done"),
        "{second:?}"
    );
    assert!(listed(&processor, None).await.is_empty());
    for outcome in &second {
        let order_id = Uuid::parse_str(&outcome.order_id).unwrap();
        let record = processor.processing(order_id).await.unwrap();
        assert_eq!(record.state(), ProcessingState::Rejected);
        let counts = processor.payments.counts(order_id).await;
        assert_eq!(
            counts.approvals, counts.refunds,
            "nothing stays charged: {counts:?}"
        );
    }
}
