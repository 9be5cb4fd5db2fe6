//! Exit codes scripts can rely on, and the one error type every command
//! returns. A gRPC status becomes an exit code here and nowhere else.

use std::fmt;

use tonic::Code;

/// The process exit code, by what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// A call failed, or something failed in a bulk run.
    Failed = 1,
    /// The command line (or a service's INVALID_ARGUMENT) was wrong; nothing
    /// was changed.
    Usage = 2,
    /// NOT_FOUND.
    NotFound = 3,
    /// UNAUTHENTICATED or PERMISSION_DENIED: the admin token.
    Denied = 4,
    /// UNAVAILABLE: no service that was asked answered.
    Unavailable = 5,
}

impl Exit {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit code a failed call with `code` ends the command with.
    pub fn from_grpc(code: Code) -> Self {
        match code {
            Code::Ok => Self::Ok,
            Code::InvalidArgument => Self::Usage,
            Code::NotFound => Self::NotFound,
            Code::Unauthenticated | Code::PermissionDenied => Self::Denied,
            Code::Unavailable => Self::Unavailable,
            _ => Self::Failed,
        }
    }
}

/// Exit codes as `ordo --help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok
  1  a call failed, or something failed in a bulk run (redrive, purge)
  2  usage error, nothing was called (also a service's INVALID_ARGUMENT)
  3  not found (NOT_FOUND)
  4  unauthenticated or permission denied: check the admin token
  5  unavailable: no service that was asked answered

Admin calls send `authorization: Bearer <token>` with the token from
--token, --token-file, ORDO_ADMIN_TOKEN or ORDO_ADMIN_TOKEN_FILE (in that order).
`-o json` prints one JSON document (warnings inside it and on stderr).";

/// Why a command did not finish as asked.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something impossible; nothing was called.
    #[error("{0}")]
    Usage(String),
    /// A call failed.
    #[error("{context}: {}", StatusText(.status))]
    Rpc {
        /// What was being asked, e.g. "processor GetStatus".
        context: String,
        status: tonic::Status,
    },
    /// No service that was asked answered.
    #[error("{0}")]
    Unavailable(String),
    /// Something was not found (the services answered).
    #[error("{0}")]
    NotFound(String),
    /// Part of a bulk run failed; its outcomes were printed.
    #[error("{0}")]
    Failed(String),
    /// Stdout went away or could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// A failed call of `context`.
    pub fn rpc(context: impl Into<String>, status: tonic::Status) -> Self {
        Self::Rpc {
            context: context.into(),
            status,
        }
    }

    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Rpc { status, .. } => Exit::from_grpc(status.code()),
            Self::Unavailable(_) => Exit::Unavailable,
            Self::NotFound(_) => Exit::NotFound,
            Self::Failed(_) | Self::Output(_) => Exit::Failed,
        }
    }

    /// Whether the error is only the reader of stdout having gone (`| head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(error) if error.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// A status as one line: its code's name, its message, and a hint for
/// the codes an operator can fix.
pub struct StatusText<'a>(pub &'a tonic::Status);

impl fmt::Display for StatusText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0;
        write!(f, "{}", code_name(status.code()))?;
        let mut message = status.message().to_owned();
        // A transport failure's status says "tcp connect error"; its
        // sources say why (connection refused, a certificate not trusted).
        let mut source = std::error::Error::source(status);
        while let Some(error) = source {
            let text = error.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
            source = error.source();
        }
        let message = crate::render::one_line(&message);
        if !message.is_empty() {
            write!(f, ": {message}")?;
        }
        match status.code() {
            Code::Unauthenticated => f.write_str(
                " (give the service's admin token: --token, --token-file, ORDO_ADMIN_TOKEN or ORDO_ADMIN_TOKEN_FILE)",
            ),
            Code::PermissionDenied => {
                f.write_str(" (the service has no admin token configured, or refuses this one)")
            }
            _ => Ok(()),
        }
    }
}

/// A gRPC code as its canonical name in lower case, e.g. `not_found`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_onto_the_documented_exit_codes() {
        let cases = [
            (Code::Ok, 0),
            (Code::Internal, 1),
            (Code::DeadlineExceeded, 1),
            (Code::FailedPrecondition, 1),
            (Code::Unknown, 1),
            (Code::InvalidArgument, 2),
            (Code::NotFound, 3),
            (Code::Unauthenticated, 4),
            (Code::PermissionDenied, 4),
            (Code::Unavailable, 5),
        ];
        for (code, exit) in cases {
            assert_eq!(Exit::from_grpc(code).code(), exit, "{code:?}");
        }
    }

    #[test]
    fn errors_carry_their_exit_code() {
        assert_eq!(CliError::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(CliError::Failed("x".into()).exit(), Exit::Failed);
        assert_eq!(CliError::Unavailable("x".into()).exit(), Exit::Unavailable);
        assert_eq!(CliError::NotFound("x".into()).exit(), Exit::NotFound);
        let denied = CliError::rpc("processor GetStatus", tonic::Status::unauthenticated("bad"));
        assert_eq!(denied.exit(), Exit::Denied);
        let text = denied.to_string();
        assert!(
            text.starts_with("processor GetStatus: unauthenticated: bad (give"),
            "{text}"
        );
    }

    #[test]
    fn a_status_message_is_shown_on_one_line() {
        let status = tonic::Status::internal("first\nsecond\x1b[31m");
        assert_eq!(
            StatusText(&status).to_string(),
            "internal: first second\u{fffd}[31m"
        );
    }

    #[test]
    fn a_broken_pipe_is_told_apart() {
        let pipe = CliError::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
        assert!(!CliError::Failed("x".into()).is_broken_pipe());
    }
}
