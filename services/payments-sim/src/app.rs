//! Building and running the simulator: bind, serve, shut down in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ordo_service_kit::shutdown::{Stopping, accept_until_drained, serve_within};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use ordo_service_kit::metrics::MetricsEndpoint;
use ordo_telemetry::grpc::GrpcMetrics;
use ordo_telemetry::metrics::{Exposition, MetricsSource};

use anyhow::Context as _;
use ordo_proto::payments::v1::payment_service_server::PaymentServiceServer;
use ordo_service_kit::serving::GrpcListener;

use crate::faults::FaultSwitch;
use crate::grpc::PaymentApi;
use crate::ledger::Ledger;
use crate::settings::Settings;

/// A bound simulator (so `local_addr` is known before serving, also on port 0).
#[derive(Debug)]
pub struct Application {
    listener: GrpcListener,
    api: PaymentApi,
    ledger: Arc<Ledger>,
    metrics: Arc<SimMetrics>,
    metrics_endpoint: MetricsEndpoint,
    settings: Settings,
}

/// What the simulator exposes at `/metrics`: gRPC requests by service,
/// method and code, the payment calls it received, and the process and
/// build families.
#[derive(Debug, Default)]
struct SimMetrics {
    grpc: Arc<GrpcMetrics>,
    calls_received: Arc<AtomicU64>,
}

impl MetricsSource for SimMetrics {
    fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.grpc.expose(out);
            let none: &[(&str, &str)] = &[];
            out.counter(
                "ordo_payments_calls_received_total",
                "Authorize, Refund and Void calls received, failed ones included.",
                [(none, self.calls_received.load(Ordering::Relaxed) as f64)],
            );
            ordo_telemetry::process::expose(
                out,
                env!("CARGO_PKG_VERSION"),
                option_env!("ORDO_GIT_COMMIT").unwrap_or("unknown"),
            );
        })
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ledger = Arc::new(Ledger::default());
        let api = PaymentApi::new(
            Arc::clone(&ledger),
            Arc::new(FaultSwitch::new(settings.faults)),
        );
        let metrics = Arc::new(SimMetrics {
            calls_received: api.calls_received(),
            ..SimMetrics::default()
        });
        let metrics_endpoint =
            MetricsEndpoint::start(settings.metrics_listen_addr, Arc::clone(&metrics) as _).await?;
        let listener = GrpcListener::bind(
            settings.grpc_listen_addr,
            settings.grpc_tls.as_ref(),
            &metrics.grpc,
        )
        .await?;
        Ok(Self {
            listener,
            api,
            ledger,
            metrics,
            metrics_endpoint,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.addr()
    }

    /// Serves until `shutdown`, then NOT_SERVING but serving on through
    /// `SHUTDOWN_DRAIN_DELAY`, then drains until `SHUTDOWN_TIMEOUT` after it.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<PaymentServiceServer<PaymentApi>>()
            .await;
        ordo_service_kit::health::alive(&reporter).await;
        let api = self.api;
        let sweeper = tokio::spawn(forget_old_entries(
            Arc::clone(&self.ledger),
            self.settings.ledger_retention,
        ));
        let stopping = Stopping::new(self.settings.shutdown);
        let stop_accepting = accept_until_drained(shutdown, stopping.clone(), {
            let reporter = reporter.clone();
            async move {
                reporter
                    .set_not_serving::<PaymentServiceServer<PaymentApi>>()
                    .await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        });
        tracing::info!(addr = %self.listener.local_addr(), tls = self.listener.is_tls(), faults = ?self.settings.faults, "payments simulator listening");
        let (trace, shed, request_deadline) = self.settings.limits.layers(&self.metrics.grpc);
        let server = tonic::transport::Server::builder()
            .layer(trace)
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
            .serve_with_incoming_shutdown(self.listener.incoming(), stop_accepting);
        serve_within(server, &stopping)
            .await
            .context("gRPC server failed")?;
        sweeper.abort();
        self.metrics_endpoint.stop().await;
        Ok(())
    }
}

/// Forgets ledger entries older than `retention`, every minute (or every
/// `retention`, when shorter).
async fn forget_old_entries(ledger: Arc<Ledger>, retention: std::time::Duration) {
    let every = retention.min(std::time::Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        if let Some(horizon) = std::time::Instant::now().checked_sub(retention) {
            let forgotten = ledger.forget_before(horizon);
            if forgotten > 0 {
                tracing::info!(
                    forgotten,
                    "ledger entries past PAYMENTS_LEDGER_RETENTION forgotten"
                );
            }
        }
    }
}
