//! `--tls`: the run with its connections secured, so every fault is also a
//! reconnect over TLS. A CA made for the run issues the servers' and the
//! clients' certificates; PostgreSQL accepts TLS only and is checked with
//! `verify-full`; NATS requires TLS on every node's client port; the order
//! services and processors serve mutual TLS, and the run's own clients
//! present a certificate.
//!
//! The processor → payments link stays plaintext: the proxy between them
//! loses answers by reading HTTP/2 frames, which it cannot do inside TLS.

use ordo_proto::client::ClientTls;
use ordo_service_kit::nats::NatsSecurity;
use ordo_testkit::certs::{CertFiles, Pki, TestCa};

/// The run's certificates.
pub struct RunSecurity {
    _pki: Pki,
    ca: TestCa,
    server: CertFiles,
    client: CertFiles,
}

impl RunSecurity {
    pub fn new() -> anyhow::Result<Self> {
        let issue = |err| anyhow::anyhow!("cannot make the run's certificates: {err}");
        let pki = Pki::new()?;
        let ca = pki.ca("chaos").map_err(issue)?;
        let server = ca
            .issue("server", &["127.0.0.1", "localhost"])
            .map_err(issue)?;
        let client = ca.issue("client", &["ordo-chaos"]).map_err(issue)?;
        Ok(Self {
            _pki: pki,
            ca,
            server,
            client,
        })
    }

    /// The servers' certificate (PostgreSQL, NATS, gRPC).
    pub fn server(&self) -> &CertFiles {
        &self.server
    }

    /// What each nats-server adds to its configuration.
    pub fn nats_config(&self) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            self.server.cert.display(),
            self.server.key.display()
        )
    }

    /// `DATABASE_URL`'s TLS parameters.
    pub fn database_parameters(&self) -> String {
        format!(
            "?sslmode=verify-full&sslrootcert={}",
            self.ca.ca_file().display()
        )
    }

    /// The settings every service of the run gets: mutual TLS on its
    /// gRPC server, NATS checked against the run's CA.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let path = |path: &std::path::Path| path.display().to_string();
        [
            ("GRPC_TLS_CERT_FILE", path(&self.server.cert)),
            ("GRPC_TLS_KEY_FILE", path(&self.server.key)),
            ("GRPC_TLS_CLIENT_CA_FILE", path(self.ca.ca_file())),
            ("NATS_TLS_CA_FILE", path(self.ca.ca_file())),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// How the run's own gRPC clients connect.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_file: Some(self.ca.ca_file().to_owned()),
            cert_file: Some(self.client.cert.clone()),
            key_file: Some(self.client.key.clone()),
            server_name: None,
        }
    }

    /// How the run's own NATS clients connect.
    pub fn nats_security(&self) -> NatsSecurity {
        NatsSecurity {
            tls_ca_file: Some(self.ca.ca_file().to_owned()),
            tls_required: true,
            ..NatsSecurity::default()
        }
    }
}
