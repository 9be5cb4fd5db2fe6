//! The `payments-sim` binary's command line: `--help` lists every declared
//! setting, `--version` names the commit, `--check-config` checks the
//! environment without connecting to anything, and nothing else is taken.

use ordo_testkit::command_line::CommandLine;
use payments_sim::settings::reference::SETTINGS;

fn binary() -> CommandLine<'static> {
    CommandLine {
        exe: env!("CARGO_BIN_EXE_payments-sim"),
        version_line: concat!(
            "payments-sim ",
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
    binary().refuses("PAYMENTS_ERROR_RATE", "nonsense");
}

#[test]
fn check_config_connects_to_nothing() {
    binary().connects_to_nothing(|addr| {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]
    });
}

#[test]
fn an_unknown_argument_is_refused() {
    binary().refuses_argument("--serve");
}
