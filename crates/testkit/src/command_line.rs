//! A service binary's command line, checked by running the built binary
//! (`env!("CARGO_BIN_EXE_<name>")` in its package's integration tests)
//! with nothing but the environment a check gives it.
//!
//! Every run has a deadline: `--check-config` must answer at once, never
//! wait for a database or a broker.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest any run may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// One binary and what its command line must say.
#[derive(Debug, Clone, Copy)]
pub struct CommandLine<'a> {
    /// The binary's path.
    pub exe: &'a str,
    /// What `--version` prints: `<binary> <version> (<commit>)`.
    pub version_line: &'a str,
}

impl CommandLine<'_> {
    /// Runs the binary with `args` and only `env`, within the deadline.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let child = Command::new(self.exe)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.exe));
        let pid = child.id();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || sender.send(child.wait_with_output()));
        match receiver.recv_timeout(DEADLINE) {
            Ok(output) => output.unwrap_or_else(|err| panic!("{}: {err}", self.exe)),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("{} {args:?} did not exit within {DEADLINE:?}", self.exe);
            }
        }
    }

    /// `--help` and `-h` succeed and name every setting in `names`, and
    /// say once that each may come from a `_FILE`.
    pub fn help_lists(&self, names: &[&str]) {
        let help = self.run(&["--help"], &[]);
        assert!(help.status.success(), "{help:?}");
        let text = String::from_utf8_lossy(&help.stdout);
        for name in names {
            assert!(
                text.contains(&format!("\n  {name}  (default: ")),
                "{name} missing from:\n{text}"
            );
        }
        assert!(text.contains("NAME_FILE"), "{text}");
        assert!(text.contains("--check-config"), "{text}");
        assert_eq!(self.run(&["-h"], &[]).stdout, help.stdout);
    }

    /// `--version` and `-V` print the version line.
    pub fn prints_its_version(&self) {
        for flag in ["--version", "-V"] {
            let version = self.run(&[flag], &[]);
            assert!(version.status.success(), "{version:?}");
            assert_eq!(
                String::from_utf8_lossy(&version.stdout),
                format!("{}\n", self.version_line)
            );
        }
    }

    /// `--check-config` with `env` prints `ok` and exits 0.
    pub fn accepts(&self, env: &[(&str, &str)]) {
        let checked = self.run(&["--check-config"], env);
        assert!(checked.status.success(), "{env:?}: {checked:?}");
        assert_eq!(String::from_utf8_lossy(&checked.stdout), "ok\n");
    }

    /// `--check-config` with `name=value` exits 2 naming `name`.
    pub fn refuses(&self, name: &str, value: &str) {
        let checked = self.run(&["--check-config"], &[(name, value)]);
        assert_eq!(checked.status.code(), Some(2), "{checked:?}");
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(stderr.contains(name), "{name} not named in {stderr}");
        assert!(checked.stdout.is_empty(), "{checked:?}");
    }

    /// `--check-config` with every setting `env` makes of a listening
    /// address accepts them without connecting to it.
    pub fn connects_to_nothing(&self, env: impl FnOnce(SocketAddr) -> Vec<(&'static str, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .unwrap_or_else(|err| panic!("cannot listen: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("no address: {err}"));
        let env = env(addr);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.accepts(&pairs);
        let connection = listener.accept();
        assert!(
            connection
                .as_ref()
                .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock),
            "--check-config connected: {connection:?}"
        );
    }

    /// An argument that is not an option exits 2 with the usage.
    pub fn refuses_argument(&self, arg: &str) {
        let refused = self.run(&[arg], &[]);
        assert_eq!(refused.status.code(), Some(2), "{refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(arg) && stderr.contains("Usage:"),
            "{stderr}"
        );
        assert!(refused.stdout.is_empty(), "{refused:?}");
    }
}
