//! The relay actor of one partition: runs rounds (claim → publish → delete)
//! one at a time, and decides when the next one runs.
//!
//! ```text
//!            ┌──────── batch was full, or nudged meanwhile ───────┐
//!            ▼                                                     │
//! started ─▶ RUNNING ── round done ──▶ IDLE (timer) ── timer/Nudge ─┘
//!                                        delay: min poll after rows,
//!                                        doubling to the poll interval
//!                                        when empty, backing off on errors
//! StopRelay: finish the round in flight, then stop.
//! ```
//!
//! A panic inside a round kills the actor; its supervisor notices and
//! starts a new one after a backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;

use crate::relay::{PartitionRelay, RoundReport};

/// Rows are waiting: run a round now if idle, right after the current one
/// if busy.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Nudge;

/// Finish the round in flight, then stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopRelay;

pub struct RelayActor {
    relay: PartitionRelay,
    min_poll: Duration,
    max_poll: Duration,
    idle_delay: Duration,
    error_delay: Duration,
    running: bool,
    nudged: bool,
    stopping: bool,
    timer: Option<SpawnHandle>,
    pending: Arc<AtomicBool>,
}

impl RelayActor {
    pub fn new(
        relay: PartitionRelay,
        min_poll: Duration,
        max_poll: Duration,
        pending: Arc<AtomicBool>,
    ) -> Self {
        Self {
            relay,
            min_poll,
            max_poll,
            idle_delay: min_poll,
            error_delay: min_poll,
            running: false,
            nudged: false,
            stopping: false,
            timer: None,
            pending,
        }
    }

    fn run_round(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            ctx.stop();
            return;
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.running = true;
        self.nudged = false;
        self.pending.store(false, Ordering::Release);
        let relay = self.relay.clone();
        ctx.spawn(
            async move { relay.round().await }
                .into_actor(self)
                .map(|result, actor, ctx| {
                    actor.running = false;
                    if actor.stopping {
                        ctx.stop();
                        return;
                    }
                    let delay = actor.next_delay(result);
                    if delay.is_zero() || actor.nudged {
                        actor.run_round(ctx);
                    } else {
                        actor.timer = Some(ctx.run_later(delay, |actor, ctx| {
                            actor.timer = None;
                            actor.run_round(ctx);
                        }));
                    }
                }),
        );
    }

    /// How long to wait after a round.
    fn next_delay(&mut self, result: Result<RoundReport, sea_orm::DbErr>) -> Duration {
        match result {
            Ok(report) if report.failed > 0 => {
                self.error_delay = (self.error_delay * 2).clamp(self.min_poll, self.max_poll);
                self.error_delay
            }
            Ok(report) if report.was_full(self.relay.batch_size) => {
                self.reset_delays();
                Duration::ZERO
            }
            Ok(report) if report.claimed > 0 => {
                self.reset_delays();
                self.min_poll
            }
            Ok(_) => {
                self.idle_delay = (self.idle_delay * 2).min(self.max_poll);
                self.idle_delay
            }
            Err(err) => {
                self.error_delay = (self.error_delay * 2).clamp(self.min_poll, self.max_poll);
                tracing::warn!(partition = self.relay.partition, error = %err, retry_in = ?self.error_delay, "relay round failed");
                self.error_delay
            }
        }
    }

    fn reset_delays(&mut self) {
        self.idle_delay = self.min_poll;
        self.error_delay = self.min_poll;
    }
}

impl Actor for RelayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(partition = self.relay.partition, "relay actor started");
        self.run_round(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::debug!(partition = self.relay.partition, "relay actor stopped");
    }
}

impl Handler<Nudge> for RelayActor {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Self::Context) {
        if self.running {
            self.nudged = true;
        } else {
            self.run_round(ctx);
        }
    }
}

impl Handler<StopRelay> for RelayActor {
    type Result = ();

    fn handle(&mut self, _: StopRelay, ctx: &mut Self::Context) {
        self.stopping = true;
        if !self.running {
            ctx.stop();
        }
    }
}
