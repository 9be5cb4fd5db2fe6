//! Integration tests of the processor against real PostgreSQL, real NATS
//! and the payment simulator: each test spawns the services on port 0,
//! over databases and a stream of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod dead_letters;
mod duplicates;
mod helpers;
mod lifecycle;
mod metrics;
mod money;
mod operations;
mod outage;
mod pipeline;
mod poison;
mod rolling;
mod security;
mod settings;
mod store_model;
mod traces;
