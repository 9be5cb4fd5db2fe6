//! A PostgreSQL cluster of the run's own (initdb into a temporary
//! directory, run as the postgres user), so the run may restart it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// The cluster: its data directory and port.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Postgres {
    /// initdb, start, create Ordo's two databases.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL server binaries not found under /usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .context("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!("ordo-chaos-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        run(
            "chown",
            &["-R", "postgres:postgres", &dir.display().to_string()],
        )
        .await?;
        let postgres = Self { bin, dir, port };
        postgres
            .as_postgres(
                "initdb",
                &[
                    "-D",
                    &postgres.data(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
            )
            .await?;
        postgres.pg_ctl_start().await?;
        for database in ["ordo", "ordo_processor"] {
            postgres
                .as_postgres(
                    "psql",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-U",
                        "postgres",
                        "-qc",
                        &format!("CREATE DATABASE {database}"),
                    ],
                )
                .await?;
        }
        Ok(postgres)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops it as a crash would (immediate mode) and starts it again.
    pub async fn crash_and_restart(&self) -> anyhow::Result<()> {
        self.as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.pg_ctl_start().await
    }

    /// Stops it (fast) and removes the data directory.
    pub async fn destroy(&self) {
        let _ = self
            .as_postgres("pg_ctl", &["-D", &self.data(), "-m", "fast", "stop"])
            .await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    async fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
        .await
    }

    async fn as_postgres(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let tool = self.bin.join(tool).display().to_string();
        let mut all = vec!["-u", "postgres", "--", tool.as_str()];
        all.extend_from_slice(args);
        run("runuser", &all).await
    }
}

/// A run that ends early (an error, Ctrl-C, `timeout`) leaves no server
/// behind: stopped immediately, its directory removed.
impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.dir.exists() {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_ctl)
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(args).output().await?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
