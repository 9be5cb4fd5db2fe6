//! Ordo's PostgreSQL schema, as SeaORM migrations.
//!
//! Each migration is a pair of SQL files under `migrations/sql/` (up and down)
//! registered in [`MIGRATIONS`] under a stable name. [`Migrator`] applies them
//! in order; the `ordo-migrate` binary is the CLI (`ordo-migrate up`, `status`,
//! `down`, `fresh`), and services run [`Migrator::up`] at start-up unless
//! `MIGRATE=false`.
//!
//! [`schema_fingerprint`] hashes every migration's SQL, so tooling (the test
//! kit's template databases) can tell when the schema changed.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::MigratorTrait;
use sea_orm_migration::prelude::*;
use sha2::{Digest, Sha256};

/// Every migration, oldest first. Names are recorded in `seaql_migrations`:
/// never rename or edit one that has shipped; add a new one.
pub const MIGRATIONS: &[SqlMigration] = &[
    SqlMigration {
        name: "m20261123_000001_orders",
        up: include_str!("../sql/0001_orders.up.sql"),
        down: include_str!("../sql/0001_orders.down.sql"),
    },
    SqlMigration {
        name: "m20261123_000002_outbox",
        up: include_str!("../sql/0002_outbox.up.sql"),
        down: include_str!("../sql/0002_outbox.down.sql"),
    },
    SqlMigration {
        name: "m20261124_000003_outbox_leases",
        up: include_str!("../sql/0003_outbox_leases.up.sql"),
        down: include_str!("../sql/0003_outbox_leases.down.sql"),
    },
    SqlMigration {
        name: "m20261124_000004_inbox",
        up: include_str!("../sql/0004_inbox.up.sql"),
        down: include_str!("../sql/0004_inbox.down.sql"),
    },
];

/// The migrator services and the CLI run.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        MIGRATIONS
            .iter()
            .map(|migration| Box::new(*migration) as Box<dyn MigrationTrait>)
            .collect()
    }
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

/// A short hex digest of every migration's SQL: equal fingerprints, equal schemas.
pub fn schema_fingerprint() -> String {
    let mut hasher = Sha256::new();
    for migration in MIGRATIONS {
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
