//! Ordo's binaries as processes the run may kill with SIGKILL and restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;

/// One service process: its binary, settings and log.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub addr: SocketAddr,
    /// How to reach its gRPC server when it serves TLS.
    tls: Option<ordo_proto::client::ClientTls>,
    child: Option<Child>,
}

/// A free loopback port below the kernel's ephemeral range.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(ordo_testkit::free_port()?)
}

impl ServiceProcess {
    /// Starts `binary` (from `bin_dir`) with `env` plus its own listen
    /// address, logging to `log_dir/<name>.log`, and waits until it is
    /// alive (asking over TLS with `tls`).
    pub async fn start(
        name: &str,
        bin_dir: &Path,
        binary: &str,
        env: Vec<(String, String)>,
        log_dir: &Path,
        tls: Option<ordo_proto::client::ClientTls>,
    ) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut service = Self {
            name: name.to_owned(),
            binary: bin_dir.join(binary),
            env,
            log: log_dir.join(format!("{name}.log")),
            addr,
            tls,
            child: None,
        };
        service.spawn().await?;
        Ok(service)
    }

    /// SIGKILL: no shutdown, no goodbye.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGSTOP for `pause`, then SIGCONT: a frozen process (a VM pause, a
    /// long stall) that wakes up as if nothing happened.
    pub async fn pause(&self, pause: Duration) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("{} is not running", self.name))?;
        signal(pid, "-STOP").await?;
        tokio::time::sleep(pause).await;
        signal(pid, "-CONT").await
    }

    /// Starts it again with the same settings and address.
    pub async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .envs(
                self.env
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
            .env("GRPC_LISTEN_ADDR", self.addr.to_string())
            .env("METRICS_LISTEN_ADDR", "off")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_alive().await
    }

    /// Starts it once more with `extra` settings on top, expecting it to
    /// refuse: its exit status and what it logged, or `None` if it was still
    /// running after `within` (then it is killed).
    pub async fn start_expecting_refusal(
        &self,
        extra: &[(&str, &str)],
        within: Duration,
    ) -> anyhow::Result<Option<(std::process::ExitStatus, String)>> {
        let log = self.log.with_extension("refused.log");
        let mut child = Command::new(&self.binary)
            .envs(
                self.env
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
            .envs(extra.iter().copied())
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_LISTEN_ADDR", "off")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => Ok(Some((status?, std::fs::read_to_string(&log)?))),
            Err(_) => {
                child.kill().await?;
                Ok(None)
            }
        }
    }

    /// A client channel to its gRPC server (TLS when it serves TLS).
    pub fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        let endpoint = match &self.tls {
            Some(tls) => ordo_proto::client::endpoint(&format!("https://{}", self.addr), tls)?,
            None => ordo_proto::client::endpoint(
                &format!("http://{}", self.addr),
                &ordo_proto::client::ClientTls::default(),
            )?,
        };
        Ok(endpoint.connect_lazy())
    }

    /// Waits until `ordo.liveness` answers SERVING.
    async fn wait_alive(&self) -> anyhow::Result<()> {
        for _ in 0..300 {
            if ordo_testkit::health_over(self.addr, self.tls.as_ref(), "ordo.liveness").await
                == Some(ServingStatus::Serving)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not come up; see {}", self.name, self.log.display())
    }
}

async fn signal(pid: u32, which: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill {which} {pid} failed");
    }
    Ok(())
}
