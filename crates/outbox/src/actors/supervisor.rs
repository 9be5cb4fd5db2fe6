//! The supervisor: holds this replica's partition leases and one relay
//! actor per leased partition.
//!
//! Every heartbeat (a quarter of the TTL, itself bounded by a timeout) it
//! renews its leases, takes free partitions up to its fair share and hands
//! back any surplus. It starts actors for new partitions and stops those
//! for partitions it lost. A partition handed back stays in its hands
//! until its actor has finished its round *and* the release has committed,
//! so no heartbeat can restart it meanwhile. Every 100 ms it checks its
//! children: one that died (a panic) is started again after a backoff of
//! 100 ms doubling to 10 s (reset once a child has lived 30 s). If its own
//! view of the leases runs out before a renewal succeeds, it aborts every
//! actor's round and stops it; a partition lost to another replica has its
//! round aborted the same way. The view ([`LeaseView`]) is what every
//! publish checks first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, Ordering::Relaxed};
use std::time::Duration;

use actix::prelude::*;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::time::Instant;

use super::nudge::NudgeBoard;
use super::relay_actor::{AbortRelay, Pacing, RelayActor, StopRelay};
use crate::claims::{outbox_backlog, outbox_parked_count};
use crate::config::RelayConfig;
use crate::lease::{LeaseRound, LeaseView, Leases};
use crate::metrics::RelayMetrics;
use crate::relay::PartitionRelay;

const CHILD_CHECK: Duration = Duration::from_millis(100);
/// Actors stop this long before the lease view runs out: a child check
/// period plus slack for a busy thread.
const VALIDITY_MARGIN: Duration = Duration::from_millis(300);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// The supervisor's clocks.
#[derive(Debug, Clone, Copy)]
pub struct RelayTiming {
    pub heartbeat: Duration,
    pub pacing: Pacing,
}

impl From<&RelayConfig> for RelayTiming {
    fn from(config: &RelayConfig) -> Self {
        Self {
            heartbeat: config.heartbeat_interval(),
            pacing: Pacing {
                min_poll: config.min_poll_interval,
                max_poll: config.poll_interval,
                round_timeout: config.round_timeout(),
                linger: config.linger,
            },
        }
    }
}

/// Stop every actor after its round, release the leases, stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub deadline: Duration,
}

/// A leased partition's actor, or the time it may be started again.
#[derive(Debug)]
struct Child {
    actor: Option<Addr<RelayActor>>,
    started_at: Instant,
    failures: u32,
    restart_at: Option<Instant>,
    /// Handed back: its actor is stopping; then its lease is released.
    releasing: bool,
    release_in_flight: bool,
}

impl Child {
    fn new() -> Self {
        Self {
            actor: None,
            started_at: Instant::now(),
            failures: 0,
            restart_at: None,
            releasing: false,
            release_in_flight: false,
        }
    }
}

