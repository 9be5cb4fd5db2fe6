//! Fault injection for tests of the relay's crash safety: a test arms a
//! fault, the relay actor that next reaches that point panics (and its
//! supervisor must restart it) or freezes. Unarmed, each check is one
//! atomic load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Panics to inject, by where they strike.
#[derive(Debug, Default)]
pub struct Faults {
    /// Panic after the acks of a batch, before its rows are deleted.
    pub panic_before_delete: AtomicU32,
    /// Panic at the start of a round, before claiming.
    pub panic_before_claim: AtomicU32,
    /// Freeze the next round that claimed rows, before it publishes, for
    /// this many milliseconds — with the supervisor's heartbeats and checks
    /// frozen too: what SIGSTOP of the process does to the relay.
    pub freeze_after_claim_ms: AtomicU64,
    frozen_until: Mutex<Option<Instant>>,
}

impl Faults {
    /// Freezes here if a freeze is armed.
    pub(crate) async fn freeze_point(&self) {
        let millis = self.freeze_after_claim_ms.swap(0, Ordering::SeqCst);
        if millis == 0 {
            return;
        }
        let pause = Duration::from_millis(millis);
        if let Ok(mut until) = self.frozen_until.lock() {
            *until = Some(Instant::now() + pause);
        }
        tracing::warn!(?pause, "fault: relay frozen after its claim");
        tokio::time::sleep(pause).await;
    }

    /// The relay is frozen: the supervisor does nothing either.
    pub(crate) fn frozen(&self) -> bool {
        self.frozen_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until)
    }

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
