//! Building and running the simulator: bind, serve, shut down in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use ordo_proto::payments::v1::payment_service_server::PaymentServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::faults::FaultSwitch;
use crate::grpc::PaymentApi;
use crate::ledger::Ledger;
use crate::settings::Settings;

/// A bound simulator (so `local_addr` is known before serving, also on port 0).
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let (listener, local_addr) =
            ordo_service_kit::serving::bind(settings.grpc_listen_addr).await?;
        Ok(Self {
            listener,
            local_addr,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, then drains for at most `SHUTDOWN_TIMEOUT`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<PaymentServiceServer<PaymentApi>>()
            .await;
        let api = PaymentApi::new(
            Arc::new(Ledger::default()),
            Arc::new(FaultSwitch::new(self.settings.faults)),
        );
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel();
        let stop_accepting = async move {
            shutdown.await;
            tracing::info!("shutting down: draining calls");
            let _ = draining_tx.send(());
        };
        tracing::info!(addr = %self.local_addr, faults = ?self.settings.faults, "payments simulator listening");
        let (shed, request_deadline) = self.settings.limits.layers();
        let server = tonic::transport::Server::builder()
            .layer(shed)
            .layer(request_deadline)
            .add_service(health)
            .add_service(
                ordo_service_kit::serving::reflection(&["ordo.payments.v1.PaymentService"])
                    .build_v1()?,
            )
            .add_service(
                ordo_service_kit::serving::reflection(&["ordo.payments.v1.PaymentService"])
                    .build_v1alpha()?,
            )
            .add_service(PaymentServiceServer::new(api))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop_accepting);
        ordo_service_kit::serving::serve_draining_within(
            server,
            draining_rx,
            self.settings.shutdown_timeout,
        )
        .await
        .context("gRPC server failed")?;
        Ok(())
    }
}
