//! `ordo-trace-viewer`: a local stand-in for Jaeger, for `just up`.
//!
//! Receives spans over OTLP/gRPC on `TRACE_VIEWER_OTLP_ADDR` (default
//! 127.0.0.1:4317, the OTLP port services export to) and serves the Jaeger
//! UI and a Jaeger-compatible query API (`/api/services`,
//! `/api/traces?service=…&limit=…`, `/api/traces/<trace id>`) on
//! `TRACE_VIEWER_UI_ADDR` (default 127.0.0.1:16686, Jaeger's port). Traces
//! live in memory, the oldest dropped past `TRACE_VIEWER_MAX_TRACES`.

use std::net::SocketAddr;

use otlp_embedded::{Config, State, TraceServiceImpl, TraceServiceServer, ui_app};

fn addr(name: &str, default: &str) -> SocketAddr {
    let raw = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    raw.parse().unwrap_or_else(|_| {
        eprintln!("ordo-trace-viewer: invalid {name}={raw:?}: expected host:port");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let otlp = addr("TRACE_VIEWER_OTLP_ADDR", "127.0.0.1:4317");
    let ui = addr("TRACE_VIEWER_UI_ADDR", "127.0.0.1:16686");
    let max_traces = std::env::var("TRACE_VIEWER_MAX_TRACES")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(2000);
    let state = State::new(Config {
        max_length: max_traces,
        max_memory_usage: 256 << 20,
    });
    let listener = tokio::net::TcpListener::bind(ui).await?;
    let ui_state = state.clone();
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, ui_app(ui_state, "/")).await {
            eprintln!("ordo-trace-viewer: UI stopped: {err}");
        }
    });
    eprintln!("ordo-trace-viewer: Jaeger UI on http://{ui}/, OTLP/gRPC on {otlp}");
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(TraceServiceImpl::new(state)))
        .serve_with_shutdown(otlp, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
