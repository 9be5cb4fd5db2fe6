//! The command line: every command, flag and environment variable, as clap
//! parses them. Values are parsed here once (times, durations, rates), so
//! a malformed one is a usage error before anything is called.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ordo_proto::order::v1::OrderStatus;
use ordo_proto::processor::v1::DeadLetterFilter;

use crate::exit::EXIT_CODES_HELP;
use crate::render::Format;

/// What `--version` prints after the name: the version and the commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ORDO_GIT_COMMIT"),
    ")"
);

/// The order service's URL when nothing else is said (`./dev up`'s).
pub const DEFAULT_ORDER_URL: &str = "http://127.0.0.1:50051";
/// The processor's URL when nothing else is said (`./dev up`'s).
pub const DEFAULT_PROCESSOR_URL: &str = "http://127.0.0.1:50052";

/// ordo: the operator's view of an Ordo pipeline — one order's whole life,
/// the dead letters, the backlogs.
#[derive(Debug, Parser)]
#[command(name = "ordo", version = VERSION, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the services are, how to authenticate, how to print.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The order service's gRPC URL (https:// for TLS)
    #[arg(long = "order-service", env = "ORDO_ORDER_URL", default_value = DEFAULT_ORDER_URL, value_name = "URL", global = true)]
    pub order_url: String,
    /// The processor's gRPC URL (https:// for TLS)
    #[arg(long = "processor", env = "ORDO_PROCESSOR_URL", default_value = DEFAULT_PROCESSOR_URL, value_name = "URL", global = true)]
    pub processor_url: String,
    /// The admin token for admin calls (else --token-file, ORDO_ADMIN_TOKEN, ORDO_ADMIN_TOKEN_FILE; a flag shows in the process list, prefer a file)
    #[arg(
        long,
        value_name = "TOKEN",
        global = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the admin token
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
    /// The CAs that may have issued the services' certificates (PEM; default: the public roots)
    #[arg(long, env = "ORDO_TLS_CA_FILE", value_name = "PATH", global = true)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with --key-file
    #[arg(long, env = "ORDO_TLS_CERT_FILE", value_name = "PATH", global = true)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, env = "ORDO_TLS_KEY_FILE", value_name = "PATH", global = true)]
    pub key_file: Option<PathBuf>,
    /// The name the services' certificates must carry, when the URL's host is not it
    #[arg(long, env = "ORDO_TLS_SERVER_NAME", value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,
    /// How to print results
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Deadline of each call (bulk runs excepted), e.g. 10s, 1m
    #[arg(long, default_value = "10s", value_parser = positive_duration, value_name = "DURATION", global = true)]
    pub timeout: Duration,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Orders: one order's whole life across the services, or a list
    #[command(subcommand)]
    Order(OrderCommand),
    /// The processor's dead letters: list, inspect, redrive, purge
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// How far behind each service is: outbox per partition, consumers, dead letters, breakers
    Lag,
    /// Events a service's outbox relay parked (it can never publish them as they are)
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// Print a shell completion script, e.g. `ordo completions bash > /etc/bash_completion.d/ordo`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `ordo order …`.
#[derive(Debug, Subcommand)]
pub enum OrderCommand {
    /// One order: its status, the processor's record, and everything both services did with it, oldest first
    Show(OrderShowArgs),
    /// Orders, newest first
    List(OrderListArgs),
}

/// `ordo order show`.
#[derive(Debug, Args)]
pub struct OrderShowArgs {
    /// The order id (a UUID)
    pub order_id: String,
    /// A Jaeger UI to link the order's trace in, e.g. http://127.0.0.1:16686
    #[arg(long, env = "ORDO_JAEGER_URL", value_name = "URL")]
    pub jaeger: Option<String>,
}

/// `ordo order list`.
#[derive(Debug, Args)]
pub struct OrderListArgs {
    /// Only this customer's orders
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Only orders in this status
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Most orders to show (pages are fetched until there are this many)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// An order status on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Pending,
    Confirmed,
    Rejected,
    Cancelled,
}

impl StatusArg {
    /// The status as the API names it.
    pub fn to_proto(self) -> OrderStatus {
        match self {
            Self::Pending => OrderStatus::Pending,
            Self::Confirmed => OrderStatus::Confirmed,
            Self::Rejected => OrderStatus::Rejected,
            Self::Cancelled => OrderStatus::Cancelled,
        }
    }
}

/// `ordo dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead letter the filter matches, oldest first (or grouped by cause with --group)
    List(DlqListArgs),
    /// One dead letter with its whole error history
    Show {
        /// The dead letter's id
        id: u64,
    },
    /// Send dead letters back to their subject, to be processed once more
    Redrive(BulkArgs),
    /// Give dead letters up for good; each order is settled first (payment voided, order rejected)
    Purge(BulkArgs),
}

