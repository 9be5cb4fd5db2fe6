//! Ordo's order service: places, reads and cancels orders over gRPC
//! (`ordo.order.v1.OrderService`), writing every change and its event in one
//! PostgreSQL transaction (the transactional outbox).
//!
//! How a PlaceOrder flows:
//!
//! ```text
//! gRPC request ─▶ grpc (correlation id, proto → domain::NewOrderDraft)
//!              ─▶ domain::NewOrder::parse (every rule, every violation at once)
//!              ─▶ store::OrderStore::order_create ── one transaction:
//!                    idempotency key claim · order row · line rows · OrderPlaced outbox row
//!              ─▶ grpc (domain → proto, x-correlation-id in the response metadata)
//! ```
//!
//! Modules:
//! - [`settings`]: configuration from the environment, typed.
//! - [`domain`]: orders as values; knows neither tonic nor SeaORM.
//! - [`store`]: SeaORM persistence; entity ↔ domain conversion.
//! - [`events`]: the `ordo.events.v1` payloads written to the outbox.
//! - [`grpc`]: the tonic service; proto ↔ domain and error → status, once each.
//! - [`health`]: `grpc.health.v1` for the service and each dependency.
//! - [`metrics`]: what `/metrics` exposes (Prometheus text).
//! - [`status`]: the status loop back — processor verdicts applied once
//!   each through the inbox.
//! - [`app`]: build (connect, migrate, bind) and run until shutdown.
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod health;
pub mod metrics;
pub mod settings;
pub mod status;
pub mod store;
pub mod view;

pub use app::Application;
pub use ordo_service_kit::serving::shutdown_signal;
pub use settings::Settings;
