//! `ordo`, the operator's command line for an Ordo pipeline: one order's
//! whole life across the services, the processor's dead letters (list,
//! group by cause, inspect, redrive or purge in bulk), each service's
//! backlog, and the outboxes' parked events — over the services' own gRPC
//! APIs (`ordo.order.v1`, `ordo.processor.v1`, `ordo.operator.v1`,
//! `ordo.outbox.v1`), never their databases.
//!
//! How a command flows:
//!
//! 1. [`args`] parses the command line (clap; flags fall back to `ORDO_*`
//!    variables) into typed values once: times, durations, rates, filters.
//!    A malformed one is a usage error (exit 2) before any call.
//! 2. [`connect`] turns the global flags into a [`connect::Connection`]:
//!    the two services' URLs, TLS through `ordo_proto::client`, the admin
//!    token (`authorization: Bearer …` on admin calls) and a deadline per
//!    call. Channels connect lazily, so an unreachable service is just an
//!    UNAVAILABLE answer.
//! 3. One module per command family asks the services — [`order`] (show,
//!    list), [`dlq`] (dead letters), [`lag`] (GetStatus of both),
//!    [`parked`] (OutboxAdminService) — and hands the answers to a pure
//!    function that decides what to show (`order::assemble`,
//!    `order::merge_timeline`, `lag::assemble`, `dlq::group_by_fingerprint`,
//!    `dlq::selection`), building view structs of its own (never raw prost
//!    types) that serialize to JSON.
//! 4. [`render`] prints the views: aligned tables with every service-given
//!    text made one safe line, or `-o json`; warnings go to stderr.
//! 5. [`exit`] maps the outcome to the exit code, gRPC codes in one place:
//!    0 ok, 1 failed, 2 usage, 3 not found, 4 denied, 5 unavailable.
//!
//! [`time`] holds the pure time parsing and formatting (`--since 2h`).
#![forbid(unsafe_code)]

pub mod args;
pub mod connect;
pub mod dlq;
pub mod exit;
pub mod lag;
pub mod order;
pub mod parked;
pub mod render;
pub mod time;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ordo_proto::client::ClientTls;

use crate::args::{Cli, Command, DlqCommand, OrderCommand, ParkedCommand};
use crate::connect::{Connection, resolve_token};
use crate::exit::{CliError, Exit};

/// Parses the process's command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" that exit 0.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(Exit::Usage.code()));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Failed.code());
        }
    };
    let urls = format!(
        "order-service at {}, processor at {}",
        cli.global.order_url, cli.global.processor_url
    );
    let env = |name: &str| std::env::var(name).ok();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = runtime.block_on(run(cli, &env, &mut out));
    let _ = out.flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if error.exit() == Exit::Unavailable {
                eprintln!(
                    "hint: asked {urls} (--order-service, --processor, ORDO_ORDER_URL, ORDO_PROCESSOR_URL)"
                );
            }
            ExitCode::from(error.exit().code())
        }
    }
}

/// Runs a parsed command, printing to `out`; `env` looks up the variables
/// clap does not read itself (the admin token's).
pub async fn run(
    cli: Cli,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let global = cli.global;
    let format = global.output;
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "ordo", out);
        return Ok(());
    }
    let connection = Connection {
        order_url: global.order_url,
        processor_url: global.processor_url,
        tls: ClientTls {
            ca_file: global.ca_file,
            cert_file: global.cert_file,
            key_file: global.key_file,
            server_name: global.tls_server_name,
        },
        token: resolve_token(global.token.as_deref(), global.token_file.as_deref(), env)?,
        timeout: global.timeout,
    };
    match cli.command {
        Command::Order(OrderCommand::Show(args)) => {
            order::show(&connection, &args, format, out).await
        }
        Command::Order(OrderCommand::List(args)) => {
            order::list(&connection, &args, format, out).await
        }
        Command::Dlq(DlqCommand::List(args)) => dlq::list(&connection, &args, format, out).await,
        Command::Dlq(DlqCommand::Show { id }) => dlq::show(&connection, id, format, out).await,
        Command::Dlq(DlqCommand::Redrive(args)) => {
            dlq::bulk(&connection, dlq::BulkAction::Redrive, &args, format, out).await
        }
        Command::Dlq(DlqCommand::Purge(args)) => {
            dlq::bulk(&connection, dlq::BulkAction::Purge, &args, format, out).await
        }
        Command::Lag => lag::lag(&connection, format, out).await,
        Command::Parked(ParkedCommand::List(target)) => {
            parked::list(&connection, target.service, format, out).await
        }
        Command::Parked(ParkedCommand::Redrive(args)) => {
            parked::decide(
                &connection,
                parked::ParkedDecision::Redrive,
                &args,
                format,
                out,
            )
            .await
        }
        Command::Parked(ParkedCommand::Discard(args)) => {
            parked::decide(
                &connection,
                parked::ParkedDecision::Discard,
                &args,
                format,
                out,
            )
            .await
        }
        // Answered above, before any connection is made.
        Command::Completions { .. } => Ok(()),
    }
}
