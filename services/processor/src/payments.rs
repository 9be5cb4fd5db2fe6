//! The payment provider, called through the resilience stack:
//!
//! ```text
//! Retry (PAYMENTS_TRIES, jittered backoff, transient codes only)
//!   └ CircuitBreaker "payments" (fails fast while the provider is down)
//!       └ Timeout (PAYMENTS_TIMEOUT, shrunk to the caller's deadline, sent on as grpc-timeout)
//!           └ PaymentServiceClient
//! ```
//!
//! Every call carries an idempotency key derived from the order
//! (`authorize:<order>`, `refund:<order>`), so a retry — in this attempt, a
//! later one, or on another replica — never charges or refunds twice, and a
//! call whose answer was lost (UNKNOWN, INTERNAL: a reset or crash mid-call)
//! is simply asked again. A void under the authorization key settles an
//! order whose payment's outcome is unknown: whatever the key led to, nothing
//! stays charged, and the key can never charge later.
//!
//! A call refused by the open breaker becomes a [`Failure`] with
//! `defer_for` set: the message waits out the cool-down without spending an
//! attempt.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ordo_lifecycle::payment::{Answer, Call, Voided};
use ordo_proto::PaymentServiceClient;
use ordo_proto::payments::v1::{
    AuthorizeRequest, AuthorizeResponse, RefundRequest, RefundResponse, VoidOutcome, VoidRequest,
    VoidResponse,
};
use ordo_resilience::classify::circuit_open_retry_after;
use ordo_resilience::{
    CircuitBreaker, CircuitBreakerLayer, RetryLayer, RetryPolicy, TimeoutLayer, deadline,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::messages::PlacedOrder;
use crate::metrics::PaymentMetrics;
use crate::processing::Failure;
use crate::settings::PaymentsSettings;

/// The provider's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Approved { payment_id: String },
    Declined { reason: String },
}

/// One call to the provider, with the correlation id it is made for.
#[derive(Debug, Clone)]
pub enum PaymentCall {
    Authorize(AuthorizeRequest, String),
    Refund(RefundRequest, String),
    Void(VoidRequest, String),
}

/// The provider's answer to a [`PaymentCall`].
#[derive(Debug, Clone)]
pub enum PaymentAnswer {
    Authorized(AuthorizeResponse),
    Refunded(RefundResponse),
    Voided(VoidResponse),
}

/// The idempotency key of the order's authorization.
pub fn authorization_key(order_id: Uuid) -> String {
    format!("authorize:{order_id}")
}

/// The idempotency key of the order's refund (made by Refund or by Void).
pub fn refund_key(order_id: Uuid) -> String {
    format!("refund:{order_id}")
}

type PaymentService = BoxCloneSyncService<PaymentCall, PaymentAnswer, Status>;

/// A client of `ordo.payments.v1.PaymentService` behind the resilience stack.
#[derive(Debug, Clone)]
pub struct PaymentGateway {
    service: PaymentService,
    breaker: Arc<CircuitBreaker>,
    retries: Arc<AtomicU64>,
    metrics: Arc<PaymentMetrics>,
}

impl PaymentGateway {
    /// A gateway that connects on first use (the provider may start later).
    pub fn new(settings: &PaymentsSettings) -> anyhow::Result<Self> {
        let channel = ordo_proto::client::endpoint(&settings.url, &settings.tls)?
            .connect_timeout(settings.timeout)
            .connect_lazy();
        let client = PaymentServiceClient::new(channel);
        let breaker = CircuitBreaker::new("payments", settings.breaker);
        let retry = RetryLayer::new(RetryPolicy {
            max_attempts: settings.tries,
            max_elapsed: settings.retry_max_elapsed,
            backoff: settings.retry_backoff,
        });
        let retries = retry.retries();
        let service = ServiceBuilder::new()
            .layer(retry)
            .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
            .layer(TimeoutLayer::new(settings.timeout))
            .service(tower::service_fn(move |call| send(client.clone(), call)));
        Ok(Self {
            service: BoxCloneSyncService::new(service),
            breaker,
            retries,
            metrics: Arc::default(),
        })
    }

    /// The breaker in front of the provider (health, metrics).
    pub fn breaker(&self) -> Arc<CircuitBreaker> {
        Arc::clone(&self.breaker)
    }

