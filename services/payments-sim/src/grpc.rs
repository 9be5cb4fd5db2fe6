//! `ordo.payments.v1.PaymentService`: validate, suffer the faults, then act
//! on the ledger. Errors become statuses in [`into_status`] only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ordo_proto::payments::v1 as proto;
use ordo_proto::payments::v1::payment_service_server::PaymentService;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};
use uuid::Uuid;

use crate::faults::{FaultSwitch, Faults, Strike};
use crate::ledger::{Charge, Ledger, LedgerError, PaymentStatus, Voided};

/// Highest amount accepted, in minor units.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

/// The simulator's gRPC face.
#[derive(Debug, Clone)]
pub struct PaymentApi {
    ledger: Arc<Ledger>,
    faults: Arc<FaultSwitch>,
    calls_received: Arc<AtomicU64>,
}

/// Why a call failed.
#[derive(Debug)]
enum ApiError {
    Invalid(Vec<(&'static str, String)>),
    Ledger(LedgerError),
    Outage,
    Transient,
}

fn into_status(err: ApiError) -> Status {
    match err {
        ApiError::Invalid(violations) => {
            let message = violations
                .iter()
                .map(|(field, description)| format!("{field}: {description}"))
                .collect::<Vec<_>>()
                .join("; ");
            let details = ErrorDetails::with_bad_request(
                violations
                    .into_iter()
                    .map(|(field, description)| FieldViolation::new(field, description))
                    .collect::<Vec<_>>(),
            );
            Status::with_error_details(
                Code::InvalidArgument,
                format!("invalid request: {message}"),
                details,
            )
        }
        ApiError::Ledger(err @ LedgerError::KeyReused) => Status::already_exists(err.to_string()),
        ApiError::Ledger(err @ LedgerError::UnknownPayment(_)) => {
            Status::not_found(err.to_string())
        }
        ApiError::Ledger(err @ (LedgerError::NotApproved(_) | LedgerError::AlreadyRefunded(_))) => {
            Status::failed_precondition(err.to_string())
        }
        ApiError::Outage => Status::unavailable("payment provider outage (simulated)"),
        ApiError::Transient => Status::unavailable("transient payment provider error (simulated)"),
    }
}

fn check_key(key: &str, violations: &mut Vec<(&'static str, String)>) {
    check_key_named("idempotency_key", key, violations);
}

fn check_key_named(field: &'static str, key: &str, violations: &mut Vec<(&'static str, String)>) {
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        violations.push((field, "must be 1-128 printable ASCII characters".to_owned()));
    }
}

impl PaymentApi {
    pub fn new(ledger: Arc<Ledger>, faults: Arc<FaultSwitch>) -> Self {
        Self {
            ledger,
            faults,
            calls_received: Arc::default(),
        }
    }

    /// Calls received so far (a metric).
    pub fn calls_received(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.calls_received)
    }

    /// Latency first (so a caller's timeout can fire), then outage or a
    /// transient error; either way before any effect.
    async fn suffer(&self) -> Result<Faults, ApiError> {
        let faults = self.faults.get();
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        match faults.strike() {
            Strike::Outage => Err(ApiError::Outage),
            Strike::Transient => Err(ApiError::Transient),
            Strike::None => Ok(faults),
        }
    }

    async fn authorize(
        &self,
        request: proto::AuthorizeRequest,
    ) -> Result<proto::AuthorizeResponse, ApiError> {
        let mut violations = Vec::new();
        if request.order_id.is_empty() || request.order_id.chars().count() > 64 {
            violations.push(("order_id", "must be 1-64 characters".to_owned()));
        }
        if !(0..=MAX_AMOUNT_MINOR).contains(&request.amount_minor) {
            violations.push(("amount_minor", format!("must be 0-{MAX_AMOUNT_MINOR}")));
        }
        if request.currency.len() != 3 || !request.currency.bytes().all(|b| b.is_ascii_uppercase())
        {
            violations.push(("currency", "must be three upper-case letters".to_owned()));
        }
        check_key(&request.idempotency_key, &mut violations);
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations));
        }
        let faults = self.suffer().await?;
        let charge = Charge {
            order_id: request.order_id,
            amount_minor: request.amount_minor,
            currency: request.currency,
        };
        let decision = self
            .ledger
            .authorize(charge, &request.idempotency_key, faults.decline_above_minor)
            .map_err(ApiError::Ledger)?;
        Ok(proto::AuthorizeResponse {
            payment_id: decision.payment_id.to_string(),
            approved: decision.approved,
            decline_reason: decision.decline_reason,
        })
    }

    async fn refund(
        &self,
        request: proto::RefundRequest,
    ) -> Result<proto::RefundResponse, ApiError> {
        let mut violations = Vec::new();
        let payment_id = Uuid::parse_str(&request.payment_id).ok();
        if payment_id.is_none() {
            violations.push(("payment_id", "must be a UUID".to_owned()));
        }
        check_key(&request.idempotency_key, &mut violations);
        let Some(payment_id) = payment_id.filter(|_| violations.is_empty()) else {
            return Err(ApiError::Invalid(violations));
        };
        self.suffer().await?;
        let refund = self
            .ledger
            .refund(payment_id, &request.idempotency_key)
            .map_err(ApiError::Ledger)?;
        Ok(proto::RefundResponse {
            refund_id: refund.refund_id.to_string(),
            payment_id: refund.payment_id.to_string(),
        })
    }
}

