//! Ordo's payment provider simulator (`ordo.payments.v1.PaymentService`).
//!
//! ```text
//! gRPC ─▶ grpc (validate · faults: latency, outage, transient errors) ─▶ ledger (in memory)
//!                                                   admin: GetFaults / SetFaults ─▶ faults
//! ```
//!
//! - [`faults`]: the knobs (latency, error rate, outage, decline limit),
//!   from the environment and changeable at run time.
//! - [`ledger`]: payments, refunds, idempotency keys and per-order counts.
//! - [`grpc`]: the service; faults strike before any effect, so a failed
//!   call changed nothing.
//! - [`app`]: build, bind and serve until shutdown.
#![forbid(unsafe_code)]

pub mod app;
pub mod faults;
pub mod grpc;
pub mod ledger;
pub mod settings;

pub use app::Application;
pub use settings::Settings;
