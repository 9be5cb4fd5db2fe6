//! The dead-letter RPCs need the admin bearer token; processing state does not.

use ordo_proto::processor::v1::{
    GetOrderProcessingRequest, ListDeadLettersRequest, ProcessingState, PurgeDeadLetterRequest,
    RedriveDeadLetterRequest,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{ADMIN_TOKEN, TestProcessor, authorized};

#[tokio::test]
async fn dead_letter_rpcs_need_the_right_token() {
    let processor = TestProcessor::spawn().await;
    let mut client = processor.client.clone();
    let missing = client
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = client
        .list_dead_letters(authorized(
            ListDeadLettersRequest::default(),
            "test-admin-token-0123456780",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let purge = client
        .purge_dead_letter(authorized(
            PurgeDeadLetterRequest {
                id: 1,
                reason: "test".into(),
            },
            "nope",
        ))
        .await
        .unwrap_err();
    assert_eq!(purge.code(), Code::Unauthenticated);
    client
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap();
    let bad_page = client
        .list_dead_letters(authorized(
            ListDeadLettersRequest {
                page_size: 101,
                page_token: String::new(),
                filter: None,
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_page.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn with_no_token_configured_the_dead_letter_rpcs_are_disabled() {
    let processor = TestProcessor::spawn_with(|settings| processor::Settings {
        admin_token: None,
        ..settings
    })
    .await;
    let denied = processor
        .client
        .clone()
        .list_dead_letters(authorized(ListDeadLettersRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn processing_state_is_open_and_validates_its_input() {
    let processor = TestProcessor::spawn().await;
    let mut client = processor.client.clone();
    let bad = client
        .get_order_processing(GetOrderProcessingRequest {
            order_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let unknown = client
        .get_order_processing(GetOrderProcessingRequest {
            order_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn redrive_and_purge_need_a_reason_and_record_who_gave_it() {
    let processor = TestProcessor::spawn_with(|mut settings| {
        settings.consuming.max_attempts = 1;
        settings.admin_tokens = vec![("alice".into(), "alice-token-0123456789".into())];
        settings
    })
    .await;
    processor.payments.set_faults(0.0, true).await;
    let order_id = Uuid::now_v7();
    processor.publish_placed(order_id, 300).await;
    processor
        .wait_for_state(order_id, ProcessingState::DeadLettered)
        .await;
    let dead = crate::helpers::dead_letters(&processor).await;
    for reason in ["", "   ", "two\nlines", &"x".repeat(513)] {
        for status in [
            processor.purge(dead[0].id, reason).await.unwrap_err(),
            processor
                .client
                .clone()
                .redrive_dead_letter(authorized(
                    RedriveDeadLetterRequest {
                        id: dead[0].id,
                        reason: reason.into(),
                    },
                    ADMIN_TOKEN,
                ))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(status.code(), Code::InvalidArgument, "{reason:?}");
            assert!(status.message().contains("reason"), "{status:?}");
        }
    }
    assert_eq!(crate::helpers::dead_letters(&processor).await.len(), 1);

    processor.payments.set_faults(0.0, false).await;
    processor
        .client
        .clone()
        .redrive_dead_letter(authorized(
            RedriveDeadLetterRequest {
                id: dead[0].id,
                reason: "provider recovered".into(),
            },
            "alice-token-0123456789",
        ))
        .await
        .unwrap();
    let record = processor
        .wait_for_state(order_id, ProcessingState::Confirmed)
        .await;
    assert_eq!(record.audit.len(), 1);
    let entry = &record.audit[0];
    assert_eq!(
        (
            entry.action.as_str(),
            entry.actor.as_str(),
            entry.reason.as_str()
        ),
        ("redrive", "alice", "provider recovered")
    );
    assert_eq!(entry.dead_letter_id, dead[0].id);
    assert!(entry.outcome.contains("republished"), "{}", entry.outcome);
}
