//! Connecting to NATS as every Ordo process does. `NATS_URL` names one
//! server or several, comma-separated (`nats://a:4222,nats://b:4222`): the
//! client starts with any that answers and learns the rest of a cluster
//! from it, so a list of seeds survives any one node being down.
//!
//! [`NatsSecurity`] is how the connection is secured: TLS (`tls://` URLs,
//! or any of `NATS_TLS_CA_FILE`, `NATS_TLS_CERT_FILE`, `NATS_TLS_KEY_FILE`)
//! and one way to authenticate — a credentials file (`NATS_CREDS_FILE`),
//! an nkey seed (`NATS_NKEY_SEED_FILE`), a user and password (`NATS_USER`,
//! `NATS_PASSWORD_FILE`) or a token (`NATS_TOKEN_FILE`).
//!
//! [`connect_service`] is how a service connects at start-up: a server
//! that refuses who we are (credentials, TLS) stops the start with a clear
//! error; a server that is not there yet is waited for in the background.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_nats::{Client, ConnectError, ConnectErrorKind, ConnectOptions, ServerAddr};

use crate::{Lookup, SettingsError};

/// How a connection to NATS is secured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsSecurity {
    /// `NATS_TLS_CA_FILE`: the CAs that may have issued the server's
    /// certificate (default: the system's web roots).
    pub tls_ca_file: Option<PathBuf>,
    /// `NATS_TLS_CERT_FILE`, `NATS_TLS_KEY_FILE`: a client certificate, for
    /// servers that verify clients.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// TLS is required: a `tls://` URL or any TLS file set.
    pub tls_required: bool,
    /// Who we are to the server, if it asks.
    pub credential: Option<NatsCredential>,
}

/// One way to authenticate to NATS.
#[derive(Clone, PartialEq, Eq)]
pub enum NatsCredential {
    /// `NATS_CREDS_FILE`: a user JWT and its nkey seed (`nsc` writes these).
    CredsFile(PathBuf),
    /// `NATS_NKEY_SEED_FILE`: an nkey seed (`SU…`).
    NkeySeedFile(PathBuf),
    /// `NATS_USER` with `NATS_PASSWORD` (or `NATS_PASSWORD_FILE`).
    UserPassword { user: String, password: String },
    /// `NATS_TOKEN` (or `NATS_TOKEN_FILE`).
    Token(String),
}

impl std::fmt::Debug for NatsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
            Self::NkeySeedFile(path) => f.debug_tuple("NkeySeedFile").field(path).finish(),
            Self::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .finish_non_exhaustive(),
            Self::Token(_) => f.write_str("Token(..)"),
        }
    }
}

const ONE_CREDENTIAL: &str = "one way to authenticate: NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER (with NATS_PASSWORD_FILE) or NATS_TOKEN_FILE";

impl NatsSecurity {
    /// Reads the `NATS_TLS_*` and credential settings; `url_list` (already
    /// checked) tells whether a `tls://` URL asks for TLS.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Lookup<'_, F>,
        url_list: &str,
    ) -> Result<Self, SettingsError> {
        let tls_ca_file = env.file("NATS_TLS_CA_FILE")?;
        let tls_client = match (
            env.file("NATS_TLS_CERT_FILE")?,
            env.file("NATS_TLS_KEY_FILE")?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingsError::new(
                    "NATS_TLS_KEY_FILE",
                    "",
                    "the key of NATS_TLS_CERT_FILE: a client certificate needs both",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingsError::new(
                    "NATS_TLS_CERT_FILE",
                    "",
                    "the certificate of NATS_TLS_KEY_FILE: a client certificate needs both",
                ));
            }
        };
        let tls_url = url_list
            .split(',')
            .any(|url| url.trim().starts_with("tls://"));
        let mut credentials = Vec::new();
        if let Some(path) = env.file("NATS_CREDS_FILE")? {
            credentials.push(("NATS_CREDS_FILE", NatsCredential::CredsFile(path)));
        }
        if let Some(path) = env.file("NATS_NKEY_SEED_FILE")? {
            credentials.push(("NATS_NKEY_SEED_FILE", NatsCredential::NkeySeedFile(path)));
        }
        let password = env.parse("NATS_PASSWORD", "a password", |raw| Some(raw.to_owned()))?;
        match (
            env.parse("NATS_USER", "a user name", |raw| Some(raw.to_owned()))?,
            password,
        ) {
            (Some(user), Some(password)) => {
                credentials.push(("NATS_USER", NatsCredential::UserPassword { user, password }))
            }
            (Some(user), None) => {
                return Err(SettingsError::new(
                    "NATS_USER",
                    &user,
                    "NATS_PASSWORD_FILE (or NATS_PASSWORD) too",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingsError::new(
                    "NATS_PASSWORD",
                    "",
                    "NATS_USER too: a password is someone's",
                ));
            }
            (None, None) => {}
        }
        if let Some(token) = env.parse("NATS_TOKEN", "a token", |raw| Some(raw.to_owned()))? {
            credentials.push(("NATS_TOKEN", NatsCredential::Token(token)));
        }
        if credentials.len() > 1 {
            let names: Vec<&str> = credentials.iter().map(|(name, _)| *name).collect();
            return Err(SettingsError::new(
                names[1],
                &names.join(" and "),
                ONE_CREDENTIAL,
            ));
        }
        Ok(Self {
            tls_required: tls_url || tls_ca_file.is_some() || tls_client.is_some(),
            tls_ca_file,
            tls_client,
            credential: credentials.pop().map(|(_, credential)| credential),
        })
    }

    /// `options` with this TLS and credential added; reads the credential
    /// files now (so a rotated one is read at the next start).
    pub async fn apply(&self, mut options: ConnectOptions) -> std::io::Result<ConnectOptions> {
        if self.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(match &self.credential {
            None => options,
            Some(NatsCredential::CredsFile(path)) => options
                .credentials_file(path)
                .await
                .map_err(|err| named_io_error("NATS_CREDS_FILE", path, err))?,
            Some(NatsCredential::NkeySeedFile(path)) => {
                let seed = std::fs::read_to_string(path)
                    .map_err(|err| named_io_error("NATS_NKEY_SEED_FILE", path, err))?;
                options.nkey(seed.trim().to_owned())
            }
            Some(NatsCredential::UserPassword { user, password }) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Some(NatsCredential::Token(token)) => options.token(token.clone()),
        })
    }
}

