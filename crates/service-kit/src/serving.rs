//! Serving pieces every Ordo gRPC server uses.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use ordo_telemetry::grpc::GrpcMetrics;
use tokio::net::TcpListener;

use crate::tls::{ReloadingTls, ServerTls};

/// A bound gRPC listener, with the TLS it serves if any.
#[derive(Debug)]
pub struct GrpcListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<ReloadingTls>,
}

impl GrpcListener {
    /// Loads `tls`'s files (counting its handshakes in `metrics`) and binds
    /// `addr`; each error names its setting.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<&ServerTls>,
        metrics: &Arc<GrpcMetrics>,
    ) -> std::io::Result<Self> {
        let tls = tls
            .map(|tls| ReloadingTls::load(tls.clone(), Arc::clone(metrics)))
            .transpose()
            .map_err(|err| {
                std::io::Error::other(format!(
                    "cannot serve TLS with GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CLIENT_CA_FILE: {err}"
                ))
            })?;
        let listener = TcpListener::bind(addr).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot listen on GRPC_LISTEN_ADDR {addr}: {err}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            tls,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connections to serve, for `serve_with_incoming_shutdown`.
    pub fn incoming(
        self,
    ) -> std::pin::Pin<
        Box<dyn futures::Stream<Item = std::io::Result<crate::tls::Connection>> + Send>,
    > {
        crate::tls::incoming(self.listener, self.tls)
    }
}

/// Server reflection over Ordo's descriptors, health's and the error
/// details', so grpcurl needs no proto files and can decode
/// `google.rpc.BadRequest`; it advertises `services` (the ones this server
/// serves) plus health. Build both protocol versions from it: grpcurl 1.8
/// speaks only v1alpha.
pub fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ordo_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    services.iter().fold(builder, |builder, service| {
        builder.with_service_name(*service)
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// What every server bounds: requests in flight (the rest are shed with
/// RESOURCE_EXHAUSTED) and the time one request may take (DEADLINE_EXCEEDED;
/// a caller's shorter `grpc-timeout` wins and is passed on downstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `GRPC_MAX_IN_FLIGHT`.
    pub max_in_flight: usize,
    /// `GRPC_REQUEST_TIMEOUT`.
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerLimits {
    /// `GRPC_MAX_IN_FLIGHT` (1-100000) and `GRPC_REQUEST_TIMEOUT`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &crate::Lookup<'_, F>,
    ) -> Result<Self, crate::SettingsError> {
        let defaults = Self::default();
        Ok(Self {
            max_in_flight: env.number("GRPC_MAX_IN_FLIGHT", 1..=100_000, defaults.max_in_flight)?,
            request_timeout: env.duration(
                "GRPC_REQUEST_TIMEOUT",
                Duration::ZERO,
                defaults.request_timeout,
            )?,
        })
    }

    /// The layers every server gets, to add in this order: tracing and
    /// request metrics (outermost, so shed requests are counted too), load
    /// shedding, the request deadline.
    pub fn layers(
        &self,
        metrics: &std::sync::Arc<ordo_telemetry::grpc::GrpcMetrics>,
    ) -> (
        ordo_telemetry::grpc::ServerTraceLayer,
        ordo_resilience::LoadShedLayer,
        ordo_resilience::RequestDeadlineLayer,
    ) {
        (
            ordo_telemetry::grpc::ServerTraceLayer::new(std::sync::Arc::clone(metrics)),
            ordo_resilience::LoadShedLayer::new(self.max_in_flight),
            ordo_resilience::RequestDeadlineLayer::new(self.request_timeout),
        )
    }
}
