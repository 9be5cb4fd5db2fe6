//! Reaching the services: their URLs, TLS (through
//! [`ordo_proto::client::endpoint`]), the admin token, and a deadline on
//! each unary call.
//!
//! Channels connect lazily, so a service that cannot be reached shows up as
//! an `UNAVAILABLE` answer of the call, like any other, and a command asking
//! two services can go on with the one that answers.

use std::path::Path;
use std::time::Duration;

use ordo_proto::client::{ClientTls, endpoint};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::exit::CliError;

/// The most bytes one answer may have: a page of dead letters is cut at
/// 3 MiB by the processor, an order's trail is not cut at all.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// How long a connection attempt may take before the call is UNAVAILABLE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The two services the command line talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// order-service.
    Orders,
    /// processor.
    Processor,
}

impl Service {
    /// The service's name, as its spans and answers carry it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Orders => "order-service",
            Self::Processor => "processor",
        }
    }
}

/// An admin token; never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from text (surrounding whitespace, such as a file's final
    /// newline, removed); it must fit in a header.
    pub fn parse(raw: &str, source: &str) -> Result<Self, CliError> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(CliError::Usage(format!(
                "the admin token from {source} is empty"
            )));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(CliError::Usage(format!(
                "the admin token from {source} has characters a header cannot carry"
            )));
        }
        Ok(Self(token.to_owned()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The admin token, from the first of: `--token`, `--token-file`,
/// `ORDO_ADMIN_TOKEN`, `ORDO_ADMIN_TOKEN_FILE` (both variables set is an
/// error, as in the services); `None` when none is given.
pub fn resolve_token(
    flag: Option<&str>,
    flag_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Token>, CliError> {
    if let Some(token) = flag {
        return Token::parse(token, "--token").map(Some);
    }
    if let Some(path) = flag_file {
        return read_token(path, "--token-file").map(Some);
    }
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    match (set("ORDO_ADMIN_TOKEN"), set("ORDO_ADMIN_TOKEN_FILE")) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "both ORDO_ADMIN_TOKEN and ORDO_ADMIN_TOKEN_FILE are set: set one".to_owned(),
        )),
        (Some(token), None) => Token::parse(&token, "ORDO_ADMIN_TOKEN").map(Some),
        (None, Some(path)) => read_token(Path::new(&path), "ORDO_ADMIN_TOKEN_FILE").map(Some),
        (None, None) => Ok(None),
    }
}

fn read_token(path: &Path, source: &str) -> Result<Token, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the admin token file {} ({source}): {error}",
            path.display()
        ))
    })?;
    Token::parse(&text, &format!("{} ({source})", path.display()))
}

/// Where the services are and how to talk to them.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The order service's URL.
    pub order_url: String,
    /// The processor's URL.
    pub processor_url: String,
    /// TLS files for `https://` URLs (the same for both services).
    pub tls: ClientTls,
    /// The admin token, sent with admin calls.
    pub token: Option<Token>,
    /// The deadline of each unary call.
    pub timeout: Duration,
}

impl Connection {
    /// A lazily connecting channel to `service`; a bad URL or unreadable
    /// TLS file is a usage error.
    pub fn channel(&self, service: Service) -> Result<Channel, CliError> {
        let url = self.url(service);
        let endpoint = endpoint(url, &self.tls)
            .map_err(|error| CliError::Usage(format!("{} at {url}: {error}", service.name())))?;
        Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).connect_lazy())
    }

    /// The URL of `service`.
    pub fn url(&self, service: Service) -> &str {
        match service {
            Service::Orders => &self.order_url,
            Service::Processor => &self.processor_url,
        }
    }

    /// A unary request open to anyone, with the call's deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// A unary admin request: the deadline and the token (without a token
    /// the service answers UNAUTHENTICATED, which says what to do).
    pub fn admin<T>(&self, message: T) -> tonic::Request<T> {
        self.authorize(self.request(message))
    }

    /// A streaming admin request: the token, no deadline (a bulk run takes
    /// as long as its rate makes it).
    pub fn admin_stream<T>(&self, message: T) -> tonic::Request<T> {
        self.authorize(tonic::Request::new(message))
    }

    fn authorize<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        if let Some(Token(token)) = &self.token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn token_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ordo-cli-token-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn fastrand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[test]
    fn the_flag_wins_then_the_file_then_the_variables() {
        let file = token_file("from-file-0123456789\n");
        let both = env(&[("ORDO_ADMIN_TOKEN", "from-env-0123456789")]);
        assert_eq!(
            resolve_token(Some("from-flag"), Some(&file), &both).unwrap(),
            Some(Token("from-flag".into()))
        );
        assert_eq!(
            resolve_token(None, Some(&file), &both).unwrap(),
            Some(Token("from-file-0123456789".into())),
            "the file's newline is not part of the token"
        );
        assert_eq!(
            resolve_token(None, None, &both).unwrap(),
            Some(Token("from-env-0123456789".into()))
        );
        let path = file.display().to_string();
        let file_env = env(&[("ORDO_ADMIN_TOKEN_FILE", &path)]);
        assert_eq!(
            resolve_token(None, None, &file_env).unwrap(),
            Some(Token("from-file-0123456789".into()))
        );
        assert_eq!(resolve_token(None, None, &env(&[])).unwrap(), None);
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn both_variables_or_a_bad_token_are_usage_errors() {
        let both = env(&[
            ("ORDO_ADMIN_TOKEN", "a-token-0123456789"),
            ("ORDO_ADMIN_TOKEN_FILE", "/nonexistent"),
        ]);
        assert!(matches!(
            resolve_token(None, None, &both),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            resolve_token(Some("with space"), None, &env(&[])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            resolve_token(None, Some(Path::new("/nonexistent/token")), &env(&[])),
            Err(CliError::Usage(_))
        ));
        let empty = token_file("\n");
        assert!(matches!(
            resolve_token(None, Some(&empty), &env(&[])),
            Err(CliError::Usage(_))
        ));
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn a_token_is_never_shown() {
        let token = Token::parse("secret-0123456789", "test").unwrap();
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    #[test]
    fn admin_requests_carry_the_bearer_token_and_others_do_not() {
        let connection = Connection {
            order_url: "http://127.0.0.1:1".into(),
            processor_url: "http://127.0.0.1:2".into(),
            tls: ClientTls::default(),
            token: Some(Token("t-0123456789".into())),
            timeout: Duration::from_secs(3),
        };
        let admin = connection.admin(());
        assert_eq!(
            admin.metadata().get("authorization").unwrap(),
            "Bearer t-0123456789"
        );
        assert!(admin.metadata().get("grpc-timeout").is_some());
        assert!(
            connection
                .request(())
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert!(
            connection
                .admin_stream(())
                .metadata()
                .get("grpc-timeout")
                .is_none()
        );
    }

    #[test]
    fn a_bad_url_is_a_usage_error() {
        let connection = Connection {
            order_url: "127.0.0.1:50051".into(),
            processor_url: "http://127.0.0.1:50052".into(),
            tls: ClientTls::default(),
            token: None,
            timeout: Duration::from_secs(3),
        };
        assert!(matches!(
            connection.channel(Service::Orders),
            Err(CliError::Usage(_))
        ));
    }
}
