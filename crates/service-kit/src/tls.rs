//! TLS for Ordo's gRPC servers, read from PEM files that may be replaced
//! while the server runs.
//!
//! - [`ServerTls`]: `GRPC_TLS_CERT_FILE`, `GRPC_TLS_KEY_FILE`, and for mutual
//!   TLS `GRPC_TLS_CLIENT_CA_FILE`; `GRPC_TLS_RELOAD_INTERVAL` says how often
//!   the files are looked at again. Unset, the server speaks plaintext;
//!   set, it speaks only TLS (a plaintext client fails its handshake).
//! - [`incoming`] turns a listener into the connections tonic serves:
//!   handshakes run concurrently and time out, so a slow or silent client
//!   holds up nobody; a handshake that fails is logged and counted.
//! - Reloading: when any of the files changes (Kubernetes swaps a mounted
//!   Secret's files at once) and the new set loads, new connections get it;
//!   connections already open keep the session they have. A set that does
//!   not load (a half-written file) is logged and counted, and the last good
//!   one stays.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use ordo_telemetry::grpc::GrpcMetrics;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::{Lookup, SettingsError};

/// The longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond wait in the backlog.
const MAX_HANDSHAKES: usize = 256;

/// Where a server's certificate, key and (for mutual TLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// `GRPC_TLS_CERT_FILE`: the certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// `GRPC_TLS_KEY_FILE`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `GRPC_TLS_CLIENT_CA_FILE`: when set, every client must present a
    /// certificate issued by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// `GRPC_TLS_RELOAD_INTERVAL`: how often the files are read again.
    pub reload_interval: Duration,
}

impl ServerTls {
    /// `None` when neither file is set; both or neither must be.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Lookup<'_, F>,
    ) -> Result<Option<Self>, SettingsError> {
        let cert_file = env.file("GRPC_TLS_CERT_FILE")?;
        let key_file = env.file("GRPC_TLS_KEY_FILE")?;
        let client_ca_file = env.file("GRPC_TLS_CLIENT_CA_FILE")?;
        let reload_interval = env.duration(
            "GRPC_TLS_RELOAD_INTERVAL",
            Duration::ZERO,
            Duration::from_secs(10),
        )?;
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(Self {
                cert_file,
                key_file,
                client_ca_file,
                reload_interval,
            })),
            (None, None) => match client_ca_file {
                Some(path) => Err(SettingsError::new(
                    "GRPC_TLS_CLIENT_CA_FILE",
                    &path.display().to_string(),
                    "GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE too: client certificates are checked only over TLS",
                )),
                None => Ok(None),
            },
            (Some(_), None) => Err(SettingsError::new(
                "GRPC_TLS_KEY_FILE",
                "",
                "the key of GRPC_TLS_CERT_FILE: both are needed for TLS",
            )),
            (None, Some(_)) => Err(SettingsError::new(
                "GRPC_TLS_CERT_FILE",
                "",
                "the certificate of GRPC_TLS_KEY_FILE: both are needed for TLS",
            )),
        }
    }

    fn files(&self) -> Vec<&PathBuf> {
        [&self.cert_file, &self.key_file]
            .into_iter()
            .chain(self.client_ca_file.as_ref())
            .collect()
    }
}

/// Why a set of TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Content { path: String, what: String },
    #[error("cannot use the certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the files held when last read: their bytes, and the configuration
/// built from them.
struct Loaded {
    digest: [u8; 32],
    config: Arc<ServerConfig>,
}

