//! Prometheus text exposition (format 0.0.4), written by hand: a service
//! collects its counters, gauges and histograms into an [`Exposition`] at
//! scrape time, and [`serve`] answers `GET /metrics` with it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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

/// A scrape's worth of text.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter family; `samples` are (labels, value).
    pub fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.family(name, help, "counter", samples);
    }

    /// A gauge family; `samples` are (labels, value).
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.family(name, help, "gauge", samples);
    }

    /// A histogram family in seconds; `samples` are (labels, histogram).
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, &'a LatencyHistogram)>,
    ) {
        self.header(name, help, "histogram");
        for (labels, histogram) in samples {
            let counts = histogram.bucket_counts();
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS_MICROS.iter().zip(&counts) {
                cumulative += count;
                let le = format!("{}", *bound as f64 / 1e6);
                self.sample(
                    &format!("{name}_bucket"),
                    labels,
                    Some(("le", &le)),
                    cumulative as f64,
                );
            }
            cumulative += counts.last().copied().unwrap_or(0);
            self.sample(
                &format!("{name}_bucket"),
                labels,
                Some(("le", "+Inf")),
                cumulative as f64,
            );
            self.sample(
                &format!("{name}_sum"),
                labels,
                None,
                histogram.sum().as_secs_f64(),
            );
            self.sample(&format!("{name}_count"), labels, None, cumulative as f64);
        }
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.out
    }

    fn family<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.header(name, help, kind);
        for (labels, value) in samples {
            self.sample(name, labels, None, value);
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels<'_>, extra: Option<(&str, &str)>, value: f64) {
        self.out.push_str(name);
        let all: Vec<(&str, &str)> = labels.iter().copied().chain(extra).collect();
        if !all.is_empty() {
            self.out.push('{');
            for (index, (key, value)) in all.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{key}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Whatever a service exposes; collected at each scrape.
pub trait MetricsSource: Send + Sync + 'static {
    fn collect<'a>(&'a self, out: &'a mut Exposition) -> BoxFuture<'a, ()>;
}

/// Serves `GET /metrics` on `addr` until `stop` turns true; returns the
/// bound address (port 0 picks one). Any other path is 404. One request per
/// connection; requests are bounded in size and time.
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
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let source = Arc::clone(&source);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, source)).await;
            });
        }
    });
    Ok((local, task))
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    source: Arc<dyn MetricsSource>,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 || request.len() > 8192 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        let mut out = Exposition::new();
        source.collect(&mut out).await;
        ("200 OK", out.finish())
    } else {
        ("404 Not Found", "not found: try GET /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
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
}
