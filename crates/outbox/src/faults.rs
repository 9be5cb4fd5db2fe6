//! Fault injection for tests of the relay's crash safety: a test arms a
//! fault, the relay actor that next reaches that point panics, and its
//! supervisor must restart it. Unarmed, each check is one atomic load.

use std::sync::atomic::{AtomicU32, Ordering};

/// Panics to inject, by where they strike.
#[derive(Debug, Default)]
pub struct Faults {
    /// Panic after the acks of a batch, before its rows are deleted.
    pub panic_before_delete: AtomicU32,
    /// Panic at the start of a round, before claiming.
    pub panic_before_claim: AtomicU32,
}

impl Faults {
    /// Panics if `armed` still has shots left, using one up.
    pub(crate) fn strike(armed: &AtomicU32, what: &str) {
        let fired = armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if fired {
            panic!("injected fault: {what}");
        }
    }
}
