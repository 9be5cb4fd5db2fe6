//! The payment provider, called with a deadline per call and a few
//! jittered retries per attempt. Every call carries an idempotency key
//! derived from the order, so a retry — in this attempt, a later one, or on
//! another replica — never charges or refunds twice.

use std::future::Future;

use ordo_proto::PaymentServiceClient;
use ordo_proto::payments::v1::{AuthorizeRequest, RefundRequest};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::messages::PlacedOrder;
use crate::processing::Failure;
use crate::settings::PaymentsSettings;

/// The provider's answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Approved { payment_id: String },
    Declined { reason: String },
}

/// A client of `ordo.payments.v1.PaymentService`.
#[derive(Debug, Clone)]
pub struct PaymentGateway {
    client: PaymentServiceClient<Channel>,
    settings: PaymentsSettings,
}

impl PaymentGateway {
    /// A gateway that connects on first use (the provider may start later).
    pub fn new(settings: PaymentsSettings) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(settings.url.clone())?
            .connect_timeout(settings.timeout)
            .connect_lazy();
        Ok(Self {
            client: PaymentServiceClient::new(channel),
            settings,
        })
    }

    /// Authorizes the order's total under the key `authorize:<order id>`.
    pub async fn authorize(&self, order: &PlacedOrder) -> Result<Authorization, Failure> {
        let request = AuthorizeRequest {
            order_id: order.order_id.to_string(),
            amount_minor: order.amount_minor,
            currency: order.currency.clone(),
            idempotency_key: format!("authorize:{}", order.order_id),
        };
        let response = self
            .call("authorize", |mut client| {
                let request = request.clone();
                async move { client.authorize(request).await }
            })
            .await?;
        Ok(if response.approved {
            Authorization::Approved {
                payment_id: response.payment_id,
            }
        } else {
            Authorization::Declined {
                reason: response.decline_reason,
            }
        })
    }

    /// Refunds `payment_id` under the key `refund:<order id>`; the refund's id.
    pub async fn refund(&self, order_id: Uuid, payment_id: &str) -> Result<String, Failure> {
        let request = RefundRequest {
            payment_id: payment_id.to_owned(),
            idempotency_key: format!("refund:{order_id}"),
        };
        let response = self
            .call("refund", |mut client| {
                let request = request.clone();
                async move { client.refund(request).await }
            })
            .await?;
        Ok(response.refund_id)
    }

    /// Up to `tries` calls, each within `timeout`, with jittered backoff
    /// between them; only transient failures are tried again.
    async fn call<T, F, Fut>(&self, what: &str, mut send: F) -> Result<T, Failure>
    where
        F: FnMut(PaymentServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let tries = self.settings.tries.max(1);
        let mut try_number = 1;
        loop {
            let outcome =
                tokio::time::timeout(self.settings.timeout, send(self.client.clone())).await;
            let failure = match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => classify(&status),
                Err(_) => Failure::transient(
                    "payment_timeout",
                    format!("{what} took longer than {:?}", self.settings.timeout),
                ),
            };
            if !failure.transient || try_number >= tries {
                return Err(Failure {
                    text: format!("{} (try {try_number} of {tries})", failure.text),
                    ..failure
                });
            }
            tracing::debug!(
                what,
                try_number,
                error = failure.text,
                "payment call failed; trying again"
            );
            tokio::time::sleep(self.settings.retry_backoff.delay(try_number)).await;
            try_number += 1;
        }
    }
}

/// A provider's status as a failure: which codes a retry can cure.
pub fn classify(status: &Status) -> Failure {
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable => Failure::transient("payment_unavailable", text),
        Code::DeadlineExceeded => Failure::transient("payment_timeout", text),
        Code::ResourceExhausted => Failure::transient("payment_busy", text),
        _ => Failure::permanent("payment_refused", text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_codes_are_retried() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert!(classify(&Status::new(code, "x")).transient, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
        ] {
            assert!(!classify(&Status::new(code, "x")).transient, "{code:?}");
        }
    }
}