impl PaymentApi {
    async fn void(&self, request: proto::VoidRequest) -> Result<proto::VoidResponse, ApiError> {
        let mut violations = Vec::new();
        check_key_named(
            "authorization_key",
            &request.authorization_key,
            &mut violations,
        );
        check_key_named("refund_key", &request.refund_key, &mut violations);
        if !violations.is_empty() {
            return Err(ApiError::Invalid(violations));
        }
        self.suffer().await?;
        let voided = self
            .ledger
            .void(&request.authorization_key, &request.refund_key)
            .map_err(ApiError::Ledger)?;
        Ok(match voided {
            Voided::NeverAuthorized => proto::VoidResponse {
                outcome: proto::VoidOutcome::NeverAuthorized.into(),
                ..Default::default()
            },
            Voided::Declined { payment_id } => proto::VoidResponse {
                outcome: proto::VoidOutcome::Declined.into(),
                payment_id: payment_id.to_string(),
                refund_id: String::new(),
            },
            Voided::Refunded(refund) => proto::VoidResponse {
                outcome: proto::VoidOutcome::Refunded.into(),
                payment_id: refund.payment_id.to_string(),
                refund_id: refund.refund_id.to_string(),
            },
        })
    }
}

fn payment_to_proto(status: PaymentStatus) -> proto::GetPaymentResponse {
    let (status, payment_id, refund_id) = match status {
        PaymentStatus::None => (proto::PaymentStatus::None, None, None),
        PaymentStatus::Voided => (proto::PaymentStatus::Voided, None, None),
        PaymentStatus::Approved { payment_id } => {
            (proto::PaymentStatus::Approved, Some(payment_id), None)
        }
        PaymentStatus::Declined { payment_id } => {
            (proto::PaymentStatus::Declined, Some(payment_id), None)
        }
        PaymentStatus::Refunded(refund) => (
            proto::PaymentStatus::Refunded,
            Some(refund.payment_id),
            Some(refund.refund_id),
        ),
    };
    proto::GetPaymentResponse {
        status: status.into(),
        payment_id: payment_id.map(|id| id.to_string()).unwrap_or_default(),
        refund_id: refund_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

fn faults_to_proto(faults: Faults) -> proto::Faults {
    proto::Faults {
        latency_ms: u32::try_from(faults.latency.as_millis()).unwrap_or(u32::MAX),
        error_rate: faults.error_rate,
        outage: faults.outage,
        decline_above_minor: faults.decline_above_minor,
    }
}

fn faults_from_proto(faults: proto::Faults) -> Result<Faults, ApiError> {
    Faults {
        latency: Duration::from_millis(u64::from(faults.latency_ms)),
        error_rate: faults.error_rate,
        outage: faults.outage,
        decline_above_minor: faults.decline_above_minor,
    }
    .validated()
    .map_err(|(field, description)| ApiError::Invalid(vec![(field, description)]))
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        self.calls_received.fetch_add(1, Ordering::Relaxed);
        let result = PaymentApi::authorize(self, request.into_inner()).await;
        result.map(Response::new).map_err(into_status)
    }

    async fn refund(
        &self,
        request: Request<proto::RefundRequest>,
    ) -> Result<Response<proto::RefundResponse>, Status> {
        self.calls_received.fetch_add(1, Ordering::Relaxed);
        let result = PaymentApi::refund(self, request.into_inner()).await;
        result.map(Response::new).map_err(into_status)
    }

    async fn void(
        &self,
        request: Request<proto::VoidRequest>,
    ) -> Result<Response<proto::VoidResponse>, Status> {
        self.calls_received.fetch_add(1, Ordering::Relaxed);
        let result = PaymentApi::void(self, request.into_inner()).await;
        result.map(Response::new).map_err(into_status)
    }

    async fn get_payment(
        &self,
        request: Request<proto::GetPaymentRequest>,
    ) -> Result<Response<proto::GetPaymentResponse>, Status> {
        let key = request.into_inner().authorization_key;
        let mut violations = Vec::new();
        check_key_named("authorization_key", &key, &mut violations);
        if !violations.is_empty() {
            return Err(into_status(ApiError::Invalid(violations)));
        }
        Ok(Response::new(payment_to_proto(self.ledger.payment(&key))))
    }

    async fn get_payment_counts(
        &self,
        request: Request<proto::GetPaymentCountsRequest>,
    ) -> Result<Response<proto::GetPaymentCountsResponse>, Status> {
        let order_id = request.into_inner().order_id;
        if order_id.is_empty() || order_id.chars().count() > 64 {
            return Err(into_status(ApiError::Invalid(vec![(
                "order_id",
                "must be 1-64 characters".to_owned(),
            )])));
        }
        let counts = self.ledger.counts(&order_id);
        Ok(Response::new(proto::GetPaymentCountsResponse {
            order_id,
            authorizations: counts.authorizations,
            approvals: counts.approvals,
            refunds: counts.refunds,
        }))
    }

    async fn get_faults(
        &self,
        _: Request<proto::GetFaultsRequest>,
    ) -> Result<Response<proto::GetFaultsResponse>, Status> {
        Ok(Response::new(proto::GetFaultsResponse {
            faults: Some(faults_to_proto(self.faults.get())),
            calls_received: self.calls_received.load(Ordering::Relaxed),
        }))
    }

    async fn set_faults(
        &self,
        request: Request<proto::SetFaultsRequest>,
    ) -> Result<Response<proto::SetFaultsResponse>, Status> {
        let faults = request.into_inner().faults.unwrap_or_default();
        let faults = faults_from_proto(faults).map_err(into_status)?;
        self.faults.set(faults);
        tracing::info!(?faults, "fault knobs changed");
        Ok(Response::new(proto::SetFaultsResponse {
            faults: Some(faults_to_proto(faults)),
        }))
    }
}