fn named_io_error(setting: &str, path: &std::path::Path, err: std::io::Error) -> std::io::Error {
    std::io::Error::new(err.kind(), format!("{setting} {}: {err}", path.display()))
}

/// Why NATS last refused this process, if it did: kept for health and logs.
#[derive(Debug, Clone, Default)]
pub struct NatsRefusal(Arc<Mutex<Option<String>>>);

impl NatsRefusal {
    /// What the server last said against us (an authorization violation,
    /// say), until the next successful connect.
    pub fn reason(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, reason: Option<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }
}

/// Whether a failed connect says the server refused us (wrong
/// credentials, a TLS mismatch — a certificate it does not accept, or one
/// we do not): then waiting will not help.
pub fn is_refusal(err: &ConnectError) -> bool {
    matches!(
        err.kind(),
        ConnectErrorKind::Authentication
            | ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::Tls
            | ConnectErrorKind::ServerParse
    ) || comes_from_tls(err)
}

/// Whether a TLS error (an alert from the server, a certificate we
/// reject) is somewhere in `err`'s causes, an I/O error's among them.
fn comes_from_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && comes_from_tls(inner)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Connects a service: one attempt first, so a server that refuses us
/// fails the start with the reason; if no server answers, connects again
/// in the background (the service starts while NATS is down). While the
/// service runs, what the server says against it is logged and kept in
/// the returned [`NatsRefusal`].
pub async fn connect_service(
    url_list: &str,
    security: &NatsSecurity,
    name: &str,
) -> Result<(Client, NatsRefusal), String> {
    let refusal = NatsRefusal::default();
    let options = |refusal: NatsRefusal| {
        let name = name.to_owned();
        ConnectOptions::new()
            .name(name.clone())
            .event_callback(move |event| {
                let refusal = refusal.clone();
                let name = name.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => refusal.set(None),
                        async_nats::Event::ServerError(err) => {
                            tracing::error!(client = %name, error = %err, "NATS refused this connection");
                            refusal.set(Some(err.to_string()));
                        }
                        async_nats::Event::ClientError(err) => {
                            tracing::warn!(client = %name, error = %err, "NATS connection error");
                        }
                        other => tracing::debug!(client = %name, event = %other, "NATS connection"),
                    }
                }
            })
    };
    let with_security = |options: ConnectOptions| async {
        security
            .apply(options)
            .await
            .map_err(|err| format!("cannot read a NATS credential: {err}"))
    };
    match connect(url_list, with_security(options(refusal.clone())).await?).await {
        Ok(client) => Ok((client, refusal)),
        Err(err) if is_refusal(&err) => Err(format!(
            "NATS at NATS_URL refused the connection ({}): check NATS_TLS_* and the credential settings: {err}",
            err.kind()
        )),
        Err(err) => {
            tracing::warn!(error = %err, "NATS not reachable yet; connecting in the background");
            let options =
                with_security(options(refusal.clone()).retry_on_initial_connect()).await?;
            let client = connect(url_list, options)
                .await
                .map_err(|err| format!("cannot connect to NATS at NATS_URL: {err}"))?;
            Ok((client, refusal))
        }
    }
}

/// The servers of a `NATS_URL`, each parsed; the error names the first
/// that is not a NATS URL.
pub fn servers(url_list: &str) -> Result<Vec<ServerAddr>, String> {
    url_list
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(format!("{url:?} is not a nats:// or tls:// URL"));
            }
            url.parse::<ServerAddr>()
                .map_err(|err| format!("{url:?} is not a NATS server URL: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|servers| {
            if servers.is_empty() {
                Err("no NATS server URL".to_owned())
            } else {
                Ok(servers)
            }
        })
}

/// Connects to the servers of `url_list` with `options`.
pub async fn connect(url_list: &str, options: ConnectOptions) -> Result<Client, ConnectError> {
    let servers = servers(url_list)
        .map_err(|why| ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, why))?;
    options.connect(servers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_servers_is_several_servers() {
        let parsed =
            servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223,tls://nats.example:4222")
                .unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].port(), 4223);
        assert!(servers("nats://127.0.0.1:4222,not a url:x").is_err());
        assert!(servers(" , ").is_err());
        assert!(servers("0").is_err());
        assert!(
            servers("127.0.0.1:4222").is_err(),
            "the scheme says what is meant"
        );
    }
}
