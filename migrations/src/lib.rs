//! Ordo's PostgreSQL schema, as SeaORM migrations.
//!
//! Each service owns a database ([`Schema`]): the order service's holds
//! orders, the processor's its processing records; both have an outbox, an
//! inbox and job leases, from the same SQL. Each migration is a pair of SQL
//! files under `migrations/sql/` (up and down) under a stable name;
//! [`Migrator`] and [`ProcessorMigrator`] apply a schema's list in order. The
//! `ordo-migrate` binary is the CLI (`ordo-migrate up`, `status`, `down`,
//! `fresh`; `MIGRATE_SCHEMA=processor` for the processor's), and services run
//! [`Schema::up`] at start-up unless `MIGRATE=false`.
//!
//! [`database`] holds the pool and the locked start-up migration both
//! services use.
//!
//! [`Schema::fingerprint`] hashes a schema's SQL, so tooling (the test kit's
//! template databases) can tell when it changed.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::MigratorTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

/// A database Ordo owns: each service keeps its state in a database of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// The order service's: orders, idempotency keys, outbox, inbox.
    Orders,
    /// The processor's: order processing, error history, outbox, inbox.
    Processor,
}

impl Schema {
    /// This schema's migrations, oldest first.
    pub fn migrations(self) -> &'static [SqlMigration] {
        match self {
            Self::Orders => ORDERS,
            Self::Processor => PROCESSOR,
        }
    }

    /// The name `ordo-migrate` knows it by (`MIGRATE_SCHEMA`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "orders",
            Self::Processor => "processor",
        }
    }

    /// Parses [`Schema::name`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Orders, Self::Processor]
            .into_iter()
            .find(|schema| schema.name() == name)
    }

    /// Applies pending migrations to `db`.
    pub async fn up(self, db: &DatabaseConnection) -> Result<(), DbErr> {
        match self {
            Self::Orders => Migrator::up(db, None).await,
            Self::Processor => ProcessorMigrator::up(db, None).await,
        }
    }

    /// A short hex digest of every migration's SQL: equal fingerprints,
    /// equal schemas.
    pub fn fingerprint(self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.name().as_bytes());
        for migration in self.migrations() {
            for part in [migration.name, migration.up, migration.down] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        hasher
            .finalize()
            .iter()
            .take(6)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

const ORDERS_TABLES: SqlMigration = SqlMigration {
    name: "m20261123_000001_orders",
    up: include_str!("../sql/0001_orders.up.sql"),
    down: include_str!("../sql/0001_orders.down.sql"),
};
const OUTBOX: SqlMigration = SqlMigration {
    name: "m20261123_000002_outbox",
    up: include_str!("../sql/0002_outbox.up.sql"),
    down: include_str!("../sql/0002_outbox.down.sql"),
};
const OUTBOX_LEASES: SqlMigration = SqlMigration {
    name: "m20261124_000003_outbox_leases",
    up: include_str!("../sql/0003_outbox_leases.up.sql"),
    down: include_str!("../sql/0003_outbox_leases.down.sql"),
};
const INBOX: SqlMigration = SqlMigration {
    name: "m20261124_000004_inbox",
    up: include_str!("../sql/0004_inbox.up.sql"),
    down: include_str!("../sql/0004_inbox.down.sql"),
};
const JOB_LEASES: SqlMigration = SqlMigration {
    name: "m20261124_000005_job_leases",
    up: include_str!("../sql/0005_job_leases.up.sql"),
    down: include_str!("../sql/0005_job_leases.down.sql"),
};
const ORDER_PROCESSING: SqlMigration = SqlMigration {
    name: "m20261124_000006_order_processing",
    up: include_str!("../sql/0006_order_processing.up.sql"),
    down: include_str!("../sql/0006_order_processing.down.sql"),
};

const ERROR_CORRELATION: SqlMigration = SqlMigration {
    name: "m20261124_000007_error_correlation",
    up: include_str!("../sql/0007_error_correlation.up.sql"),
    down: include_str!("../sql/0007_error_correlation.down.sql"),
};

const PAYMENT_MACHINE: SqlMigration = SqlMigration {
    name: "m20261201_000008_payment_machine",
    up: include_str!("../sql/0008_payment_machine.up.sql"),
    down: include_str!("../sql/0008_payment_machine.down.sql"),
};

const OUTBOX_GUARDS: SqlMigration = SqlMigration {
    name: "m20261201_000009_outbox_guards",
    up: include_str!("../sql/0009_outbox_guards.up.sql"),
    down: include_str!("../sql/0009_outbox_guards.down.sql"),
};

const IDEMPOTENCY_KEY_RETENTION: SqlMigration = SqlMigration {
    name: "m20261201_000010_idempotency_key_retention",
    up: include_str!("../sql/0010_idempotency_key_retention.up.sql"),
    down: include_str!("../sql/0010_idempotency_key_retention.down.sql"),
};

const ERROR_HISTORY_RETENTION: SqlMigration = SqlMigration {
    name: "m20261201_000011_error_history_retention",
    up: include_str!("../sql/0011_error_history_retention.up.sql"),
    down: include_str!("../sql/0011_error_history_retention.down.sql"),
};

const INBOX_DELIVERIES: SqlMigration = SqlMigration {
    name: "m20261201_000012_inbox_deliveries",
    up: include_str!("../sql/0012_inbox_deliveries.up.sql"),
    down: include_str!("../sql/0012_inbox_deliveries.down.sql"),
};

const PROCESSING_DEFERRALS: SqlMigration = SqlMigration {
    name: "m20261201_000013_processing_deferrals",
    up: include_str!("../sql/0013_processing_deferrals.up.sql"),
    down: include_str!("../sql/0013_processing_deferrals.down.sql"),
};

/// The order service's migrations, oldest first. Names are recorded in
/// `seaql_migrations`: never rename or edit one that has shipped; add a new one.
const ORDERS: &[SqlMigration] = &[
    ORDERS_TABLES,
    OUTBOX,
    OUTBOX_LEASES,
    INBOX,
    JOB_LEASES,
    OUTBOX_GUARDS,
    IDEMPOTENCY_KEY_RETENTION,
    INBOX_DELIVERIES,
];

/// The processor's migrations, oldest first; the outbox, inbox and lease
/// tables are the same SQL as the order service's.
const PROCESSOR: &[SqlMigration] = &[
    OUTBOX,
    OUTBOX_LEASES,
    INBOX,
    JOB_LEASES,
    ORDER_PROCESSING,
    ERROR_CORRELATION,
    PAYMENT_MACHINE,
    OUTBOX_GUARDS,
    ERROR_HISTORY_RETENTION,
    INBOX_DELIVERIES,
    PROCESSING_DEFERRALS,
];

/// The order service's migrator (the default of `ordo-migrate`).
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        boxed(ORDERS)
    }
}

