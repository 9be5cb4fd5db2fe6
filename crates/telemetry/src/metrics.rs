//! Prometheus exposition with the `prometheus-client` crate, served by axum.
//!
//! A service keeps its figures where they are cheapest to update — atomics,
//! small maps, the lock-free [`LatencyHistogram`] — and reads them only when
//! scraped: its [`MetricsSource`] fills an [`Exposition`] with counter,
//! gauge and histogram families, which is a prometheus-client
//! [`Collector`] encoded in the Prometheus text format 0.0.4. [`serve`]
//! answers `GET /metrics` with it (axum over hyper); any other path is 404.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_MICROS: [u64; 16] = [
    500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 5_000_000, 30_000_000,
];

/// A fixed-bucket latency histogram that many threads record into without locks.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Counts per bucket (the last one is "above every bound").
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Relaxed))
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1); `None`
    /// when empty, `Duration::MAX` when it lies above every bound.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<Duration> {
        let counts = self.bucket_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(
                    LATENCY_BUCKETS_MICROS
                        .get(index)
                        .map_or(Duration::MAX, |micros| Duration::from_micros(*micros)),
                );
            }
        }
        Some(Duration::MAX)
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A scrape's worth of families, in the order they were added.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    samples: Samples,
}

type LabelSet = Vec<(String, String)>;

#[derive(Debug)]
enum Samples {
    Counter(Vec<(LabelSet, f64)>),
    Gauge(Vec<(LabelSet, f64)>),
    Histogram(Vec<(LabelSet, HistogramSample)>),
}

/// A histogram as scraped: the sum in seconds, and each bucket's upper
/// bound with its count (not cumulative; the last bound is +Inf).
#[derive(Debug)]
struct HistogramSample {
    sum: f64,
    buckets: Vec<(f64, u64)>,
}

fn owned(labels: Labels<'_>) -> LabelSet {
    labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter family, named with its `_total`; `samples` are (labels, value).
    pub fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let samples = samples
            .into_iter()
            .map(|(labels, value)| (owned(labels), value));
        self.push(name, help, Samples::Counter(samples.collect()));
    }

    /// A gauge family; `samples` are (labels, value).
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        let samples = samples
            .into_iter()
            .map(|(labels, value)| (owned(labels), value));
        self.push(name, help, Samples::Gauge(samples.collect()));
    }

    /// A histogram family in seconds; `samples` are (labels, histogram).
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, &'a LatencyHistogram)>,
    ) {
        let samples = samples.into_iter().map(|(labels, histogram)| {
            let bounds = LATENCY_BUCKETS_MICROS
                .iter()
                .map(|micros| *micros as f64 / 1e6)
                .chain([f64::INFINITY]);
            let buckets = bounds.zip(histogram.bucket_counts()).collect();
            let sample = HistogramSample {
                sum: histogram.sum().as_secs_f64(),
                buckets,
            };
            (owned(labels), sample)
        });
        self.push(name, help, Samples::Histogram(samples.collect()));
    }

    /// The text, ready to serve: the Prometheus text format 0.0.4.
    pub fn finish(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        // Writing into a String cannot fail, nor can encoding these values.
        let _ = prometheus_text::encode(&mut text, &registry);
        text
    }

    fn push(&mut self, name: &str, help: &str, samples: Samples) {
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            samples,
        });
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in &self.families {
            match &family.samples {
                Samples::Counter(samples) => {
                    // The encoder appends `_total` to a counter's name.
                    let name = family.name.strip_suffix("_total").unwrap_or(&family.name);
                    let mut metric =
                        encoder.encode_descriptor(name, &family.help, None, MetricType::Counter)?;
                    for (labels, value) in samples {
                        metric
                            .encode_family(labels)?
                            .encode_counter::<NoLabelSet, _, f64>(value, None)?;
                    }
                }
                Samples::Gauge(samples) => {
                    let mut metric = encoder.encode_descriptor(
                        &family.name,
                        &family.help,
                        None,
                        MetricType::Gauge,
                    )?;
                    for (labels, value) in samples {
                        metric.encode_family(labels)?.encode_gauge(value)?;
                    }
                }
                Samples::Histogram(samples) => {
                    let mut metric = encoder.encode_descriptor(
                        &family.name,
                        &family.help,
                        None,
                        MetricType::Histogram,
                    )?;
                    for (labels, sample) in samples {
                        let count = sample.buckets.iter().map(|(_, count)| count).sum();
                        metric
                            .encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(
                                sample.sum,
                                count,
                                &sample.buckets,
                                None,
                            )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whatever a service exposes; collected at each scrape.
pub trait MetricsSource: Send + Sync + 'static {
    fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()>;
}

/// Serves `GET /metrics` on `addr` until `stop` turns true (requests in
/// flight finish); returns the bound address (port 0 picks one). Any other
/// path is 404.
pub async fn serve(
    addr: SocketAddr,
    source: Arc<dyn MetricsSource>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot listen on METRICS_LISTEN_ADDR {addr}: {err}"),
        )
    })?;
    let local = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try GET /metrics\n") })
        .with_state(source);
    let task = tokio::spawn(async move {
        let stopped = async move { drop(stop.wait_for(|stop| *stop).await) };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %err, "metrics endpoint failed");
        }
    });
    Ok((local, task))
}

async fn scrape(State(source): State<Arc<dyn MetricsSource>>) -> impl IntoResponse {
    let mut out = Exposition::new();
    source.collect(&mut out).await;
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        out.finish(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_parses_as_prometheus_exposition() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let mut out = Exposition::new();
        out.counter(
            "ordo_things_total",
            "Things.",
            [(&[("kind", "a\"b")][..], 3.0)],
        );
        out.gauge("ordo_level", "Level.", [(&[][..], 1.5)]);
        out.histogram(
            "ordo_latency_seconds",
            "Latency.",
            [(&[("p", "1")][..], &histogram)],
        );
        let text = out.finish();
        for line in [
            "# TYPE ordo_things_total counter",
            "ordo_things_total{kind=\"a\\\"b\"} 3",
            "ordo_level 1.5",
            "ordo_latency_seconds_bucket{p=\"1\",le=\"0.003\"} 1",
            "ordo_latency_seconds_bucket{p=\"1\",le=\"+Inf\"} 2",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        assert!(
            scrape
                .samples
                .iter()
                .any(|sample| sample.metric == "ordo_things_total")
        );
        let count = scrape
            .samples
            .iter()
            .find(|sample| sample.metric == "ordo_latency_seconds_count")
            .unwrap();
        assert!(
            matches!(count.value, prometheus_parse::Value::Untyped(n) | prometheus_parse::Value::Counter(n) if n == 2.0)
        );
    }

    struct Fixed;

    impl MetricsSource for Fixed {
        fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()> {
            Box::pin(async move { out.gauge("ordo_up", "Up.", [(&[][..], 1.0)]) })
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: ordo\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_are_served_at_their_path_until_stopped() {
        let (stop, stopped) = watch::channel(false);
        let (addr, task) = serve(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::new(Fixed),
            stopped,
        )
        .await
        .unwrap();
        let answer = get(addr, "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{answer}"
        );
        assert!(answer.contains("\nordo_up 1"), "{answer}");
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
