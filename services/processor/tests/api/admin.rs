//! The dead-letter RPCs need the admin bearer token; processing state does not.

use ordo_proto::processor::v1::{
    GetOrderProcessingRequest, ListDeadLettersRequest, PurgeDeadLetterRequest,
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
        .purge_dead_letter(authorized(PurgeDeadLetterRequest { id: 1 }, "nope"))
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
