//! A PostgreSQL cluster of a test's or tool's own (initdb into a temporary
//! directory, run as the postgres user, trust authentication on loopback),
//! which it may crash and restart, or run with TLS only.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::certs::CertFiles;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The cluster: its data directory and port.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// initdb, start on `port`, create `databases`. With `tls`, the server
    /// has that certificate and accepts TCP connections over TLS only
    /// (`hostssl` lines alone in pg_hba.conf).
    pub async fn start(
        port: u16,
        databases: &[&str],
        tls: Option<&CertFiles>,
    ) -> Result<Self, Error> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|err| {
                format!("PostgreSQL server binaries not found under /usr/lib/postgresql: {err}")
            })?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!(
            "ordo-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
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
        if let Some(tls) = tls {
            postgres.use_tls_only(tls).await?;
        }
        postgres.pg_ctl_start().await?;
        for database in databases {
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

    /// The certificate and key go into the data directory (owned by
    /// postgres, as the server insists), `ssl = on`, and pg_hba.conf lets
    /// TCP connections in over TLS only.
    async fn use_tls_only(&self, tls: &CertFiles) -> Result<(), Error> {
        let data = self.dir.join("data");
        std::fs::copy(&tls.cert, data.join("server.crt"))?;
        std::fs::copy(&tls.key, data.join("server.key"))?;
        run(
            "chown",
            &[
                "postgres:postgres",
                &data.join("server.crt").display().to_string(),
                &data.join("server.key").display().to_string(),
            ],
        )
        .await?;
        run(
            "chmod",
            &["0600", &data.join("server.key").display().to_string()],
        )
        .await?;
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)?;
        settings
            .push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, settings)?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )?;
        Ok(())
    }

    /// Stops it as a crash would (immediate mode) and starts it again.
    pub async fn crash_and_restart(&self) -> Result<(), Error> {
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

    async fn pg_ctl_start(&self) -> Result<(), Error> {
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

    async fn as_postgres(&self, tool: &str, args: &[&str]) -> Result<(), Error> {
        let tool = self.bin.join(tool).display().to_string();
        let mut all = vec!["-u", "postgres", "--", tool.as_str()];
        all.extend_from_slice(args);
        run("runuser", &all).await
    }
}

/// A run that ends early (an error, Ctrl-C, `timeout`) leaves no server
/// behind: stopped immediately, its directory removed.
impl Drop for PrivatePostgres {
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

async fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    let output = Command::new(program).args(args).output().await?;
    if !output.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(())
}
