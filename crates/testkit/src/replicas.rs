//! Replicas of a service binary behind a client-side balancer, as a
//! rolling update sees them: each replica is a real process on a free
//! loopback port, watched by a health check every [`HEALTH_PERIOD`] (what a
//! readiness probe and the endpoints controller do, faster); the balancer
//! picks, round robin, among the replicas whose health says SERVING.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{eventually, free_port, health_of};

/// How often a replica's health is checked.
pub const HEALTH_PERIOD: Duration = Duration::from_millis(100);

/// One running replica. Dropping it kills the process (a failing test
/// leaves nothing behind).
pub struct Replica {
    pub addr: SocketAddr,
    process: Child,
    ready: Arc<AtomicBool>,
    watcher: JoinHandle<()>,
}

impl Replica {
    /// Starts `exe` with only `env` (plus its listen address, and no
    /// metrics endpoint), watching `health_service` for readiness.
    pub fn start(exe: &str, env: &[(&str, &str)], health_service: &'static str) -> Self {
        let port = free_port().unwrap_or_else(|err| panic!("no free port: {err}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let process = Command::new(exe)
            .env_clear()
            .envs(env.iter().copied())
            .env("GRPC_LISTEN_ADDR", addr.to_string())
            .env("METRICS_LISTEN_ADDR", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {exe}: {err}"));
        let ready = Arc::new(AtomicBool::new(false));
        let watcher = {
            let ready = Arc::clone(&ready);
            tokio::spawn(async move {
                loop {
                    let serving =
                        health_of(addr, health_service).await == Some(ServingStatus::Serving);
                    ready.store(serving, Ordering::SeqCst);
                    tokio::time::sleep(HEALTH_PERIOD).await;
                }
            })
        };
        Self {
            addr,
            process,
            ready,
            watcher,
        }
    }

    /// Whether its last health check said SERVING.
    pub fn ready(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Waits until it is SERVING (at most 30 s).
    pub async fn wait_ready(&self) {
        eventually("the replica SERVING", Duration::from_secs(30), || async {
            self.ready.load(Ordering::SeqCst)
        })
        .await;
    }

    /// Sends it SIGTERM, as Kubernetes does to a pod it replaces.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status()
            .unwrap_or_else(|err| panic!("cannot run kill: {err}"));
        assert!(sent.success(), "SIGTERM sent");
    }

    /// Waits for the process to exit (at most `deadline`).
    pub async fn exited(mut self, deadline: Duration) -> ExitStatus {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let exited = self
                .process
                .try_wait()
                .unwrap_or_else(|err| panic!("cannot wait for the replica: {err}"));
            if let Some(status) = exited {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the replica did not exit within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.watcher.abort();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Round robin over the replicas whose health says SERVING.
pub struct Balancer {
    ready: Vec<Arc<AtomicBool>>,
    next: AtomicUsize,
}

impl Balancer {
    pub fn over(replicas: &[&Replica]) -> Self {
        Self {
            ready: replicas.iter().map(|replica| replica.ready()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The index of the next ready replica; `None` while none is.
    pub fn pick(&self) -> Option<usize> {
        let turn = self.next.fetch_add(1, Ordering::SeqCst);
        (0..self.ready.len())
            .map(|offset| (turn + offset) % self.ready.len())
            .find(|index| self.ready[*index].load(Ordering::SeqCst))
    }
}