/// Which dead letters: every flag given must match.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Source subject, e.g. orders.placed
    #[arg(long)]
    pub subject: Option<String>,
    /// Error code, e.g. payment_timeout
    #[arg(long)]
    pub code: Option<String>,
    /// Dead-lettered at or after: RFC 3339, or an age like 30m, 1h, 2d
    #[arg(long, value_parser = time_arg, value_name = "TIME")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Dead-lettered before: RFC 3339, or an age like 30m, 1h, 2d
    #[arg(long, value_parser = time_arg, value_name = "TIME")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The order's id
    #[arg(long = "order", value_name = "ORDER_ID")]
    pub order_id: Option<String>,
    /// The error fingerprint (one group of `ordo dlq list --group`)
    #[arg(long)]
    pub fingerprint: Option<String>,
}

impl FilterArgs {
    /// The filter as the API takes it; `None` when no flag is given.
    pub fn to_proto(&self) -> Option<DeadLetterFilter> {
        let filter = DeadLetterFilter {
            subject: self.subject.clone().unwrap_or_default(),
            code: self.code.clone().unwrap_or_default(),
            order_id: self.order_id.clone().unwrap_or_default(),
            since: self.since.map(ordo_proto::timestamp),
            until: self.until.map(ordo_proto::timestamp),
            fingerprint: self.fingerprint.clone().unwrap_or_default(),
        };
        (filter != DeadLetterFilter::default()).then_some(filter)
    }
}

/// `ordo dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One line per cause (error fingerprint): count, first and last time, a sample id
    #[arg(long)]
    pub group: bool,
}

/// `ordo dlq redrive` and `ordo dlq purge`: ids, or a filter, or --all.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// Dead letter ids (repeatable); or select with the filter flags, or --all
    #[arg(value_name = "ID")]
    pub ids: Vec<u64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every dead letter
    #[arg(long)]
    pub all: bool,
    /// Why (1-512 characters): kept in each order's audit trail
    #[arg(long, required = true)]
    pub reason: String,
    /// Say what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many dead letters per second (1-1000; default: the service's, 50)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: Option<u32>,
}

/// `ordo parked …`.
#[derive(Debug, Subcommand)]
pub enum ParkedCommand {
    /// Every parked event, oldest first
    List(ParkedTarget),
    /// Put a parked event back into its outbox, to be published again
    Redrive(ParkedAction),
    /// Drop a parked event for good
    Discard(ParkedAction),
}

/// Whose outbox.
#[derive(Debug, Args)]
pub struct ParkedTarget {
    /// The service whose outbox it is
    #[arg(long, value_enum)]
    pub service: ParkedService,
}

/// One parked event and why.
#[derive(Debug, Args)]
pub struct ParkedAction {
    #[command(flatten)]
    pub target: ParkedTarget,
    /// The parked event's id
    pub id: u64,
    /// Why (1-512 characters), logged with the token's name
    #[arg(long, required = true)]
    pub reason: String,
}

/// A service with an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParkedService {
    Order,
    Processor,
}

fn positive_duration(raw: &str) -> Result<Duration, String> {
    let duration = crate::time::parse_duration(raw)?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

fn time_arg(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::time::parse_time(raw, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ordo").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["dlq", "list", "-o", "json", "--processor", "http://p:1"]).unwrap();
        assert_eq!(cli.global.output, Format::Json);
        assert_eq!(cli.global.processor_url, "http://p:1");
    }

    #[test]
    fn a_bulk_run_needs_a_reason() {
        let error = parse(&["dlq", "purge", "--all"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["dlq", "list", "--since", "yesterday"][..],
            &["dlq", "redrive", "--all", "--reason", "x", "--rate", "0"],
            &["dlq", "redrive", "--all", "--reason", "x", "--rate", "1001"],
            &["order", "list", "--limit", "0"],
            &["order", "list", "--status", "lost"],
            &["lag", "--timeout", "0s"],
            &["lag", "--token", "a", "--token-file", "b"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn filters_become_the_api_filter() {
        let cli = parse(&[
            "dlq",
            "redrive",
            "--code",
            "payment_timeout",
            "--since",
            "2025-05-01T00:00:00Z",
            "--reason",
            "provider back",
        ])
        .unwrap();
        let Command::Dlq(DlqCommand::Redrive(bulk)) = cli.command else {
            panic!("parsed as redrive");
        };
        let filter = bulk.filter.to_proto().unwrap();
        assert_eq!(filter.code, "payment_timeout");
        assert_eq!(filter.since.unwrap().seconds, 1_746_057_600);
        assert_eq!(FilterArgs::default().to_proto(), None);
    }
}
