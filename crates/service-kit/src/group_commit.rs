//! Group commit: callers hand in one job each and wait for its outcome; a
//! few writers each take every job waiting at that moment and write them
//! as one batch (one transaction), then answer each caller with its own
//! outcome.
//!
//! ```text
//! caller ─submit(job)─▶ queue ─▶ writer: first job (waits for one)
//!                                        + every job already queued (≤ max)
//!                                        ─▶ write(batch) ─▶ outcome per job ─▶ caller
//! ```
//!
//! Nothing waits on purpose: a job that finds an idle writer is written at
//! once, alone; jobs that arrive while every writer is in a commit queue
//! up and go together in the next one. The batch size follows the load.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

/// How a group commit batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Jobs per batch at most; 1 writes every job alone (batching off).
    pub max_batch: usize,
    /// Batches in flight at once (each on a connection of its own).
    pub writers: usize,
    /// How long a writer waits for more jobs before it writes, while jobs
    /// arrive closer together than this (see [`linger_for`]); zero never
    /// waits.
    pub linger: Duration,
}

impl GroupCommitConfig {
    /// Every job written alone.
    pub const OFF: Self = Self {
        max_batch: 1,
        writers: 1,
        linger: Duration::ZERO,
    };

    /// Up to `max_batch` jobs a batch, `writers` batches in flight, no
    /// linger.
    pub const fn batching(max_batch: usize, writers: usize) -> Self {
        Self {
            max_batch,
            writers,
            linger: Duration::ZERO,
        }
    }

    /// Whether jobs are written together at all.
    pub fn is_batching(&self) -> bool {
        self.max_batch > 1
    }
}

/// The longest linger a setting may ask for.
pub const MAX_LINGER: Duration = Duration::from_millis(50);

/// What a linger setting expects, for its error message.
pub const LINGER_EXPECTED: &str = "a duration from 0 to 50ms, such as 2ms";

/// A linger setting: `0`, or a duration up to [`MAX_LINGER`].
pub fn parse_linger(raw: &str) -> Option<Duration> {
    let linger = match raw {
        "0" => Some(Duration::ZERO),
        raw => humantime::parse_duration(raw).ok(),
    };
    linger.filter(|linger| *linger <= MAX_LINGER)
}

/// Writes one batch and returns one outcome per job, in the jobs' order.
pub type WriteBatch<J, O> =
    Arc<dyn Fn(Vec<J>) -> Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync>;

type Queued<J, O> = (J, oneshot::Sender<O>);

/// Batches written and jobs in them, since start: jobs / batches is the
/// mean batch size (what a commit carries).
#[derive(Debug, Default)]
pub struct BatchCounts {
    batches: AtomicU64,
    jobs: AtomicU64,
}

impl BatchCounts {
    /// (batches, jobs) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.jobs.load(Ordering::Relaxed),
        )
    }
}

/// When jobs were handed in: the last arrival and a moving mean of the
/// gaps between arrivals (nanoseconds since `origin`).
#[derive(Debug)]
struct Arrivals {
    origin: std::time::Instant,
    last: AtomicU64,
    mean_gap: AtomicU64,
}

impl Arrivals {
    fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
            last: AtomicU64::new(Self::NONE),
            mean_gap: AtomicU64::new(Self::NONE),
        }
    }

    /// No arrival yet, or no gap yet.
    const NONE: u64 = u64::MAX;

    /// Counts an arrival now (racing arrivals only blur the mean).
    fn record(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(Self::NONE - 1);
        let previous = self.last.swap(now, Ordering::Relaxed);
        if previous == Self::NONE {
            return;
        }
        let gap = now.saturating_sub(previous);
        let mean = self.mean_gap.load(Ordering::Relaxed);
        let next = if mean == Self::NONE {
            gap
        } else {
            mean - mean / 8 + gap / 8
        };
        self.mean_gap.store(next, Ordering::Relaxed);
    }

    fn mean_gap(&self) -> Duration {
        Duration::from_nanos(self.mean_gap.load(Ordering::Relaxed))
    }
}

/// How long a writer holding `taken` jobs waits for more before it writes:
/// only while jobs arrive closer together than `linger` (at low load a job
/// is written at once), never when the batch is full, and never past
/// `linger`.
pub fn linger_for(
    taken: usize,
    max_batch: usize,
    mean_gap: Duration,
    linger: Duration,
) -> Duration {
    if taken >= max_batch || mean_gap >= linger {
        Duration::ZERO
    } else {
        linger
    }
}

