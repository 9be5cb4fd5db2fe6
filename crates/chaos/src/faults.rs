//! The fault schedule: which fault, at what point of the run (a fraction of
//! the orders placed, so the schedule does not depend on the machine's
//! speed), for how long — all drawn from the seed, so a run can be replayed.

use std::fmt;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` an order-service replica, restart it after the downtime.
    KillOrderService(usize),
    /// `kill -9` a processor replica, restart it after the downtime.
    KillProcessor(usize),
    /// Kill nats-server (SIGKILL) and start it again on the same store; in
    /// a cluster, the node leading the ORDERS stream.
    RestartNats,
    /// `pg_terminate_backend` every connection of Ordo's databases.
    TerminateBackends,
    /// Stop PostgreSQL in immediate mode (a crash) and start it again.
    RestartPostgres,
    /// The payment simulator fails every call for the downtime.
    FlapPayments,
    /// Every payment call takes 1.5 s for the downtime (longer than some
    /// handlers wait): cancellations land while authorizations are in flight.
    SlowPayments,
    /// The next 30 payment answers are lost on their way back, after the
    /// provider acted (a proxy between the processors and the simulator).
    DropAnswers,
    /// SIGSTOP an order-service replica for longer than its lease and the
    /// stream's duplicate window, then SIGCONT.
    PauseOrderService(usize),
    /// SIGSTOP a processor replica for longer than its lease and the
    /// duplicate window, then SIGCONT.
    PauseProcessor(usize),
    /// Messages no Ordo service wrote, on every subject: bytes that are not
    /// protobuf, ids that are not UUIDs, a correlation id with a line break,
    /// a Nats-Msg-Id of 20 KB, text PostgreSQL cannot store.
    Poison,
    /// An order-service started with another OUTBOX_PARTITIONS: it must
    /// refuse to start.
    ChangePartitions,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KillOrderService(replica) => write!(f, "kill -9 order-service #{replica}"),
            Self::KillProcessor(replica) => write!(f, "kill -9 processor #{replica}"),
            Self::RestartNats => write!(
                f,
                "kill and restart nats-server (in a cluster: the stream's leader)"
            ),
            Self::TerminateBackends => write!(f, "pg_terminate_backend all"),
            Self::RestartPostgres => write!(f, "crash and restart PostgreSQL"),
            Self::FlapPayments => write!(f, "payments failing"),
            Self::SlowPayments => write!(f, "payments slow (1.5 s a call)"),
            Self::DropAnswers => write!(f, "30 payment answers lost"),
            Self::PauseOrderService(replica) => write!(f, "SIGSTOP order-service #{replica}"),
            Self::PauseProcessor(replica) => write!(f, "SIGSTOP processor #{replica}"),
            Self::Poison => write!(f, "poison messages on every subject"),
            Self::ChangePartitions => {
                write!(f, "start an order-service with another partition count")
            }
        }
    }
}

/// A fault at a point of the run.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Share of the orders acknowledged when it strikes (0–1).
    pub at: f64,
    pub fault: Fault,
    /// How long the victim stays down (ms).
    pub downtime_ms: u64,
}

/// Every fault the suite promises, at seeded moments, in order.
pub fn plan(seed: u64, replicas: usize) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = Vec::new();
    for n in 0..5 {
        faults.push(Fault::KillOrderService(n % replicas));
        faults.push(Fault::KillProcessor(n % replicas));
    }
    faults.extend([
        Fault::RestartNats,
        Fault::RestartNats,
        Fault::TerminateBackends,
        Fault::TerminateBackends,
        Fault::TerminateBackends,
        Fault::RestartPostgres,
        Fault::FlapPayments,
        Fault::FlapPayments,
        Fault::FlapPayments,
        Fault::SlowPayments,
        Fault::SlowPayments,
        Fault::DropAnswers,
        Fault::DropAnswers,
    ]);
    faults.extend([
        Fault::PauseOrderService(0),
        Fault::PauseProcessor(replicas - 1),
        Fault::Poison,
        Fault::Poison,
        Fault::ChangePartitions,
    ]);
    let mut planned: Vec<Planned> = faults
        .into_iter()
        .map(|fault| Planned {
            at: 0.05 + rng.f64() * 0.85,
            fault,
            downtime_ms: match fault {
                // Longer than the chaos run's 3 s lease and 15 s duplicate window.
                Fault::PauseOrderService(_) | Fault::PauseProcessor(_) => rng.u64(16_000..=19_000),
                _ => rng.u64(200..=2_000),
            },
        })
        .collect();
    planned.sort_by(|a, b| a.at.total_cmp(&b.at));
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let one: Vec<_> = plan(42, 2)
            .iter()
            .map(|p| (p.at.to_bits(), p.fault, p.downtime_ms))
            .collect();
        let two: Vec<_> = plan(42, 2)
            .iter()
            .map(|p| (p.at.to_bits(), p.fault, p.downtime_ms))
            .collect();
        assert_eq!(one, two);
        assert_ne!(
            one,
            plan(43, 2)
                .iter()
                .map(|p| (p.at.to_bits(), p.fault, p.downtime_ms))
                .collect::<Vec<_>>()
        );
        let kills = one
            .iter()
            .filter(|(_, fault, _)| matches!(fault, Fault::KillOrderService(_)))
            .count();
        assert_eq!(kills, 5);
        for kind in [
            Fault::Poison,
            Fault::ChangePartitions,
            Fault::PauseProcessor(1),
        ] {
            assert!(one.iter().any(|(_, fault, _)| *fault == kind), "{kind}");
        }
        let pause = one
            .iter()
            .find(|(_, fault, _)| matches!(fault, Fault::PauseOrderService(_)))
            .map(|(_, _, downtime)| *downtime);
        assert!(
            pause.is_some_and(|ms| ms > 3_000),
            "a pause outlasts the lease"
        );
    }
}
