//! The Actix side: a supervisor leasing partitions, one relay actor per
//! leased partition, and the in-process nudge that wakes an actor after a
//! local commit.

mod nudge;
mod relay_actor;
mod supervisor;

pub use nudge::{NudgeBoard, Nudger};
pub use relay_actor::{Nudge, Pacing, RelayActor, StopRelay};
pub use supervisor::{RelayTiming, Shutdown, Supervisor};