/// The submitting side of a group commit; clones share the writers.
pub struct GroupCommit<J, O> {
    queue: mpsc::UnboundedSender<Queued<J, O>>,
    counts: Arc<BatchCounts>,
    arrivals: Arc<Arrivals>,
}

impl<J, O> Clone for GroupCommit<J, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            counts: Arc::clone(&self.counts),
            arrivals: Arc::clone(&self.arrivals),
        }
    }
}

impl<J, O> std::fmt::Debug for GroupCommit<J, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// The writers are gone (the runtime is shutting down): the job was not
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the writers have stopped; nothing was written")]
pub struct WritersStopped;

impl<J: Send + 'static, O: Send + 'static> GroupCommit<J, O> {
    /// Starts `config.writers` writers (on the current runtime) that write
    /// batches through `write`. They stop when every handle is dropped,
    /// after the jobs already queued.
    pub fn start(config: GroupCommitConfig, write: WriteBatch<J, O>) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel::<Queued<J, O>>();
        let receiver = Arc::new(Mutex::new(receiver));
        let counts = Arc::new(BatchCounts::default());
        let arrivals = Arc::new(Arrivals::new());
        let linger = config.linger;
        for _ in 0..config.writers.max(1) {
            let receiver = Arc::clone(&receiver);
            let write = Arc::clone(&write);
            let counts = Arc::clone(&counts);
            let arrivals = Arc::clone(&arrivals);
            let max_batch = config.max_batch.max(1);
            tokio::spawn(async move {
                while let Some(batch) = take_batch(&receiver, max_batch, linger, &arrivals).await {
                    let (jobs, answers): (Vec<J>, Vec<oneshot::Sender<O>>) =
                        batch.into_iter().unzip();
                    counts.batches.fetch_add(1, Ordering::Relaxed);
                    counts.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    let outcomes = write(jobs).await;
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        // A caller that gave up no longer listens.
                        let _ = answer.send(outcome);
                    }
                }
            });
        }
        Self {
            queue,
            counts,
            arrivals,
        }
    }

    /// Queues `job` and waits for its outcome (written alone at once when
    /// a writer is idle, with the jobs queued beside it otherwise).
    pub async fn submit(&self, job: J) -> Result<O, WritersStopped> {
        let (answer, outcome) = oneshot::channel();
        self.arrivals.record();
        self.queue.send((job, answer)).map_err(|_| WritersStopped)?;
        outcome.await.map_err(|_| WritersStopped)
    }

    /// Batches and jobs written so far.
    pub fn counts(&self) -> Arc<BatchCounts> {
        Arc::clone(&self.counts)
    }
}

/// `ordo_group_commit_transactions_total{request}` and
/// `ordo_group_commit_requests_total{request}`: requests / transactions is
/// what a commit carries.
pub fn expose(out: &mut ordo_telemetry::metrics::Exposition, groups: &[(&str, Arc<BatchCounts>)]) {
    let labels: Vec<[(&str, &str); 1]> = groups
        .iter()
        .map(|(request, _)| [("request", *request)])
        .collect();
    out.counter(
        "ordo_group_commit_transactions_total",
        "Transactions group commit wrote, by request kind.",
        labels
            .iter()
            .zip(groups)
            .map(|(labels, (_, counts))| (&labels[..], counts.get().0 as f64)),
    );
    out.counter(
        "ordo_group_commit_requests_total",
        "Requests written by group commit, by request kind.",
        labels
            .iter()
            .zip(groups)
            .map(|(labels, (_, counts))| (&labels[..], counts.get().1 as f64)),
    );
}

