//! The command line of every Ordo service binary. With no argument it
//! serves; with one it answers and exits:
//!
//! - `--help`, `-h`: usage, and every setting with its default and meaning
//!   (from the binary's [`Reference`]).
//! - `--version`, `-V`: `<binary> <version> (<git commit>)`.
//! - `--check-config`: reads the settings from the environment, prints `ok`
//!   or the bad one (exit 2), connecting to nothing.
//! - `--list-settings`: every setting's name, one per line.
//! - `--settings-markdown`: the README's table of the settings.
//!
//! Anything else is refused with the usage (exit 2): a typo never starts a
//! service, nor migrates its database.

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use crate::reference::Reference;

/// A service binary, as its command line describes it.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    pub reference: &'static Reference,
    /// The package's `CARGO_PKG_VERSION`.
    pub version: &'static str,
    /// The git commit it was built from: `ORDO_GIT_COMMIT`, which the
    /// shared build script (`crates/service-kit/build/git_commit.rs`) sets.
    pub commit: &'static str,
}

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    CheckConfig,
    Help,
    Version,
    ListSettings,
    SettingsMarkdown,
}

/// An argument that is not one of ours, or one too many.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected argument {0:?}")]
pub struct UsageError(pub String);

/// What `main` does next.
#[derive(Debug)]
pub enum Start<S> {
    /// Serve with these settings.
    Serve(S),
    /// Exit now with this code: the command line was answered or refused.
    Exit(ExitCode),
}

/// The command `args` (without the program name) ask for.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Ok(Command::Serve);
    };
    if let Some(extra) = args.next() {
        return Err(UsageError(extra.to_string_lossy().into_owned()));
    }
    match first.to_str() {
        Some("--check-config") => Ok(Command::CheckConfig),
        Some("-h" | "--help") => Ok(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("--list-settings") => Ok(Command::ListSettings),
        Some("--settings-markdown") => Ok(Command::SettingsMarkdown),
        _ => Err(UsageError(first.to_string_lossy().into_owned())),
    }
}

/// `<name> <version> (<commit>)`, as `--version` prints it.
pub fn version_line(name: &str, version: &str, commit: &str) -> String {
    format!("{name} {version} ({commit})")
}

const OPTIONS: &str = "\
Options:
  --check-config       read the settings from the environment and check them: print ok,
                       or the bad one and exit 2; connects to nothing
  --list-settings      print every setting's name, one per line
  --settings-markdown  print the settings as the README's Markdown table
  -h, --help           print this help
  -V, --version        print the version and the git commit";

impl Binary {
    /// The `--version` line.
    pub fn version_line(&self) -> String {
        version_line(self.reference.binary, self.version, self.commit)
    }

    /// The usage line, as a refused command line shows it.
    pub fn usage(&self) -> String {
        let name = self.reference.binary;
        format!(
            "Usage: {name} [--check-config | --list-settings | --settings-markdown | --help | --version]\n\
             With no option it serves until SIGINT or SIGTERM; `{name} --help` lists every setting."
        )
    }

    /// The whole `--help`.
    pub fn help(&self) -> String {
        format!(
            "{}: {}\n\n{}\n\n{OPTIONS}\n\n{}",
            self.version_line(),
            self.reference.about,
            self.usage(),
            self.reference.help()
        )
    }

    /// Answers the command line `args` (without the program name): the
    /// settings `read` gives, to serve with, or the code to exit with. A
    /// setting `read` refuses is printed with the binary's name (exit 2).
    pub fn start<S, E: Display>(
        &self,
        args: impl IntoIterator<Item = OsString>,
        read: impl FnOnce() -> Result<S, E>,
    ) -> Start<S> {
        let name = self.reference.binary;
        let refused = |err: &dyn Display| {
            eprintln!("{name}: {err}");
            ExitCode::from(2)
        };
        let command = match parse(args) {
            Ok(command) => command,
            Err(err) => return Start::Exit(refused(&format!("{err}\n\n{}", self.usage()))),
        };
        let answer = match command {
            Command::Serve => {
                return match read() {
                    Ok(settings) => Start::Serve(settings),
                    Err(err) => Start::Exit(refused(&err)),
                };
            }
            Command::CheckConfig => match read() {
                Ok(_) => "ok".to_owned(),
                Err(err) => return Start::Exit(refused(&err)),
            },
            Command::Help => self.help(),
            Command::Version => self.version_line(),
            Command::ListSettings => self.reference.names().join("\n"),
            Command::SettingsMarkdown => self.reference.markdown(),
        };
        Start::Exit(print(answer.trim_end()))
    }
}

/// Prints `text` and a newline; a closed stdout is a failure, not a panic.
fn print(text: &str) -> ExitCode {
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Setting;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn each_option_is_one_command_and_anything_else_is_refused() {
        assert_eq!(parse(args(&[])), Ok(Command::Serve));
        for (arg, command) in [
            ("--check-config", Command::CheckConfig),
            ("-h", Command::Help),
            ("--help", Command::Help),
            ("-V", Command::Version),
            ("--version", Command::Version),
            ("--list-settings", Command::ListSettings),
            ("--settings-markdown", Command::SettingsMarkdown),
        ] {
            assert_eq!(parse(args(&[arg])), Ok(command), "{arg}");
        }
        for refused in [
            &["--halp"][..],
            &["serve"],
            &["-hV"],
            &["--help", "--version"],
        ] {
            assert!(parse(args(refused)).is_err(), "{refused:?}");
        }
        assert_eq!(
            parse(args(&["--help", "extra"])),
            Err(UsageError("extra".into()))
        );
    }

    #[test]
    fn help_says_what_the_binary_is_and_lists_its_settings() {
        const REFERENCE: Reference = Reference {
            binary: "demo",
            about: "does one thing",
            groups: &[&[Setting::value("DEMO_PORT", "8080", "the port")]],
        };
        let binary = Binary {
            reference: &REFERENCE,
            version: "1.2.3",
            commit: "abc1234",
        };
        assert_eq!(binary.version_line(), "demo 1.2.3 (abc1234)");
        let help = binary.help();
        assert!(
            help.starts_with("demo 1.2.3 (abc1234): does one thing\n"),
            "{help}"
        );
        assert!(help.contains("--check-config"), "{help}");
        assert!(help.contains("DEMO_PORT  (default: 8080)"), "{help}");
    }
}
