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

use tokio::sync::{Mutex, mpsc, oneshot};

/// How a group commit batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Jobs per batch at most; 1 writes every job alone (batching off).
    pub max_batch: usize,
    /// Batches in flight at once (each on a connection of its own).
    pub writers: usize,
}

impl GroupCommitConfig {
    /// Every job written alone.
    pub const OFF: Self = Self {
        max_batch: 1,
        writers: 1,
    };

    /// Whether jobs are written together at all.
    pub fn is_batching(&self) -> bool {
        self.max_batch > 1
    }
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

/// The submitting side of a group commit; clones share the writers.
pub struct GroupCommit<J, O> {
    queue: mpsc::UnboundedSender<Queued<J, O>>,
    counts: Arc<BatchCounts>,
}

impl<J, O> Clone for GroupCommit<J, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            counts: Arc::clone(&self.counts),
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
        for _ in 0..config.writers.max(1) {
            let receiver = Arc::clone(&receiver);
            let write = Arc::clone(&write);
            let counts = Arc::clone(&counts);
            let max_batch = config.max_batch.max(1);
            tokio::spawn(async move {
                while let Some(batch) = take_batch(&receiver, max_batch).await {
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
        Self { queue, counts }
    }

    /// Queues `job` and waits for its outcome (written alone at once when
    /// a writer is idle, with the jobs queued beside it otherwise).
    pub async fn submit(&self, job: J) -> Result<O, WritersStopped> {
        let (answer, outcome) = oneshot::channel();
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
/// to `max` in all; `None` when the queue is closed and empty.
async fn take_batch<T>(receiver: &Mutex<mpsc::UnboundedReceiver<T>>, max: usize) -> Option<Vec<T>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
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
            GroupCommitConfig {
                max_batch: 64,
                writers: 1,
            },
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
            GroupCommitConfig {
                max_batch: 8,
                writers: 1,
            },
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
            GroupCommitConfig {
                max_batch: 1,
                writers: 1,
            },
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
}