/// The processor's migrator (`MIGRATE_SCHEMA=processor ordo-migrate …`).
#[derive(Debug)]
pub struct ProcessorMigrator;

#[async_trait::async_trait]
impl MigratorTrait for ProcessorMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        boxed(PROCESSOR)
    }
}

fn boxed(migrations: &[SqlMigration]) -> Vec<Box<dyn MigrationTrait>> {
    migrations
        .iter()
        .map(|migration| Box::new(*migration) as Box<dyn MigrationTrait>)
        .collect()
}

/// One schema step written as plain SQL.
#[derive(Debug, Clone, Copy)]
pub struct SqlMigration {
    name: &'static str,
    up: &'static str,
    down: &'static str,
}

impl MigrationName for SqlMigration {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SqlMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(self.up).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.down)
            .await?;
        Ok(())
    }
}

/// Connection pools and start-up migration as every service does them.
pub mod database {
    use std::time::Duration;

    use sea_orm_migration::sea_orm::{
        ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
    };

    use crate::Schema;

    /// A pool that fails fast when the database is away, so health probes
    /// and requests answer instead of hanging. A ping per request would be a
    /// round trip per request: only connections idle for a second are checked.
    pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(0)
            .test_before_acquire_if_idle_for(Duration::from_secs(1))
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        let mut db = Database::connect(options).await?;
        ordo_outbox::statements::count_statements_of(&mut db);
        Ok(db)
    }

    /// Applies `schema`'s pending migrations at `url` while holding an
    /// advisory lock on one connection, so replicas starting together
    /// migrate one at a time.
    pub async fn migrate(url: &str, schema: Schema) -> Result<(), DbErr> {
        let db = connect(url, 1).await?;
        db.execute_unprepared("SELECT pg_advisory_lock(hashtext('ordo.migrations'))")
            .await?;
        let migrated = schema.up(&db).await;
        let _ = db
            .execute_unprepared("SELECT pg_advisory_unlock(hashtext('ordo.migrations'))")
            .await;
        db.close().await.ok();
        migrated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_its_schema_and_shares_the_outbox_sql() {
        assert_eq!(Schema::parse("processor"), Some(Schema::Processor));
        assert_eq!(Schema::parse("orders"), Some(Schema::Orders));
        assert_eq!(Schema::parse("payments"), None);
        assert_ne!(
            Schema::Orders.fingerprint(),
            Schema::Processor.fingerprint()
        );
        let names = |schema: Schema| -> Vec<&str> {
            schema
                .migrations()
                .iter()
                .map(|migration| migration.name)
                .collect()
        };
        for shared in [
            "m20261123_000002_outbox",
            "m20261124_000004_inbox",
            "m20261124_000005_job_leases",
        ] {
            assert!(names(Schema::Orders).contains(&shared));
            assert!(names(Schema::Processor).contains(&shared));
        }
        assert!(!names(Schema::Processor).contains(&"m20261123_000001_orders"));
    }
}
