//! The relay actor of one partition: runs rounds (claim → publish → delete)
//! one at a time, and decides when the next one runs.
//!
//! ```text
//!            ┌──────── batch was full ─────────────────────────────┐
//!            │  ┌───── nudged meanwhile: LINGER, then ─────────────┤
//!            ▼  ▼                                                   │
//! started ─▶ RUNNING ── round done ──▶ IDLE (timer) ── timer/Nudge ─┘
//!                                        delay: min poll after a poll
//!                                        found rows, doubling to the poll
//!                                        interval when empty, backing off
//!                                        on errors
//! ```
//!
//! Lingering: rows committed while a round ran (a nudge came meanwhile)
//! mean rows are still arriving; the next round waits `OUTBOX_LINGER`
//! (nudges only mark it) so it carries what arrives meanwhile too. A nudge
//! that finds the actor idle runs a round at once: at low load nothing
//! lingers. [`next_round`] decides.
//!
//! Rows a poll finds were written without a nudge — by another replica —
//! so the actor keeps polling fast while they come. Rows a nudge announced
//! need no fast follow-up (the next local commit nudges again): after a
//! nudged round the actor keeps its idle pace, which is what keeps empty
//! claims — a query each — off a busy database.
//!
//! A round leaves its acked rows to the next claim, which deletes them in
//! the same statement; with rows carried the actor idles at most
//! [`CARRIED_ROWS_WAIT`], and on stopping it deletes them itself.
//!
//! ```text
//! StopRelay: finish the round in flight, then stop (a partition handed back, shutdown).
//! AbortRelay: abort the round in flight at once, then stop (the lease is lost).
//! Publish breaker OPEN: no round; wait out its cool-down (PAUSED).
//! ```
//!
//! Each round runs as a tokio task on the relay runtime's workers (the
//! actor's own thread only schedules), bounded by a timeout so a hung query
//! cannot hold the partition. A round that panics stops the actor; its
//! supervisor notices and starts a new one after a backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;

use crate::metrics::RelayMetrics;
use crate::relay::{CARRIED_ROWS_WAIT, PartitionRelay, RoundReport};

/// Rows are waiting: run a round now if idle, right after the current one
/// if busy.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Nudge;

/// Finish the round in flight, then stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopRelay;

/// The partition's lease is lost: abort the round in flight, then stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AbortRelay;

/// How a relay actor paces its rounds.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub min_poll: Duration,
    pub max_poll: Duration,
    pub round_timeout: Duration,
    /// How long the next round waits when rows arrived during the last
    /// (zero: it runs at once).
    pub linger: Duration,
}

/// When the next round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRound {
    Now,
    /// Rows are arriving: after the linger, nudges meanwhile only mark it.
    Linger(Duration),
    /// Idle (or backing off): after the delay, or at the next nudge.
    After(Duration),
}

/// When the round after one that completed runs: `delay` is the idle or
/// error delay already decided, `full` whether it claimed a full batch,
/// `nudged` whether rows were committed here while it ran, `carried`
/// whether it left acked rows to the next claim.
pub fn next_round(
    delay: Duration,
    full: bool,
    nudged: bool,
    carried: bool,
    linger: Duration,
) -> NextRound {
    if full || delay.is_zero() {
        return NextRound::Now;
    }
    if nudged {
        return if linger.is_zero() {
            NextRound::Now
        } else {
            NextRound::Linger(linger.min(CARRIED_ROWS_WAIT))
        };
    }
    // Acked rows wait for the next claim to delete them: not long.
    NextRound::After(if carried {
        delay.min(CARRIED_ROWS_WAIT)
    } else {
        delay
    })
}

/// Marks the partition's actor as running for as long as it lives, panics
/// included (the flag drops with the actor).
struct RunningFlag {
    metrics: Arc<RelayMetrics>,
    partition: i32,
}

impl RunningFlag {
    fn raise(metrics: Arc<RelayMetrics>, partition: i32) -> Self {
        metrics.set_actor_running(partition, true);
        Self { metrics, partition }
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.metrics.set_actor_running(self.partition, false);
    }
}

pub struct RelayActor {
    relay: PartitionRelay,
    pacing: Pacing,
    idle_delay: Duration,
    error_delay: Duration,
    running: bool,
    nudged: bool,
    /// Waiting out a linger: a nudge only marks it.
    lingering: bool,
    /// The round in flight was started by a nudge.
    round_nudged: bool,
    stopping: bool,
    timer: Option<SpawnHandle>,
    /// The round in flight, to abort when the lease is lost.
    round: Option<tokio::task::AbortHandle>,
    pending: Arc<AtomicBool>,
    /// Rows the last round acked and left to the next claim to delete.
    carried: Vec<i64>,
    /// The last round claimed a full batch: rows are waiting.
    backlog: bool,
    _running_flag: Option<RunningFlag>,
}

