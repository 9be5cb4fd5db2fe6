//! `ordo-migrate`: apply or inspect Ordo's schemas. Reads `DATABASE_URL`,
//! and `MIGRATE_SCHEMA` (`orders`, the default, or `processor`).
//! `ordo-migrate up` applies pending migrations; `--help` lists the rest.

use ordo_migrations::{Migrator, ProcessorMigrator, Schema};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let name = std::env::var("MIGRATE_SCHEMA").unwrap_or_else(|_| "orders".to_owned());
    match Schema::parse(&name) {
        Some(Schema::Orders) => sea_orm_migration::cli::run_cli(Migrator).await,
        Some(Schema::Processor) => sea_orm_migration::cli::run_cli(ProcessorMigrator).await,
        None => {
            eprintln!("ordo-migrate: MIGRATE_SCHEMA is {name:?}; expected orders or processor");
            return std::process::ExitCode::from(2);
        }
    }
    std::process::ExitCode::SUCCESS
}
