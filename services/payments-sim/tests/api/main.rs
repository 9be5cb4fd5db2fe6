//! The payments simulator over gRPC: idempotency, the decline rule, refunds
//! at most once, counts, and the fault knobs; and its command line
//! ([`settings`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod settings;

use std::time::{Duration, Instant};

use ordo_proto::PaymentServiceClient;
use ordo_proto::payments::v1::{
    AuthorizeRequest, Faults, GetFaultsRequest, GetPaymentCountsRequest, GetPaymentCountsResponse,
    RefundRequest, SetFaultsRequest,
};
use payments_sim::{Application, Settings};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

async fn spawn() -> PaymentServiceClient<Channel> {
    spawn_with(Settings::default()).await
}

async fn spawn_with(settings: Settings) -> PaymentServiceClient<Channel> {
    let app = Application::build(Settings {
        grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..settings
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    PaymentServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn authorize(order_id: &str, amount_minor: i64, key: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: order_id.into(),
        amount_minor,
        currency: "EUR".into(),
        idempotency_key: key.into(),
    }
}

async fn counts(
    client: &mut PaymentServiceClient<Channel>,
    order_id: &str,
) -> GetPaymentCountsResponse {
    client
        .get_payment_counts(GetPaymentCountsRequest {
            order_id: order_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn set_faults(client: &mut PaymentServiceClient<Channel>, faults: Faults) {
    client
        .set_faults(SetFaultsRequest {
            faults: Some(faults),
        })
        .await
        .unwrap();
}

fn calm() -> Faults {
    Faults {
        decline_above_minor: 1_000_000,
        ..Faults::default()
    }
}

#[tokio::test]
async fn authorizes_once_per_key_and_declines_above_the_limit() {
    let mut client = spawn().await;
    let first = client
        .authorize(authorize("o-1", 2500, "pay-o-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.approved);
    assert!(first.decline_reason.is_empty());
    let again = client
        .authorize(authorize("o-1", 2500, "pay-o-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    let reused = client
        .authorize(authorize("o-1", 2600, "pay-o-1"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    let declined = client
        .authorize(authorize("o-2", 1_000_001, "pay-o-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(!declined.approved);
    assert_eq!(declined.decline_reason, "amount_above_limit");

    let o1 = counts(&mut client, "o-1").await;
    assert_eq!((o1.authorizations, o1.approvals, o1.refunds), (1, 1, 0));
    let o2 = counts(&mut client, "o-2").await;
    assert_eq!((o2.authorizations, o2.approvals), (1, 0));
}

#[tokio::test]
async fn concurrent_retries_with_one_key_charge_once() {
    let client = spawn().await;
    let calls = (0..50).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .authorize(authorize("o-9", 100, "pay-o-9"))
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|answer| *answer == answers[0]));
    let mut client = client;
    assert_eq!(counts(&mut client, "o-9").await.authorizations, 1);
}

#[tokio::test]
async fn refunds_an_approved_payment_at_most_once() {
    let mut client = spawn().await;
    let paid = client
        .authorize(authorize("o-3", 900, "pay-o-3"))
        .await
        .unwrap()
        .into_inner();
    let refund = |key: &str| RefundRequest {
        payment_id: paid.payment_id.clone(),
        idempotency_key: key.into(),
    };
    let first = client
        .refund(refund("refund-o-3"))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .refund(refund("refund-o-3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    let second = client.refund(refund("another-key")).await.unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert_eq!(counts(&mut client, "o-3").await.refunds, 1);

    let declined = client
        .authorize(authorize("o-4", 5_000_000, "pay-o-4"))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .refund(RefundRequest {
            payment_id: declined.payment_id,
            idempotency_key: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let unknown = client
        .refund(RefundRequest {
            payment_id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_requests_name_their_fields() {
    let mut client = spawn().await;
    let status = client
        .authorize(AuthorizeRequest {
            order_id: String::new(),
            amount_minor: -1,
            currency: "eur".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(
        fields,
        ["order_id", "amount_minor", "currency", "idempotency_key"]
    );
    let bad_knob = client
        .set_faults(SetFaultsRequest {
            faults: Some(Faults {
                error_rate: 2.0,
                ..calm()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_knob.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_outage_fails_every_call_and_charges_nothing() {
    let mut client = spawn().await;
    set_faults(
        &mut client,
        Faults {
            outage: true,
            ..calm()
        },
    )
    .await;
    let status = client
        .authorize(authorize("o-5", 100, "pay-o-5"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(counts(&mut client, "o-5").await.authorizations, 0);

    set_faults(&mut client, calm()).await;
    assert!(
        client
            .authorize(authorize("o-5", 100, "pay-o-5"))
            .await
            .unwrap()
            .into_inner()
            .approved
    );
    assert_eq!(counts(&mut client, "o-5").await.authorizations, 1);
}

#[tokio::test]
async fn a_transient_error_rate_fails_about_that_share_with_no_effect() {
    let mut client = spawn().await;
    set_faults(
        &mut client,
        Faults {
            error_rate: 0.5,
            ..calm()
        },
    )
    .await;
    let mut failed = 0;
    for n in 0..400 {
        match client
            .authorize(authorize(&format!("r-{n}"), 1, &format!("k-{n}")))
            .await
        {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                assert_eq!(
                    counts(&mut client, &format!("r-{n}")).await.authorizations,
                    0
                );
                failed += 1;
            }
        }
    }
    // 400 draws at 50%: outside 120-280 has odds below one in a billion.
    assert!((120..=280).contains(&failed), "{failed} of 400 failed");
    let faults = client
        .get_faults(GetFaultsRequest {})
        .await
        .unwrap()
        .into_inner()
        .faults
        .unwrap();
    assert_eq!(faults.error_rate, 0.5);
}

#[tokio::test]
async fn added_latency_delays_every_call() {
    let mut client = spawn().await;
    set_faults(
        &mut client,
        Faults {
            latency_ms: 300,
            ..calm()
        },
    )
    .await;
    let started = Instant::now();
    client
        .authorize(authorize("o-6", 1, "pay-o-6"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A caller with a shorter deadline gives up; whether or not the call
    // landed, the retry with the same key charges exactly once.
    let mut request = tonic::Request::new(authorize("o-7", 1, "pay-o-7"));
    request.set_timeout(Duration::from_millis(100));
    let timed_out = client.authorize(request).await.unwrap_err().code();
    assert!(
        matches!(timed_out, Code::Cancelled | Code::DeadlineExceeded),
        "{timed_out:?}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    set_faults(&mut client, calm()).await;
    client
        .authorize(authorize("o-7", 1, "pay-o-7"))
        .await
        .unwrap();
    assert_eq!(counts(&mut client, "o-7").await.authorizations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flooded_at_ten_times_its_limit_sheds_the_excess_and_serves_the_rest() {
    let limit = 10;
    let mut client = spawn_with(Settings {
        limits: ordo_service_kit::serving::ServerLimits {
            max_in_flight: limit,
            request_timeout: Duration::from_secs(5),
        },
        ..Settings::default()
    })
    .await;
    set_faults(
        &mut client,
        Faults {
            latency_ms: 200,
            decline_above_minor: 1_000_000,
            ..Default::default()
        },
    )
    .await;
    let calls = (0..limit * 10).map(|n| {
        let mut client = client.clone();
        async move {
            let started = Instant::now();
            let answer = client
                .authorize(authorize(&format!("flood-{n}"), 100, &format!("k-{n}")))
                .await;
            (
                answer.map(|_| ()).map_err(|status| status.code()),
                started.elapsed(),
            )
        }
    });
    let answers = futures::future::join_all(calls).await;
    let accepted: Vec<Duration> = answers
        .iter()
        .filter(|(answer, _)| answer.is_ok())
        .map(|(_, took)| *took)
        .collect();
    let shed = answers
        .iter()
        .filter(|(answer, _)| *answer == Err(Code::ResourceExhausted))
        .count();
    assert_eq!(
        accepted.len() + shed,
        limit * 10,
        "every call is served or shed"
    );
    assert!(shed >= limit * 8, "shed only {shed}");
    assert!(accepted.len() >= limit, "accepted only {}", accepted.len());
    let slowest = accepted.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(2),
        "an accepted call took {slowest:?}: it queued instead of being served"
    );
    let received = client
        .get_faults(GetFaultsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calls_received;
    assert_eq!(
        received,
        accepted.len() as u64,
        "shed calls never reach the handler"
    );
}