/// Waits for one job, then takes every job already queued behind it, up
/// to `max` in all, and — while jobs arrive faster than `linger` apart —
/// the jobs that come within `linger`; `None` when the queue is closed and
/// empty.
async fn take_batch<T>(
    receiver: &Mutex<mpsc::UnboundedReceiver<T>>,
    max: usize,
    linger: Duration,
    arrivals: &Arrivals,
) -> Option<Vec<T>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    take_queued(&mut receiver, &mut batch, max);
    let wait = linger_for(batch.len(), max, arrivals.mean_gap(), linger);
    if !wait.is_zero() {
        let until = tokio::time::Instant::now() + wait;
        while batch.len() < max {
            match tokio::time::timeout_at(until, receiver.recv()).await {
                Ok(Some(job)) => {
                    batch.push(job);
                    take_queued(&mut receiver, &mut batch, max);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    Some(batch)
}

/// Every job already queued, until `batch` holds `max`.
fn take_queued<T>(receiver: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>, max: usize) {
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn recording(
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
        commit: Duration,
    ) -> WriteBatch<u32, u32> {
        Arc::new(move |jobs: Vec<u32>| {
            let sizes = Arc::clone(&sizes);
            Box::pin(async move {
                sizes.lock().unwrap().push(jobs.len());
                tokio::time::sleep(commit).await;
                jobs.into_iter().map(|job| job * 10).collect()
            })
        })
    }

    #[tokio::test]
    async fn a_job_alone_is_written_at_once_alone() {
        let sizes = Arc::default();
        let group = GroupCommit::start(
            GroupCommitConfig::batching(64, 1),
            recording(Arc::clone(&sizes), Duration::ZERO),
        );
        assert_eq!(group.submit(4).await, Ok(40));
        assert_eq!(group.submit(5).await, Ok(50));
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn jobs_arriving_during_a_commit_go_together_in_the_next_and_each_gets_its_own_outcome() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = GroupCommit::start(
            GroupCommitConfig::batching(8, 1),
            recording(Arc::clone(&sizes), Duration::from_millis(50)),
        );
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest: Vec<_> = (2..=11)
            .map(|job| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(job).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Ok(10));
        for (job, handle) in (2..=11).zip(rest) {
            assert_eq!(handle.await.unwrap(), Ok(job * 10));
        }
        // 1 alone, then at most 8 of the 10 that queued behind it, then the rest.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 8, 2]);
        assert_eq!(group.counts().get(), (3, 11));
    }

    #[tokio::test]
    async fn batching_off_writes_every_job_alone() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = GroupCommit::start(
            GroupCommitConfig::batching(1, 1),
            recording(Arc::clone(&sizes), Duration::from_millis(5)),
        );
        let handles: Vec<_> = (0..5)
            .map(|job| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(job).await })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1; 5]);
    }

    #[test]
    fn a_batch_lingers_only_while_jobs_come_closer_together_than_the_linger() {
        let linger = Duration::from_millis(2);
        let busy = Duration::from_micros(500);
        assert_eq!(linger_for(1, 64, busy, linger), linger);
        // Low load: the next job is not expected within the linger.
        assert_eq!(
            linger_for(1, 64, Duration::from_millis(5), linger),
            Duration::ZERO
        );
        assert_eq!(linger_for(1, 64, Duration::MAX, linger), Duration::ZERO);
        // A full batch is written at once; a zero linger never waits.
        assert_eq!(linger_for(64, 64, busy, linger), Duration::ZERO);
        assert_eq!(linger_for(1, 64, busy, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn linger_settings_are_zero_to_fifty_milliseconds() {
        assert_eq!(parse_linger("0"), Some(Duration::ZERO));
        assert_eq!(parse_linger("2ms"), Some(Duration::from_millis(2)));
        assert_eq!(parse_linger("50ms"), Some(MAX_LINGER));
        assert_eq!(parse_linger("51ms"), None);
        assert_eq!(parse_linger("-1ms"), None);
        assert_eq!(parse_linger("soon"), None);
    }

    #[tokio::test]
    async fn jobs_arriving_faster_than_the_linger_wait_for_each_other_and_a_lone_job_does_not() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = GroupCommit::start(
            GroupCommitConfig {
                max_batch: 64,
                writers: 1,
                linger: Duration::from_millis(40),
            },
            recording(Arc::clone(&sizes), Duration::ZERO),
        );
        // `job` is written without waiting out the linger.
        let written_at_once = async |job: u32| {
            let started = std::time::Instant::now();
            assert_eq!(group.submit(job).await, Ok(job * 10));
            assert!(
                started.elapsed() < Duration::from_millis(30),
                "{:?}",
                started.elapsed()
            );
        };
        // The first job has no gap to go by: written at once, alone.
        written_at_once(1).await;
        // Jobs 1 ms apart: each batch waits for those that follow.
        let mut handles = Vec::new();
        for job in 2..=9 {
            let group = group.clone();
            handles.push(tokio::spawn(async move { group.submit(job).await }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (job, handle) in (2..=9).zip(handles) {
            assert_eq!(handle.await.unwrap(), Ok(job * 10));
        }
        let busy: Vec<usize> = sizes.lock().unwrap()[1..].to_vec();
        assert!(busy.len() < 8, "eight close jobs in {busy:?} batches");
        assert_eq!(busy.iter().sum::<usize>(), 8);
        // After a pause far longer than the linger, a job goes at once again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        written_at_once(10).await;
    }
}
