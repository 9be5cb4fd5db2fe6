//! Waking a partition's relay actor right after a commit in this process.
//!
//! Nudges coalesce: a partition's flag is raised by the first nudge and
//! lowered when its actor starts a round, so a burst of commits sends one
//! message, not one per commit. A partition held by another replica has no
//! actor here; its flag just stays raised, and that replica's adaptive poll
//! finds the rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;

use super::relay_actor::{Nudge, RelayActor};

#[derive(Debug, Default)]
struct Slot {
    pending: Arc<AtomicBool>,
    actor: Mutex<Option<Addr<RelayActor>>>,
}

/// Where the supervisor posts each partition's live actor.
#[derive(Debug, Default)]
pub struct NudgeBoard {
    slots: Vec<Slot>,
}

impl NudgeBoard {
    pub fn new(partitions: u32) -> Self {
        Self {
            slots: (0..partitions).map(|_| Slot::default()).collect(),
        }
    }

    fn slot(&self, partition: i32) -> Option<&Slot> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.slots.get(p))
    }

    /// The flag the partition's actor lowers when a round starts.
    pub(crate) fn pending_flag(&self, partition: i32) -> Arc<AtomicBool> {
        self.slot(partition)
            .map(|slot| Arc::clone(&slot.pending))
            .unwrap_or_default()
    }

    pub(crate) fn post(&self, partition: i32, actor: Option<Addr<RelayActor>>) {
        if let Some(slot) = self.slot(partition) {
            *slot.actor.lock().unwrap_or_else(PoisonError::into_inner) = actor;
        }
    }
}

/// A cheap, clonable handle writers use after committing outbox rows.
#[derive(Debug, Clone)]
pub struct Nudger {
    board: Arc<NudgeBoard>,
}

impl Nudger {
    pub(crate) fn new(board: Arc<NudgeBoard>) -> Self {
        Self { board }
    }

    /// Tells `partition`'s actor, if it runs here, that rows are waiting.
    pub fn nudge(&self, partition: i32) {
        let Some(slot) = self.board.slot(partition) else {
            return;
        };
        if slot.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(actor) = slot
            .actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            actor.do_send(Nudge);
        }
    }
}
