//! Connecting a Rust client to an Ordo service (or to a payment provider),
//! plaintext or TLS, the same way in the processor, the tools and the
//! examples.
//!
//! An `http://` URL is plaintext. An `https://` URL is TLS: the server's
//! certificate is checked against [`ClientTls::ca_file`] (the public web
//! roots when unset) and must be issued for the URL's host (or for
//! [`ClientTls::server_name`]); with a certificate and key the client
//! proves itself too (mutual TLS).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ordo_proto::OrderServiceClient;
//! use ordo_proto::client::{ClientTls, endpoint};
//!
//! let tls = ClientTls {
//!     ca_file: Some("ca.crt".into()),
//!     ..ClientTls::default()
//! };
//! let channel = endpoint("https://orders.example:50051", &tls)?.connect().await?;
//! let client = OrderServiceClient::new(channel);
//! # let _ = client; Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// TLS files of a client; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CAs that may have issued the server's certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// The client's certificate (PEM), for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when the URL's host
    /// is not it (an IP address, a tunnel).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Whether any TLS file or name is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name.is_some()
    }

    /// Reads `<PREFIX>_TLS_CA_FILE`, `_TLS_CERT_FILE`, `_TLS_KEY_FILE` and
    /// `_TLS_SERVER_NAME` from the process environment (for tools and
    /// examples; services read their settings through their own lookup).
    pub fn from_env(prefix: &str) -> Self {
        let var = |suffix: &str| {
            std::env::var(format!("{prefix}_TLS_{suffix}"))
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Self {
            ca_file: var("CA_FILE").map(PathBuf::from),
            cert_file: var("CERT_FILE").map(PathBuf::from),
            key_file: var("KEY_FILE").map(PathBuf::from),
            server_name: var("SERVER_NAME"),
        }
    }
}

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not an http:// or https:// URL")]
    Url(String),
    #[error("TLS files are set for the plaintext URL {0}: use https://")]
    TlsForPlaintext(String),
    #[error("a client certificate needs both its certificate file and its key file")]
    HalfIdentity,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot use the TLS settings: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// An endpoint for `url` (connect it, or `connect_lazy`), TLS for https.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, ClientError> {
    let secure = url.starts_with("https://");
    if !secure && !url.starts_with("http://") {
        return Err(ClientError::Url(url.to_owned()));
    }
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|_| ClientError::Url(url.to_owned()))?;
    if !secure {
        if tls.is_set() {
            return Err(ClientError::TlsForPlaintext(url.to_owned()));
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
        None => config.with_webpki_roots(),
    };
    config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => config.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => config,
        _ => return Err(ClientError::HalfIdentity),
    };
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(endpoint.tls_config(config)?)
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_files_must_agree() {
        let none = ClientTls::default();
        assert!(endpoint("http://127.0.0.1:1", &none).is_ok());
        assert!(endpoint("https://127.0.0.1:1", &none).is_ok(), "web roots");
        assert!(matches!(
            endpoint("grpc://127.0.0.1:1", &none),
            Err(ClientError::Url(_))
        ));
        let ca = ClientTls {
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..ClientTls::default()
        };
        assert!(matches!(
            endpoint("http://127.0.0.1:1", &ca),
            Err(ClientError::TlsForPlaintext(_))
        ));
        assert!(matches!(
            endpoint("https://127.0.0.1:1", &ca),
            Err(ClientError::Read { .. })
        ));
        let half = ClientTls {
            cert_file: Some("/etc/hostname".into()),
            ..ClientTls::default()
        };
        assert!(matches!(
            endpoint("https://127.0.0.1:1", &half),
            Err(ClientError::HalfIdentity)
        ));
    }
}
