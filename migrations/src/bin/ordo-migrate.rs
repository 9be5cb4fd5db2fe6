//! `ordo-migrate`: apply or inspect Ordo's schemas, or change the outbox's
//! partition count. Reads `DATABASE_URL`, and `MIGRATE_SCHEMA` (`orders`,
//! the default, or `processor`).
//!
//! - `ordo-migrate up` applies pending migrations; `--help` lists the rest.
//! - `ordo-migrate repartition N` moves the outbox's waiting rows to their
//!   partitions under `N` and records `N`; every replica of the service
//!   must be stopped (it refuses while one runs), and started again with
//!   `OUTBOX_PARTITIONS=N`.
//! - `ordo-migrate --version` prints the version and the git commit, when
//!   the build had `ORDO_GIT_COMMIT` (this crate sits under every test
//!   binary, so it does not ask git at each commit as the services do).

use ordo_migrations::{Migrator, ProcessorMigrator, Schema};
use ordo_outbox::PartitionCount;

const HELP: &str = "\
ordo-migrate: applies or inspects Ordo's schemas, or changes the outbox's partition count.

Settings, from the environment:
  DATABASE_URL    the database (also -u/--database-url)
  MIGRATE_SCHEMA  orders (default) or processor: which schema's migrations

  ordo-migrate repartition N   move the outbox's waiting rows to N partitions and record N;
                               every replica must be stopped (docs/operations.md)
  ordo-migrate -V, --version   print the version and the git commit

The migration commands, from SeaORM:
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("-V" | "--version") => {
            println!(
                "{}",
                ordo_service_kit::cli::version_line(
                    "ordo-migrate",
                    env!("CARGO_PKG_VERSION"),
                    option_env!("ORDO_GIT_COMMIT").unwrap_or("unknown"),
                )
            );
            return std::process::ExitCode::SUCCESS;
        }
        // SeaORM's command line prints its own help after this and exits.
        Some("-h" | "--help") => println!("{HELP}"),
        _ => {}
    }
    let name = std::env::var("MIGRATE_SCHEMA").unwrap_or_else(|_| "orders".to_owned());
    let Some(schema) = Schema::parse(&name) else {
        eprintln!("ordo-migrate: MIGRATE_SCHEMA is {name:?}; expected orders or processor");
        return std::process::ExitCode::from(2);
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("repartition") {
        return repartition(&args[1..]).await;
    }
    match schema {
        Schema::Orders => sea_orm_migration::cli::run_cli(Migrator).await,
        Schema::Processor => sea_orm_migration::cli::run_cli(ProcessorMigrator).await,
    }
    std::process::ExitCode::SUCCESS
}

async fn repartition(args: &[String]) -> std::process::ExitCode {
    let Some(count) = args
        .first()
        .and_then(|raw| raw.parse().ok())
        .and_then(|count| PartitionCount::new(count).ok())
    else {
        eprintln!("ordo-migrate repartition N: N is the new partition count, 1-4096");
        return std::process::ExitCode::from(2);
    };
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("ordo-migrate repartition: set DATABASE_URL");
        return std::process::ExitCode::from(2);
    };
    let db = match ordo_migrations::database::connect(&url, 1).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("ordo-migrate repartition: cannot connect to DATABASE_URL: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match ordo_outbox::outbox_repartition(&db, count).await {
        Ok(done) => {
            println!(
                "outbox repartitioned from {} to {} partitions; {} waiting row(s) moved. \
                 Start every replica with OUTBOX_PARTITIONS={}.",
                done.from
                    .map_or("an unrecorded count".to_owned(), |from| from.to_string()),
                done.to,
                done.moved,
                done.to
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ordo-migrate repartition: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
