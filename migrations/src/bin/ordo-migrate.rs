//! `ordo-migrate`: apply or inspect Ordo's schema. Reads `DATABASE_URL`.
//! `ordo-migrate up` applies pending migrations; `--help` lists the rest.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sea_orm_migration::cli::run_cli(ordo_migrations::Migrator).await;
}