/// What came back from a round's task.
enum RoundOutcome {
    Done(RoundReport),
    Failed(String),
    Panicked,
    Aborted,
}

impl RelayActor {
    pub fn new(relay: PartitionRelay, pacing: Pacing, pending: Arc<AtomicBool>) -> Self {
        Self {
            relay,
            pacing,
            idle_delay: pacing.min_poll,
            error_delay: pacing.min_poll,
            running: false,
            nudged: false,
            lingering: false,
            round_nudged: false,
            stopping: false,
            timer: None,
            round: None,
            pending,
            carried: Vec::new(),
            backlog: false,
            _running_flag: None,
        }
    }

    fn run_round(&mut self, ctx: &mut Context<Self>, by_nudge: bool) {
        if self.stopping {
            ctx.stop();
            return;
        }
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.lingering = false;
        // NATS is failing: leave the rows alone until the breaker lets a
        // probe through, rather than claim batches only to fail them.
        if let Some(cool_down) = self.relay.breaker.open_remaining() {
            self.nudged = false;
            self.timer = Some(ctx.run_later(cool_down, |actor, ctx| {
                actor.timer = None;
                actor.run_round(ctx, false);
            }));
            return;
        }
        self.running = true;
        self.round_nudged = by_nudge || self.nudged;
        self.nudged = false;
        self.pending.store(false, Ordering::Release);
        let relay = self.relay.clone();
        // Kept until the round is done: a round that fails deletes them
        // again next time (deleting twice is harmless).
        let carried = self.carried.clone();
        let backlog = self.backlog;
        let round = tokio::spawn(tokio::time::timeout(
            self.pacing.round_timeout,
            async move { relay.round(&carried, backlog).await },
        ));
        self.round = Some(round.abort_handle());
        ctx.spawn(
            async move {
                match round.await {
                    Ok(Ok(Ok(report))) => RoundOutcome::Done(report),
                    Ok(Ok(Err(err))) => RoundOutcome::Failed(err.to_string()),
                    Ok(Err(_)) => RoundOutcome::Failed("round timed out".to_owned()),
                    Err(err) if err.is_cancelled() => RoundOutcome::Aborted,
                    Err(_) => RoundOutcome::Panicked,
                }
            }
            .into_actor(self)
            .map(|mut outcome, actor, ctx| {
                actor.running = false;
                actor.round = None;
                if matches!(outcome, RoundOutcome::Aborted) {
                    actor.relay.metrics.fenced_rounds.fetch_add(1, Ordering::Relaxed);
                    ctx.stop();
                    return;
                }
                actor.backlog = false;
                if let RoundOutcome::Done(report) = &mut outcome {
                    actor.carried = std::mem::take(&mut report.carried);
                    actor.backlog = report.was_full(actor.relay.batch_size);
                }
                if actor.stopping {
                    ctx.stop();
                    return;
                }
                let (delay, full) = match outcome {
                    RoundOutcome::Aborted => return,
                    RoundOutcome::Panicked => {
                        tracing::error!(partition = actor.relay.partition, "relay round panicked; stopping the actor");
                        ctx.stop();
                        return;
                    }
                    RoundOutcome::Done(report) => (
                        actor.delay_after(&report),
                        actor.backlog && report.failed == 0,
                    ),
                    RoundOutcome::Failed(err) => {
                        actor.error_delay = bounded(actor.error_delay * 2, actor.pacing);
                        tracing::warn!(partition = actor.relay.partition, error = %err, retry_in = ?actor.error_delay, "relay round failed");
                        (actor.error_delay, false)
                    }
                };
                let next = next_round(
                    delay,
                    full,
                    actor.nudged,
                    !actor.carried.is_empty(),
                    actor.pacing.linger,
                );
                match next {
                    NextRound::Now => actor.run_round(ctx, false),
                    NextRound::Linger(wait) | NextRound::After(wait) => {
                        actor.lingering = matches!(next, NextRound::Linger(_));
                        actor.timer = Some(ctx.run_later(wait, |actor, ctx| {
                            actor.timer = None;
                            actor.run_round(ctx, false);
                        }));
                    }
                }
            }),
        );
    }

