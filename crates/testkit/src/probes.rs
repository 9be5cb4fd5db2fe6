//! Asking a running service how it is: its `grpc.health.v1` status and its
//! Prometheus `/metrics`.

use std::net::SocketAddr;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The health status the server at `addr` reports for `service`, if it answers.
pub async fn health_of(addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    health_over(addr, None, service).await
}

/// [`health_of`] a server that serves TLS when `tls` is given.
pub async fn health_over(
    addr: SocketAddr,
    tls: Option<&ordo_proto::client::ClientTls>,
    service: &str,
) -> Option<ServingStatus> {
    let channel = match tls {
        Some(tls) => ordo_proto::client::endpoint(&format!("https://{addr}"), tls).ok()?,
        None => tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?,
    }
    .connect()
    .await
    .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

/// The body of `GET /metrics` at `addr` (Prometheus text), over a plain
/// HTTP/1.1 request.
pub async fn scrape_metrics(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ordo\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("scrape failed: {head}")));
    }
    Ok(body.to_owned())
}

/// `/metrics` at `addr`, parsed as Prometheus text.
pub async fn scrape_parsed(addr: SocketAddr) -> std::io::Result<prometheus_parse::Scrape> {
    let text = scrape_metrics(addr).await?;
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
}

/// The sum of the samples of `metric` whose labels include `labels` (all
/// of them when `labels` is empty).
pub fn metric(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(n)
            | prometheus_parse::Value::Gauge(n)
            | prometheus_parse::Value::Untyped(n) => n,
            _ => 0.0,
        })
        .sum()
}
