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
    child: Option<Child>,
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl ServiceProcess {
    /// Starts `binary` (from `bin_dir`) with `env` plus its own listen
    /// address, logging to `log_dir/<name>.log`, and waits until it is alive.
    pub async fn start(
        name: &str,
        bin_dir: &Path,
        binary: &str,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut service = Self {
            name: name.to_owned(),
            binary: bin_dir.join(binary),
            env,
            log: log_dir.join(format!("{name}.log")),
            addr,
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

    /// Waits until `ordo.liveness` answers SERVING.
    async fn wait_alive(&self) -> anyhow::Result<()> {
        for _ in 0..300 {
            if ordo_testkit::health_of(self.addr, "ordo.liveness").await
                == Some(ServingStatus::Serving)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not come up; see {}", self.name, self.log.display())
    }
}
