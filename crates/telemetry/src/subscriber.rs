//! Installing the global subscriber: logs always, OTLP traces when asked.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans in scope
    /// (the correlation id among them).
    Json,
}

/// What to log and where to send traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: OTLP/gRPC collector (e.g. a Jaeger);
    /// unset, no spans are exported and nothing complains.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: sent with every export (an API key,
    /// say).
    pub otlp_headers: OtlpHeaders,
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`,
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY`: for an `https://` endpoint.
    pub otlp_tls: OtlpTls,
}

/// Headers for the collector, by name; values are never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OtlpHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// TLS files of the OTLP exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpTls {
    /// The collector's CA (default: the public web roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and its key, for collectors that ask.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl TelemetryConfig {
    /// Text logs at `log_filter`, no export, as `service_name`.
    pub fn new(service_name: &str, log_filter: &str) -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: log_filter.to_owned(),
            otlp_endpoint: None,
            service_name: service_name.to_owned(),
            otlp_headers: OtlpHeaders::default(),
            otlp_tls: OtlpTls::default(),
        }
    }
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (bounded by the exporter's timeout).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            tracing::warn!(error = %err, "could not flush spans");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: could not flush spans: {err}");
        }
    }
}

/// Installs the global subscriber (a second call only returns a handle
/// that exports nothing) and the W3C trace-context propagator.
pub fn init(config: &TelemetryConfig) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let provider =
        config
            .otlp_endpoint
            .as_deref()
            .and_then(|endpoint| match exporter(endpoint, config) {
                Ok(provider) => Some(provider),
                Err(err) => {
                    eprintln!("telemetry: not exporting traces to {endpoint}: {err}");
                    None
                }
            });
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ordo"))
            .with_filter(EnvFilter::new("info,h2=off,tower=off,hyper=off,sqlx=off"))
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

fn exporter(endpoint: &str, config: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in &config.otlp_headers.0 {
        let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = value
            .parse()
            .map_err(|_| format!("the value of header {name} is not a header value"))?;
        metadata.insert(name, value);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(metadata);
    if endpoint.starts_with("https://") {
        builder = builder.with_tls_config(otlp_tls_config(&config.otlp_tls)?);
    }
    let exporter = builder.build().map_err(|err| err.to_string())?;
    let service_name = &config.service_name;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    instance_id(service_name),
                ))
                .build(),
        )
        .build())
}

fn otlp_tls_config(tls: &OtlpTls) -> Result<tonic::transport::ClientTlsConfig, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
    };
    let config = tonic::transport::ClientTlsConfig::new();
    let config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?)),
        None => config.with_webpki_roots(),
    };
    Ok(match &tls.client {
        Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        )),
        None => config,
    })
}

/// `<service>@<host>:<pid>`: tells replicas (and processes) apart in a trace.
fn instance_id(service_name: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{service_name}@{host}:{}", std::process::id())
}