    /// Calls by outcome (a metric).
    pub fn metrics(&self) -> Arc<PaymentMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Retries made so far (a metric).
    pub fn retries(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.retries)
    }

    /// Makes the call the payment machine decided on; `placed` is the
    /// placement (an authorization needs its amount).
    pub async fn call(
        &self,
        order_id: Uuid,
        correlation_id: &str,
        placed: Option<&PlacedOrder>,
        call: &Call,
    ) -> Result<Answer, Failure> {
        match call {
            Call::Authorize => {
                let placed = placed.ok_or_else(|| {
                    Failure::permanent(
                        "no_placement",
                        format!("order {order_id} cannot be authorized from a cancellation"),
                    )
                })?;
                Ok(match self.authorize(placed).await? {
                    Authorization::Approved { payment_id } => Answer::Approved { payment_id },
                    Authorization::Declined { reason } => Answer::Declined { reason },
                })
            }
            Call::Refund { payment_id } => Ok(Answer::Refunded {
                refund_id: self.refund(order_id, payment_id, correlation_id).await?,
            }),
            Call::Void => Ok(Answer::Voided(self.void(order_id, correlation_id).await?)),
        }
    }

    /// Authorizes the order's total under the key `authorize:<order id>`.
    pub async fn authorize(&self, order: &PlacedOrder) -> Result<Authorization, Failure> {
        let call = PaymentCall::Authorize(
            AuthorizeRequest {
                order_id: order.order_id.to_string(),
                amount_minor: order.amount_minor,
                currency: order.currency.clone(),
                idempotency_key: authorization_key(order.order_id),
            },
            order.correlation_id.clone(),
        );
        let authorization = match self.service.clone().oneshot(call).await.map_err(classify) {
            Ok(PaymentAnswer::Authorized(response)) if response.approved => {
                Ok(Authorization::Approved {
                    payment_id: provider_text(&response.payment_id),
                })
            }
            Ok(PaymentAnswer::Authorized(response)) => Ok(Authorization::Declined {
                reason: provider_text(&response.decline_reason),
            }),
            Ok(_) => Err(mismatch()),
            Err(failure) => Err(failure),
        };
        let outcome = match &authorization {
            Ok(Authorization::Approved { .. }) => "approved",
            Ok(Authorization::Declined { .. }) => "declined",
            Err(failure) => failure.code,
        };
        self.metrics.record("authorize", outcome);
        authorization
    }

    /// Refunds `payment_id` under the key `refund:<order id>`; the refund's id.
    pub async fn refund(
        &self,
        order_id: Uuid,
        payment_id: &str,
        correlation_id: &str,
    ) -> Result<String, Failure> {
        let call = PaymentCall::Refund(
            RefundRequest {
                payment_id: payment_id.to_owned(),
                idempotency_key: refund_key(order_id),
            },
            correlation_id.to_owned(),
        );
        let refund = match self.service.clone().oneshot(call).await.map_err(classify) {
            Ok(PaymentAnswer::Refunded(response)) => Ok(provider_text(&response.refund_id)),
            Ok(_) => Err(mismatch()),
            Err(failure) => Err(failure),
        };
        self.metrics.record(
            "refund",
            refund
                .as_ref()
                .map_or_else(|failure| failure.code, |_| "refunded"),
        );
        refund
    }

    /// Voids whatever the order's authorization key led to: refunds an
    /// approval (under the refund key), closes an unused key.
    pub async fn void(&self, order_id: Uuid, correlation_id: &str) -> Result<Voided, Failure> {
        let call = PaymentCall::Void(
            VoidRequest {
                authorization_key: authorization_key(order_id),
                refund_key: refund_key(order_id),
            },
            correlation_id.to_owned(),
        );
        let voided = match self.service.clone().oneshot(call).await.map_err(classify) {
            Ok(PaymentAnswer::Voided(response)) => match response.outcome() {
                VoidOutcome::NeverAuthorized | VoidOutcome::Declined => Ok(Voided::NothingCharged),
                VoidOutcome::Refunded => Ok(Voided::Refunded {
                    payment_id: provider_text(&response.payment_id),
                    refund_id: provider_text(&response.refund_id),
                }),
                VoidOutcome::Unspecified => Err(mismatch()),
            },
            Ok(_) => Err(mismatch()),
            Err(failure) => Err(failure),
        };
        self.metrics.record(
            "void",
            match &voided {
                Ok(Voided::NothingCharged) => "nothing_charged",
                Ok(Voided::Refunded { .. }) => "refunded",
                Err(failure) => failure.code,
            },
        );
        voided
    }
}