    /// How long to wait after a round that completed.
    fn delay_after(&mut self, report: &RoundReport) -> Duration {
        if report.failed > 0 {
            self.error_delay = bounded(self.error_delay * 2, self.pacing);
            return self.error_delay;
        }
        if report.claimed == 0 {
            self.idle_delay = bounded(self.idle_delay * 2, self.pacing);
            return self.idle_delay;
        }
        self.error_delay = self.pacing.min_poll;
        if report.was_full(self.relay.batch_size) {
            return Duration::ZERO;
        }
        if !self.round_nudged {
            // Found by a poll: another writer is busy here; follow it closely.
            self.idle_delay = self.pacing.min_poll;
        }
        self.idle_delay
    }
}

/// `delay` within `[min_poll, max_poll]`, whatever the two are set to.
fn bounded(delay: Duration, pacing: Pacing) -> Duration {
    delay
        .min(pacing.max_poll)
        .max(pacing.min_poll.min(pacing.max_poll))
}

impl Actor for RelayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let metrics = Arc::clone(&self.relay.metrics);
        self._running_flag = Some(RunningFlag::raise(metrics, self.relay.partition));
        tracing::debug!(partition = self.relay.partition, "relay actor started");
        self.run_round(ctx, false);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Rows published and left to a next round that will not come:
        // deleting them needs no lease, so do it on the way out.
        let carried = std::mem::take(&mut self.carried);
        if !carried.is_empty() {
            let (db, partition) = (self.relay.db.clone(), self.relay.partition);
            tokio::spawn(async move {
                if let Err(err) = crate::claims::outbox_delete(&db, partition, carried).await {
                    tracing::warn!(partition, error = %err, "could not delete published rows on stopping; the next owner publishes them again, as duplicates");
                }
            });
        }
        tracing::debug!(partition = self.relay.partition, "relay actor stopped");
    }
}

impl Handler<Nudge> for RelayActor {
    type Result = ();

    fn handle(&mut self, _: Nudge, ctx: &mut Self::Context) {
        if self.running || self.lingering {
            self.nudged = true;
        } else {
            self.run_round(ctx, true);
        }
    }
}

impl Handler<AbortRelay> for RelayActor {
    type Result = ();

    fn handle(&mut self, _: AbortRelay, ctx: &mut Self::Context) {
        self.stopping = true;
        match self.round.take() {
            Some(round) => {
                tracing::warn!(
                    partition = self.relay.partition,
                    "lease lost; aborting the round in flight"
                );
                round.abort();
            }
            None => ctx.stop(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(2);
    const IDLE: Duration = Duration::from_millis(40);

    #[test]
    fn rounds_linger_only_while_rows_arrive() {
        // A nudge during the round: rows are arriving; gather them.
        assert_eq!(
            next_round(IDLE, false, true, true, LINGER),
            NextRound::Linger(LINGER)
        );
        // Nothing arrived meanwhile: idle, the next nudge runs a round at once.
        assert_eq!(
            next_round(IDLE, false, false, false, LINGER),
            NextRound::After(IDLE)
        );
        // A full batch: more are waiting already.
        assert_eq!(next_round(IDLE, true, true, true, LINGER), NextRound::Now);
        // Polling fast after a poll found another replica's rows.
        assert_eq!(
            next_round(Duration::ZERO, false, true, true, LINGER),
            NextRound::Now
        );
        // Lingering switched off.
        assert_eq!(
            next_round(IDLE, false, true, true, Duration::ZERO),
            NextRound::Now
        );
    }

    #[test]
    fn acked_rows_wait_for_their_delete_not_long() {
        assert_eq!(
            next_round(Duration::from_secs(1), false, false, true, LINGER),
            NextRound::After(CARRIED_ROWS_WAIT)
        );
        assert_eq!(
            next_round(Duration::from_secs(1), false, false, false, LINGER),
            NextRound::After(Duration::from_secs(1))
        );
        // However long the linger is set, carried rows are not kept longer.
        assert_eq!(
            next_round(IDLE, false, true, true, Duration::from_secs(5)),
            NextRound::Linger(CARRIED_ROWS_WAIT)
        );
    }

    #[test]
    fn delays_stay_in_bounds_even_when_misconfigured() {
        let pacing = Pacing {
            min_poll: Duration::from_millis(5),
            max_poll: Duration::from_millis(1),
            round_timeout: Duration::from_secs(1),
            linger: LINGER,
        };
        assert_eq!(
            bounded(Duration::from_secs(9), pacing),
            Duration::from_millis(1)
        );
        let sane = Pacing {
            max_poll: Duration::from_secs(1),
            ..pacing
        };
        assert_eq!(bounded(Duration::ZERO, sane), Duration::from_millis(5));
        assert_eq!(
            bounded(Duration::from_secs(9), sane),
            Duration::from_secs(1)
        );
    }
}
