//! Ordo's order state machines, with no I/O. Each is one pure transition
//! function — state × input → new state + what to do — that a service's
//! store and handlers carry out; nothing else decides what happens to an
//! order or its money.
//!
//! - [`order`]: the order service's order status (PENDING → CONFIRMED,
//!   REJECTED or CANCELLED), moved by the customer's cancellation and the
//!   processor's verdicts.
//! - [`payment`]: the processor's record of an order's payment: authorize,
//!   confirm or reject, and on cancellation refund or void, whatever the
//!   order of deliveries, answers, failures, redrives and purges.
//!
//! The test suite model-checks both together (`model.rs`, with
//! [stateright](https://www.stateright.rs)) over every interleaving of
//! duplicated, reordered and redelivered inputs within a stated bound, and
//! shows that the logic they replaced (`legacy.rs`) broke the money
//! invariants there.
#![forbid(unsafe_code)]

#[cfg(test)]
mod legacy;
#[cfg(test)]
mod model;
pub mod order;
pub mod payment;