/// The bottom of the stack: one gRPC call, carrying what is left of the
/// deadline as its `grpc-timeout`.
async fn send(
    mut client: PaymentServiceClient<Channel>,
    call: PaymentCall,
) -> Result<PaymentAnswer, Status> {
    let (method, correlation_id) = match &call {
        PaymentCall::Authorize(_, correlation_id) => (
            "ordo.payments.v1.PaymentService/Authorize",
            correlation_id.clone(),
        ),
        PaymentCall::Refund(_, correlation_id) => (
            "ordo.payments.v1.PaymentService/Refund",
            correlation_id.clone(),
        ),
        PaymentCall::Void(_, correlation_id) => (
            "ordo.payments.v1.PaymentService/Void",
            correlation_id.clone(),
        ),
    };
    let span = tracing::info_span!(
        "grpc.client",
        otel.name = %method,
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        correlation_id = %correlation_id,
    );
    let sent = async move {
        match call {
            PaymentCall::Authorize(request, correlation_id) => {
                let response = client.authorize(outgoing(request, &correlation_id)).await?;
                Ok(PaymentAnswer::Authorized(response.into_inner()))
            }
            PaymentCall::Refund(request, correlation_id) => {
                let response = client.refund(outgoing(request, &correlation_id)).await?;
                Ok(PaymentAnswer::Refunded(response.into_inner()))
            }
            PaymentCall::Void(request, correlation_id) => {
                let response = client.void(outgoing(request, &correlation_id)).await?;
                Ok(PaymentAnswer::Voided(response.into_inner()))
            }
        }
    }
    .instrument(span.clone())
    .await;
    let code = sent
        .as_ref()
        .map_or_else(|status: &Status| status.code() as i32, |_| 0);
    span.record(
        "rpc.grpc.status_code",
        ordo_telemetry::grpc::code_name(code),
    );
    sent
}

/// A request carrying the trace context, the correlation id and what is
/// left of the deadline.
fn outgoing<T>(message: T, correlation_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    ordo_telemetry::propagation::inject_grpc(&mut request);
    if let Ok(value) = correlation_id.parse() {
        request
            .metadata_mut()
            .insert(ordo_telemetry::CORRELATION_HEADER, value);
    }
    deadline::set_grpc_timeout(&mut request);
    request
}

/// An id or reason from the provider, safe to store and announce.
fn provider_text(raw: &str) -> String {
    ordo_telemetry::safe_text(raw, 256)
}

fn mismatch() -> Failure {
    Failure::permanent("payment_protocol", "the provider answered another call")
}

/// A provider's status as a failure: which codes a later attempt can cure
/// (asking again under the same key, when the outcome is unknown), and
/// which mean "wait for the breaker".
pub fn classify(status: Status) -> Failure {
    let text = format!("{:?}: {}", status.code(), status.message());
    if let Some(after) = circuit_open_retry_after(&status) {
        return Failure::deferred("payments_circuit_open", text, after);
    }
    match status.code() {
        Code::Unavailable => Failure::transient("payment_unavailable", text),
        Code::DeadlineExceeded => Failure::transient("payment_timeout", text),
        Code::ResourceExhausted => Failure::transient("payment_busy", text),
        Code::Unknown | Code::Internal | Code::Aborted | Code::Cancelled => {
            Failure::transient("payment_outcome_unknown", text)
        }
        _ => Failure::permanent("payment_refused", text),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ordo_resilience::classify::Failure as _;

    use super::*;

    #[test]
    fn only_transient_codes_are_retried_and_an_open_breaker_defers() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Unknown,
            Code::Internal,
        ] {
            assert!(classify(Status::new(code, "x")).transient, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
        ] {
            assert!(!classify(Status::new(code, "x")).transient, "{code:?}");
        }
        let open = classify(Status::circuit_open("payments", Duration::from_millis(700)));
        assert_eq!(open.defer_for, Some(Duration::from_millis(700)));
    }
}