/// Reads every file and builds the server configuration.
fn load(tls: &ServerTls) -> Result<Loaded, TlsError> {
    let mut digest = Sha256::new();
    let mut contents = Vec::new();
    for path in tls.files() {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        digest.update(&bytes);
        contents.push(bytes);
    }
    let content_error = |path: &PathBuf, what: String| TlsError::Content {
        path: path.display().to_string(),
        what,
    };
    let chain = certificates(&contents[0]).map_err(|what| content_error(&tls.cert_file, what))?;
    let key = PrivateKeyDer::from_pem_slice(&contents[1])
        .map_err(|err| content_error(&tls.key_file, format!("no private key ({err})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates(&contents[2]).map_err(|what| content_error(path, what))? {
                roots
                    .add(ca)
                    .map_err(|err| content_error(path, format!("not a CA certificate ({err})")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| content_error(path, err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        digest: digest.finalize().into(),
        config: Arc::new(config),
    })
}

/// Every certificate in a PEM file; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("not PEM certificates ({err})"))?;
    if certificates.is_empty() {
        return Err("no certificate in it".to_owned());
    }
    Ok(certificates)
}

/// A server's TLS: the files, what they last held, and counts.
#[derive(Clone)]
pub struct ReloadingTls {
    settings: ServerTls,
    current: Arc<RwLock<Loaded>>,
    metrics: Arc<GrpcMetrics>,
}

impl std::fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Loads the files once: a server does not start with files it cannot
    /// use. Handshakes and reloads are counted in `metrics`.
    pub fn load(settings: ServerTls, metrics: Arc<GrpcMetrics>) -> Result<Self, TlsError> {
        let loaded = load(&settings)?;
        metrics.tls.enabled.store(true, Relaxed);
        Ok(Self {
            settings,
            current: Arc::new(RwLock::new(loaded)),
            metrics,
        })
    }

    fn config(&self) -> Arc<ServerConfig> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&current.config)
    }

    /// Reads the files again and takes them into use if they changed and load.
    fn reload_if_changed(&self) {
        let digest = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .digest;
        match load(&self.settings) {
            Ok(loaded) if loaded.digest == digest => {}
            Ok(loaded) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded;
                self.metrics.tls.reloads.fetch_add(1, Relaxed);
                tracing::info!(
                    cert = %self.settings.cert_file.display(),
                    "TLS certificate files changed: new connections use them"
                );
            }
            Err(err) => {
                self.metrics.tls.reload_failures.fetch_add(1, Relaxed);
                tracing::warn!(error = %err, "TLS files changed but cannot be used; serving the previous ones");
            }
        }
    }
}

/// A connection tonic serves: plaintext, or TLS once its handshake is done.
pub enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The connections accepted on `listener`: TLS ones when `tls` is given.
/// The stream ends when the server stops reading it.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ReloadingTls>,
) -> Pin<Box<dyn Stream<Item = std::io::Result<Connection>> + Send>> {
    let (sender, receiver) = mpsc::channel(64);
    match tls {
        None => tokio::spawn(accept_plain(listener, sender)),
        Some(tls) => tokio::spawn(accept_tls(listener, tls, sender)),
    };
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

async fn accept_plain(listener: TcpListener, sender: mpsc::Sender<std::io::Result<Connection>>) {
    loop {
        tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    if sender.send(Ok(Connection::Plain(stream))).await.is_err() {
                        return;
                    }
                }
                Err(err) => accept_failed(err).await,
            },
        }
    }
}

async fn accept_tls(
    listener: TcpListener,
    tls: ReloadingTls,
    sender: mpsc::Sender<std::io::Result<Connection>>,
) {
    let mut handshakes = JoinSet::new();
    let mut reload = tokio::time::interval(tls.settings.reload_interval);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reload.tick().await;
    loop {
        tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept(), if handshakes.len() < MAX_HANDSHAKES => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    handshakes.spawn(async move {
                        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        (peer, handshake)
                    });
                }
                Err(err) => accept_failed(err).await,
            },
            Some(done) = handshakes.join_next() => {
                let Ok((peer, handshake)) = done else { continue };
                match handshake {
                    Ok(Ok(stream)) => {
                        if sender.send(Ok(Connection::Tls(Box::new(stream)))).await.is_err() {
                            return;
                        }
                    }
                    // A TCP probe (Kubernetes' tcpSocket) connects and
                    // closes without a word: not a failed handshake.
                    Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                        tracing::trace!(%peer, "closed before a TLS handshake");
                    }
                    Ok(Err(err)) => {
                        tls.metrics.tls.handshake_failures.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    }
                    Err(_) => {
                        tls.metrics.tls.handshake_failures.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            }
            _ = reload.tick() => {
                let reloading = tls.clone();
                // Reading files blocks: off the accept loop.
                let _ = tokio::task::spawn_blocking(move || reloading.reload_if_changed()).await;
            }
        }
    }
}

/// A failed accept (out of file descriptors, say): logged, then a pause so
/// the loop does not spin.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!(error = %err, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Self::Plain(stream) => stream.connect_info(),
            Self::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