pub struct Supervisor {
    leases: Leases,
    db: DatabaseConnection,
    template: PartitionRelay,
    timing: RelayTiming,
    board: Arc<NudgeBoard>,
    metrics: Arc<RelayMetrics>,
    held: watch::Sender<BTreeSet<i32>>,
    children: BTreeMap<i32, Child>,
    valid_until: Option<Instant>,
    heartbeat_in_flight: Arc<AtomicBool>,
    backlog_in_flight: Arc<AtomicBool>,
    shutting_down: bool,
    on_stopped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        leases: Leases,
        db: DatabaseConnection,
        template: PartitionRelay,
        timing: RelayTiming,
        board: Arc<NudgeBoard>,
        held: watch::Sender<BTreeSet<i32>>,
        on_stopped: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        let metrics = Arc::clone(&template.metrics);
        Self {
            leases,
            db,
            template,
            timing,
            board,
            metrics,
            held,
            children: BTreeMap::new(),
            valid_until: None,
            heartbeat_in_flight: Arc::new(AtomicBool::new(false)),
            backlog_in_flight: Arc::new(AtomicBool::new(false)),
            shutting_down: false,
            on_stopped: Some(on_stopped),
        }
    }

    fn releasing(&self) -> BTreeSet<i32> {
        self.children
            .iter()
            .filter(|(_, child)| child.releasing)
            .map(|(partition, _)| *partition)
            .collect()
    }

    fn view(&self) -> &LeaseView {
        &self.template.lease_view
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.template.faults.frozen() {
            return;
        }
        if self.shutting_down || self.heartbeat_in_flight.swap(true, Ordering::SeqCst) {
            return;
        }
        let leases = self.leases.clone();
        let releasing = self.releasing();
        let in_flight = Arc::clone(&self.heartbeat_in_flight);
        let limit = self.timing.heartbeat;
        ctx.spawn(
            async move {
                let round = tokio::time::timeout(limit, leases.heartbeat(&releasing)).await;
                in_flight.store(false, Ordering::SeqCst);
                round
            }
            .into_actor(self)
            .map(move |result, supervisor, _| match result {
                Ok(Ok(round)) if !supervisor.shutting_down => supervisor.apply(round),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "lease heartbeat failed"),
                Err(_) => tracing::warn!(?limit, "lease heartbeat timed out"),
            }),
        );
        self.measure_backlog(ctx);
    }

    fn measure_backlog(&mut self, ctx: &mut Context<Self>) {
        if self.backlog_in_flight.swap(true, Ordering::SeqCst) {
            return;
        }
        let db = self.db.clone();
        let metrics = Arc::clone(&self.metrics);
        let in_flight = Arc::clone(&self.backlog_in_flight);
        ctx.spawn(
            async move {
                match outbox_backlog(&db).await {
                    Ok(backlog) => {
                        for gauge in &metrics.partitions {
                            gauge.backlog.store(0, Relaxed);
                            gauge.oldest_age_millis.store(0, Relaxed);
                        }
                        for (partition, rows, age) in backlog {
                            metrics.set_backlog(partition, rows, age);
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "backlog query failed"),
                }
                if let Ok(parked) = outbox_parked_count(&db).await {
                    metrics.parked_rows.store(parked, Relaxed);
                }
                in_flight.store(false, Ordering::SeqCst);
            }
            .into_actor(self),
        );
    }

    fn apply(&mut self, round: LeaseRound) {
        self.valid_until = Some(round.valid_until);
        let lost: Vec<i32> = self
            .children
            .iter()
            .filter(|(partition, child)| {
                !round.held.contains(partition) && !child.release_in_flight
            })
            .map(|(partition, _)| *partition)
            .collect();
        for partition in lost {
            tracing::warn!(partition, "lease lost; aborting its relay");
            self.abort_child(partition);
        }
        for partition in &round.held {
            self.view().hold(*partition, round.valid_until);
        }
        for partition in &round.held {
            if !self.children.contains_key(partition) {
                tracing::info!(partition, members = round.members, "partition leased");
                self.children.insert(*partition, Child::new());
                self.start_child(*partition);
            }
        }
        for partition in &round.surplus {
            if let Some(child) = self.children.get_mut(partition) {
                tracing::info!(partition, members = round.members, "handing partition back");
                child.releasing = true;
                if let Some(actor) = &child.actor {
                    actor.do_send(StopRelay);
                }
            }
        }
        self.publish_held();
    }

    fn start_child(&mut self, partition: i32) {
        let Some(child) = self.children.get_mut(&partition) else {
            return;
        };
        let relay = PartitionRelay {
            partition,
            ..self.template.clone()
        };
        let actor = RelayActor::new(
            relay,
            self.timing.pacing,
            self.board.pending_flag(partition),
        )
        .start();
        self.board.post(partition, Some(actor.clone()));
        child.actor = Some(actor);
        child.started_at = Instant::now();
        child.restart_at = None;
    }

    /// Forgets a partition whose lease is lost: its round in flight is
    /// aborted and its actor stops.
    fn abort_child(&mut self, partition: i32) {
        self.view().drop_partition(partition);
        if let Some(child) = self.children.remove(&partition)
            && let Some(actor) = child.actor
        {
            actor.do_send(AbortRelay);
        }
        self.board.post(partition, None);
    }

    fn check_children(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.template.faults.frozen() {
            return;
        }
        let now = Instant::now();
        if self
            .valid_until
            .is_some_and(|until| now + VALIDITY_MARGIN >= until)
            && !self.children.is_empty()
        {
            tracing::warn!("leases not renewed in time; aborting every relay");
            let partitions: Vec<i32> = self.children.keys().copied().collect();
            for partition in partitions {
                self.abort_child(partition);
            }
            self.valid_until = None;
            self.publish_held();
            return;
        }
        let mut to_release = BTreeSet::new();
        let mut restart = Vec::new();
        for (partition, child) in &mut self.children {
            let alive = child.actor.as_ref().is_some_and(Addr::connected);
            if alive {
                continue;
            }
            let died = child.actor.take().is_some();
            if child.releasing {
                // Stopped as asked, or dead: either way, hand it back.
                if !child.release_in_flight {
                    child.release_in_flight = true;
                    to_release.insert(*partition);
                }
                continue;
            }
            if died {
                if child.started_at.elapsed() >= HEALTHY_AFTER {
                    child.failures = 0;
                }
                let backoff = RESTART_BACKOFF_MIN
                    .saturating_mul(1 << child.failures.min(10))
                    .min(RESTART_BACKOFF_MAX);
                child.failures += 1;
                child.restart_at = Some(now + backoff);
                tracing::error!(
                    partition,
                    ?backoff,
                    "relay actor died; restarting after backoff"
                );
            } else if child.restart_at.is_some_and(|at| now >= at) {
                restart.push(*partition);
            }
        }
        for partition in restart {
            self.metrics.actor_restarts.fetch_add(1, Relaxed);
            self.start_child(partition);
        }
        if !to_release.is_empty() {
            self.release(to_release, ctx);
        }
    }

    /// Releases `partitions`' leases, then forgets them.
    fn release(&mut self, partitions: BTreeSet<i32>, ctx: &mut Context<Self>) {
        for partition in &partitions {
            self.board.post(*partition, None);
            self.view().drop_partition(*partition);
        }
        let leases = self.leases.clone();
        ctx.spawn(
            async move {
                if let Err(err) = leases.release(&partitions).await {
                    tracing::warn!(error = %err, "releasing leases failed; they expire instead");
                }
                partitions
            }
            .into_actor(self)
            .map(|partitions, supervisor, _| {
                for partition in &partitions {
                    supervisor.children.remove(partition);
                }
                supervisor.publish_held();
            }),
        );
    }

    fn publish_held(&self) {
        let held: BTreeSet<i32> = self.children.keys().copied().collect();
        self.metrics
            .leases_held
            .store(i64::try_from(held.len()).unwrap_or(i64::MAX), Relaxed);
        self.held.send_replace(held);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(owner = self.leases.owner(), "outbox supervisor started");
        self.beat(ctx);
        ctx.run_interval(self.timing.heartbeat, Self::beat);
        ctx.run_interval(CHILD_CHECK, Self::check_children);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(on_stopped) = self.on_stopped.take() {
            let _ = on_stopped.send(());
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, shutdown: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let actors: Vec<Addr<RelayActor>> = self
            .children
            .values()
            .filter_map(|child| child.actor.clone())
            .collect();
        for actor in &actors {
            actor.do_send(StopRelay);
        }
        let leases = self.leases.clone();
        let heartbeat_in_flight = Arc::clone(&self.heartbeat_in_flight);
        Box::pin(
            async move {
                let deadline = Instant::now() + shutdown.deadline;
                // A heartbeat still in flight could take partitions back
                // after we leave: let it land first.
                while (actors.iter().any(Addr::connected) || heartbeat_in_flight.load(Ordering::SeqCst))
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Err(err) = leases.leave().await {
                    tracing::warn!(error = %err, "releasing leases at shutdown failed; they expire instead");
                }
            }
            .into_actor(self)
            .map(|(), supervisor, ctx| {
                for partition in supervisor.children.keys() {
                    supervisor.template.lease_view.drop_partition(*partition);
                }
                supervisor.children.clear();
                supervisor.publish_held();
                tracing::info!("outbox supervisor stopped; leases released");
                ctx.stop();
            }),
        )
    }
}
