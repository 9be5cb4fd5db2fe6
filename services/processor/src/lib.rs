//! Ordo's processor: takes each placed or cancelled order from the `ORDERS`
//! stream once, settles its payment, and announces the verdict.
//!
//! How a message flows:
//!
//! - [`consumer`]: durable pull consumers on `orders.placed` and
//!   `orders.cancelled` (shared by replicas, explicit acks) hand each
//!   message to the handler, then ack it, NAK it with a backoff
//!   ([`backoff`]), or move it to the dead-letter stream ([`dead_letter`]).
//! - [`messages`] decodes it; an undecodable message is dead-lettered at once.
//! - [`handler`] runs the payment life cycle: authorize through
//!   [`payments`] (timeout, retry with jittered backoff and a circuit
//!   breaker, from `ordo-resilience`), refund on cancellation, defer a
//!   cancellation until its order settles and any message while the
//!   breaker is open.
//! - [`store`] settles each outcome in ONE transaction: the order's
//!   [`processing`] record, the next event ([`events`]: `orders.confirmed`,
//!   `.rejected`, `.refunded`) in the processor's own outbox, and the inbox
//!   row keyed by `Nats-Msg-Id` that makes a duplicate a no-op. Failed
//!   attempts are appended to the message's error history.
//! - The embedded outbox relay (`ordo-outbox`) publishes the events; an
//!   inbox sweep (`ordo-inbox`) keeps the inbox to its retention.
//! - [`grpc`] serves `ordo.processor.v1.ProcessorService`: processing state,
//!   and the dead-letter admin API behind a bearer token.
//! - [`metrics`] is what `/metrics` exposes (Prometheus text).
//! - [`health`] reports the processor and each dependency (database,
//!   NATS, payments) over `grpc.health.v1`.
//! - [`app`] wires it together; [`settings`] reads the environment.
#![forbid(unsafe_code)]

pub mod app;
pub mod bulk;
pub mod consumer;
pub mod dead_letter;
pub mod events;
pub mod grpc;
pub mod handler;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod operator;
pub mod payments;
pub mod processing;
pub mod selection;
pub mod settings;
pub mod store;
pub mod view;

pub use app::Application;
pub use settings::Settings;
