//! A fresh, migrated PostgreSQL database for each test.
//!
//! Migrating is the slow part, so it happens once per schema: the first
//! test builds `ordo_t_template_<fingerprint>` (under another name, renamed
//! when complete, so a crash never leaves a half-migrated template), and
//! every test then runs `CREATE DATABASE … TEMPLATE …`, a file copy.
//!
//! A test's database is dropped when its [`TestDatabase`] is (set
//! `ORDO_KEEP_TEST_DATABASES=1` to keep them for a post-mortem). Its name,
//! `ordo_t_<unix time>_<random>`, lets `scripts/drop-test-databases.sh`
//! remove what a killed run left behind without touching a run in progress.

use std::time::Duration;

pub use ordo_migrations::Schema;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK: i64 = 0x6f72_646f_7465_6d70; // "ordotemp"

/// A database of this test's own, migrated to the current schema; dropped
/// when this value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a new order-service database from the migrated template.
    pub async fn create() -> Result<Self, DbErr> {
        Self::create_for(Schema::Orders).await
    }

    /// Creates a new database with `schema`, from its migrated template.
    pub async fn create_for(schema: Schema) -> Result<Self, DbErr> {
        let admin_url = admin_url();
        let admin = connect_single(&admin_url).await?;
        let template = format!("ordo_t_template_{}", schema.fingerprint());
        ensure_template(&admin, &admin_url, &template, schema).await?;

        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let random = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("ordo_t_{created}_{}", &random[..12]);
        let create = format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#);
        // Two clones of one template at the same instant can collide on
        // PostgreSQL's "source database is being accessed" check: retry.
        let mut attempt = 0;
        loop {
            match admin.execute_unprepared(&create).await {
                Ok(_) => break,
                Err(err) if attempt < 50 && err.to_string().contains("being accessed") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
        admin.close().await?;
        Ok(Self {
            url: url_with_database(&admin_url, &name),
            name,
        })
    }

    /// A URL of this database, for a service's `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PostgreSQL server's address (for a [`crate::TcpProxy`] in front of it).
    pub fn server_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        use std::net::ToSocketAddrs as _;
        let after_at = self
            .url
            .split_once('@')
            .map_or(self.url.as_str(), |(_, rest)| rest);
        let host_port = after_at.split('/').next().unwrap_or_default();
        let with_port = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        with_port.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot resolve {with_port}"),
            )
        })
    }

    /// The same database reached through `host:port` (e.g. a [`crate::TcpProxy`]).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let rest = self.url.split_once('@').map_or("", |(_, rest)| rest);
        let path = rest.split_once('/').map_or("", |(_, path)| path);
        let credentials = self.url.split_once('@').map_or("", |(creds, _)| creds);
        format!("{credentials}@{addr}/{path}")
    }

    /// A small connection pool to inspect or prepare the database directly.
    pub async fn connect(&self) -> Result<DatabaseConnection, DbErr> {
        let mut options = ConnectOptions::new(self.url.clone());
        options.max_connections(4).sqlx_logging(false);
        Database::connect(options).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::env::var_os("ORDO_KEEP_TEST_DATABASES").is_some() {
            return;
        }
        let drop_sql = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
        // Drop runs inside the test's runtime, which cannot block on a
        // future: do it on a thread of its own, with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = connect_single(&admin_url())
                    .await
                    .map_err(std::io::Error::other)?;
                admin
                    .execute_unprepared(&drop_sql)
                    .await
                    .map_err(std::io::Error::other)?;
                admin.close().await.map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("testkit: could not drop test database {}", self.name);
        }
    }
}

fn admin_url() -> String {
    std::env::var("ORDO_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database (the path) replaced by `name`.
fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

async fn connect_single(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    Database::connect(options).await
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> Result<bool, DbErr> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT 1 AS one FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await?;
    Ok(row.is_some())
}

async fn ensure_template(
    admin: &DatabaseConnection,
    admin_url: &str,
    template: &str,
    schema: Schema,
) -> Result<(), DbErr> {
    if database_exists(admin, template).await? {
        return Ok(());
    }
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
        .await?;
    let built = build_template(admin, admin_url, template, schema).await;
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
        .await?;
    built
}

async fn build_template(
    admin: &DatabaseConnection,
    admin_url: &str,
    template: &str,
    schema: Schema,
) -> Result<(), DbErr> {
    if database_exists(admin, template).await? {
        return Ok(());
    }
    let building = format!("{template}_building");
    admin
        .execute_unprepared(&format!(r#"DROP DATABASE IF EXISTS "{building}""#))
        .await?;
    admin
        .execute_unprepared(&format!(r#"CREATE DATABASE "{building}""#))
        .await?;
    let db = connect_single(&url_with_database(admin_url, &building)).await?;
    schema.up(&db).await?;
    db.close().await?;
    admin
        .execute_unprepared(&format!(
            r#"ALTER DATABASE "{building}" RENAME TO "{template}""#
        ))
        .await?;
    Ok(())
}

/// The one whole number `sql` answers.
pub async fn scalar(db: &DatabaseConnection, sql: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{sql}: no row")))?;
    row.try_get_by_index(0)
}

/// Closes `db` and returns the tuples of `tables` read in the database at
/// `url` so far — their sequential scans and what their indexes returned
/// (bitmap scans included) — once `db`'s statistics reached the views
/// (a connection's statistics land when it closes).
///
/// For tests that a statement stays index probes as a table grows under a
/// plan cached while it was small.
pub async fn tuples_read_after_closing(
    db: DatabaseConnection,
    url: &str,
    tables: &[&str],
) -> Result<i64, DbErr> {
    // The connection's last statement marks the moment its statistics did.
    db.execute_unprepared("CREATE TABLE flushed (x int); INSERT INTO flushed VALUES (1)")
        .await?;
    db.close().await?;
    let admin = Database::connect(url).await?;
    let flushed =
        "SELECT coalesce((SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'flushed'), 0)";
    crate::eventually(
        "the statistics flushed",
        Duration::from_secs(20),
        || async { matches!(scalar(&admin, flushed).await, Ok(1)) },
    )
    .await;
    let mut read = 0;
    for table in tables {
        read += scalar(
            &admin,
            &format!(
                "SELECT (SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = '{table}') \
                      + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE relname = '{table}')::bigint"
            ),
        )
        .await?;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_in_a_url() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn reroutes_through_another_address() {
        let db = TestDatabase {
            name: "d".into(),
            url: "postgres://u:p@127.0.0.1:5432/d".into(),
        };
        assert_eq!(
            db.url_via("127.0.0.1:6000".parse().unwrap()),
            "postgres://u:p@127.0.0.1:6000/d"
        );
    }
}
