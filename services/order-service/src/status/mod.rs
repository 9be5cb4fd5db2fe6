//! The status loop back: the processor's verdicts (`orders.confirmed`,
//! `orders.rejected`, `orders.refunded`) move orders on, each message
//! applied at most once through the inbox.
//!
//! ```text
//! JetStream (durable pull consumers, explicit ack) ─▶ decode (edge) ─▶ store::order_status_apply
//!    one transaction: lock the order · apply or ignore · inbox row (dedup) ─▶ ack
//! ```
//!
//! The common case — a verdict on a PENDING order — is one statement
//! (move the order, then its inbox row, only if it moved); anything else
//! takes the locked transaction.

mod consumer;
mod decode;

pub use consumer::{CONSUMER_NAME, KINDS, StatusConsumer};
pub use decode::{StatusChange, StatusEvent, decode};
