//! Ordo's protobuf API as Rust: messages, gRPC servers and clients, generated
//! at build time from `proto/` (the single source) by protox and
//! tonic-prost-build.
//!
//! - [`order::v1`]: `ordo.order.v1.OrderService` — its server trait for the
//!   order service and its client ([`OrderServiceClient`]) for everyone else.
//! - [`events::v1`]: the event payloads published to the `ORDERS` stream.
//! - [`payments::v1`]: `ordo.payments.v1.PaymentService`, the payment
//!   provider the processor calls (a simulator ships with Ordo).
//! - [`processor::v1`]: `ordo.processor.v1.ProcessorService`, processing
//!   state and the dead-letter admin API ([`ProcessorServiceClient`]).
//! - [`outbox::v1`]: `ordo.outbox.v1.OutboxAdminService`, the events a
//!   service's outbox relay parked ([`OutboxAdminServiceClient`]).
//! - [`operator::v1`]: `ordo.operator.v1.OperatorService`, a service's
//!   backlog (outbox, consumers, dead letters, breakers) and one order's
//!   trail through it ([`OperatorServiceClient`]).
//! - [`FILE_DESCRIPTOR_SET`]: every file's descriptor, for server reflection.
//! - [`client`]: an endpoint for a service's URL, plaintext or TLS (a CA,
//!   a client certificate for mutual TLS).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ordo_proto::OrderServiceClient;
//! use ordo_proto::order::v1::GetOrderRequest;
//!
//! let mut client = OrderServiceClient::connect("http://127.0.0.1:50051").await?;
//! let order = client
//!     .get_order(GetOrderRequest { order_id: "0190…".into() })
//!     .await?
//!     .into_inner();
//! # let _ = order; Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod client;

/// `ordo.order.v1`: the order service API.
pub mod order {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.order.v1");
    }
}

/// `ordo.events.v1`: event payloads carried by NATS messages.
pub mod events {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.events.v1");
    }
}

/// `ordo.payments.v1`: the payment provider (simulator) API.
pub mod payments {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.payments.v1");
    }
}

/// `ordo.processor.v1`: processing state and dead-letter administration.
pub mod processor {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.processor.v1");
    }
}

/// `ordo.outbox.v1`: the outbox's parked events, for operators.
pub mod outbox {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.outbox.v1");
    }
}

/// `ordo.operator.v1`: a service's status and an order's trail, for operators.
pub mod operator {
    /// Version 1.
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("ordo.operator.v1");
    }
}

pub use operator::v1::operator_service_client::OperatorServiceClient;
pub use order::v1::order_service_client::OrderServiceClient;
pub use outbox::v1::outbox_admin_service_client::OutboxAdminServiceClient;
pub use payments::v1::payment_service_client::PaymentServiceClient;
pub use processor::v1::processor_service_client::ProcessorServiceClient;

/// A protobuf timestamp from a UTC time (what every `*_time` field carries).
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// Most bytes of items one page of a list RPC carries: under the 4 MiB every
/// gRPC client accepts by default, with room for the rest of the answer.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// How many of `items`, from the first, fit in `max_bytes` once encoded
/// (always at least one, so a page always moves on).
pub fn items_within<T: prost::Message>(items: &[T], max_bytes: usize) -> usize {
    let mut total = 0;
    for (kept, item) in items.iter().enumerate() {
        // Each item is a length-delimited field: a tag byte and a length.
        total += item.encoded_len() + 1 + prost::length_delimiter_len(item.encoded_len());
        if total > max_bytes && kept > 0 {
            return kept;
        }
    }
    items.len()
}

/// Encoded `FileDescriptorSet` of every Ordo proto file and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ordo_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_what_fits_and_at_least_one() {
        let items: Vec<events::v1::OrderRejected> = (0..10)
            .map(|_| events::v1::OrderRejected {
                reason: "x".repeat(1000),
                ..Default::default()
            })
            .collect();
        assert_eq!(items_within(&items, 1 << 20), 10);
        assert_eq!(items_within(&items, 3500), 3);
        assert_eq!(items_within(&items, 10), 1);
        assert_eq!(items_within::<events::v1::OrderRejected>(&[], 10), 0);
    }
}
