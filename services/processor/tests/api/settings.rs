//! The `processor` binary's command line: `--help` lists every declared
//! setting, `--version` names the commit, `--check-config` checks the
//! environment without connecting to anything, and nothing else is taken.

use ordo_testkit::command_line::CommandLine;
use processor::settings::reference::SETTINGS;

fn binary() -> CommandLine<'static> {
    CommandLine {
        exe: env!("CARGO_BIN_EXE_processor"),
        version_line: concat!(
            "processor ",
            env!("CARGO_PKG_VERSION"),
            " (",
            env!("ORDO_GIT_COMMIT"),
            ")"
        ),
    }
}

#[test]
fn help_lists_every_setting() {
    binary().help_lists(&SETTINGS.names());
}

#[test]
fn version_names_the_commit() {
    binary().prints_its_version();
}

#[test]
fn check_config_takes_the_defaults_and_names_a_bad_setting() {
    binary().accepts(&[]);
    binary().refuses("GRPC_LISTEN_ADDR", "nonsense");
    binary().refuses("PROCESSOR_MAX_ATTEMPTS", "nonsense");
}

#[test]
fn check_config_connects_to_nothing() {
    binary().connects_to_nothing(|addr| {
        vec![
            ("DATABASE_URL", format!("postgres://ordo:pw@{addr}/ordo")),
            ("NATS_URL", format!("nats://{addr}")),
            ("PAYMENTS_URL", format!("http://{addr}")),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ]
    });
}

#[test]
fn an_unknown_argument_is_refused() {
    binary().refuses_argument("--serve");
}
