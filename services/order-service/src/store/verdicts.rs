//! Verdicts on PENDING orders, the common case of the status consumer,
//! many in one statement: the verdicts that arrive while a commit is in
//! flight move their orders and take their inbox rows together.
//!
//! ```text
//! verdict ─▶ VerdictMove ─▶ GroupCommit ─▶ rounds (each order once a round)
//!                                          ─▶ BEGIN, one statement a round, COMMIT
//!                                          ─▶ moved or not, per verdict
//! ```
//!
//! Each verdict is decided alone, as if written alone: its order moves
//! only if it is still PENDING, and its inbox row is written only if it
//! moved. A verdict that did not move its order (or was never tried) hears
//! `false` and is decided again under the order's lock. An order appears
//! at most once in a statement — two moves of one row in one statement
//! would both be recorded while only one happened — so a second verdict on
//! the same order goes in the next round, and sees the first one's move.
//! When a statement fails (a copy of a message already in the inbox, a
//! lost connection), the transaction is rolled back and every verdict of
//! the batch is written alone; when the commit itself fails, every verdict
//! hears it and is delivered again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use ordo_service_kit::group_commit::{BatchCounts, GroupCommit, GroupCommitConfig, WriteBatch};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement, Value,
};
use uuid::Uuid;

/// A verdict that moves a PENDING order, with its inbox row.
#[derive(Debug, Clone)]
pub(super) struct VerdictMove {
    pub order_id: Uuid,
    pub status: &'static str,
    pub reason: String,
    pub updated_at: DateTime<FixedOffset>,
    pub consumer: String,
    pub message_id: String,
    pub subject: String,
    pub outcome: String,
    pub delivery: ordo_inbox::Delivery,
}

impl VerdictMove {
    /// The statement's parts for this verdict, its values numbered from
    /// `first` on: the move of its order (by primary key, so it is an index
    /// probe whatever the table's size was when the statement was planned)
    /// and its inbox row, written only if the order moved.
    fn parts(&self, n: usize, first: usize) -> (String, [Value; 10]) {
        let p = |offset: usize| first + offset;
        let sql = format!(
            "moved_{n} AS (UPDATE orders SET status = ${}, status_reason = ${}, updated_at = ${} \
               WHERE id = ${} AND status = 'PENDING' RETURNING id), \
             recorded_{n} AS (INSERT INTO inbox \
               (consumer, message_id, subject, outcome, order_id, stream_sequence, published_at) \
               SELECT ${}, ${}, ${}, ${}, id, ${}, ${} FROM moved_{n} RETURNING order_id)",
            p(1),
            p(2),
            p(3),
            p(0),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
        );
        let [_, stream_sequence, published_at] = self.delivery.values();
        let values = [
            self.order_id.into(),
            self.status.into(),
            self.reason.as_str().into(),
            self.updated_at.into(),
            self.consumer.as_str().into(),
            self.message_id.as_str().into(),
            self.subject.as_str().into(),
            self.outcome.as_str().into(),
            stream_sequence,
            published_at,
        ];
        (sql, values)
    }
}

/// The statement moving `moves` (each a different order) and recording
/// their inbox rows; it returns the id of each order it moved.
fn moves_statement(moves: &[&VerdictMove]) -> Statement {
    let mut parts = Vec::with_capacity(moves.len());
    let mut results = Vec::with_capacity(moves.len());
    let mut values = Vec::with_capacity(moves.len() * 10);
    for (n, verdict) in moves.iter().enumerate() {
        let (sql, these) = verdict.parts(n, values.len() + 1);
        parts.push(sql);
        results.push(format!("SELECT order_id FROM recorded_{n}"));
        values.extend(these);
    }
    let sql = format!("WITH {} {}", parts.join(", "), results.join(" UNION ALL "));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The batch (indexes into it) split into rounds in arrival order, each
/// order at most once a round: a verdict goes in the first round after
/// the last one holding its order.
fn rounds(orders: &[Uuid]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut last_round_of: HashMap<Uuid, usize> = HashMap::new();
    for (index, order) in orders.iter().enumerate() {
        let round = last_round_of.get(order).map_or(0, |last| last + 1);
        if round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[round].push(index);
        last_round_of.insert(*order, round);
    }
    rounds
}

type MoveOutcome = Result<bool, DbErr>;

/// Verdict moves, written together when they arrive together.
#[derive(Debug, Clone)]
pub(super) struct VerdictMoves {
    db: DatabaseConnection,
    group: Option<GroupCommit<VerdictMove, MoveOutcome>>,
}

impl VerdictMoves {
    /// Moves over `db`; batching off when `config.max_batch` is 1 (each
    /// verdict then is a statement and a transaction of its own).
    pub fn new(db: DatabaseConnection, config: GroupCommitConfig) -> Self {
        let group = config.is_batching().then(|| {
            let writer = db.clone();
            let write: WriteBatch<VerdictMove, MoveOutcome> = Arc::new(move |moves| {
                let db = writer.clone();
                Box::pin(async move { write_together(&db, &moves).await })
            });
            GroupCommit::start(config, write)
        });
        Self { db, group }
    }

    /// Whether `verdict` moved its order and took its inbox row (committed).
    pub async fn apply(&self, verdict: VerdictMove) -> MoveOutcome {
        match &self.group {
            Some(group) => group
                .submit(verdict)
                .await
                .map_err(|stopped| DbErr::Custom(stopped.to_string()))?,
            None => write_alone(&self.db, &verdict).await,
        }
    }

    /// (transactions, verdicts in them) so far; none with batching off.
    pub fn counts(&self) -> Option<Arc<BatchCounts>> {
        self.group.as_ref().map(GroupCommit::counts)
    }
}

async fn write_alone(db: &DatabaseConnection, verdict: &VerdictMove) -> MoveOutcome {
    Ok(!db
        .query_all_raw(moves_statement(&[verdict]))
        .await?
        .is_empty())
}

async fn write_together(db: &DatabaseConnection, moves: &[VerdictMove]) -> Vec<MoveOutcome> {
    ordo_inbox::settle::together_or_alone(db, moves, moved_in_rounds, write_alone).await
}

/// Every round of `moves` in `txn`; whether each moved.
async fn moved_in_rounds(
    txn: &DatabaseTransaction,
    moves: &[VerdictMove],
) -> Result<Vec<bool>, DbErr> {
    let mut moved = vec![false; moves.len()];
    let orders: Vec<Uuid> = moves.iter().map(|verdict| verdict.order_id).collect();
    for round in rounds(&orders) {
        let these: Vec<&VerdictMove> = round.iter().map(|&index| &moves[index]).collect();
        let mut moved_orders = HashSet::with_capacity(these.len());
        for row in txn.query_all_raw(moves_statement(&these)).await? {
            moved_orders.insert(row.try_get_by_index::<Uuid>(0)?);
        }
        for index in round {
            moved[index] = moved_orders.contains(&moves[index].order_id);
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_order_is_once_a_round_and_a_later_verdict_on_it_waits_for_the_next() {
        let [a, b, c] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        assert_eq!(rounds(&[a, b, c]), vec![vec![0, 1, 2]]);
        assert_eq!(
            rounds(&[a, b, a, c, a]),
            vec![vec![0, 1, 3], vec![2], vec![4]]
        );
        // A verdict whose order is free joins the earliest round it may.
        assert_eq!(rounds(&[a, a, b]), vec![vec![0, 2], vec![1]]);
        assert!(rounds(&[]).is_empty());
    }

    #[test]
    fn each_verdict_moves_its_order_by_primary_key_with_its_own_values() {
        let verdict = |order_id| VerdictMove {
            order_id,
            status: "CONFIRMED",
            reason: String::new(),
            updated_at: chrono::Utc::now().fixed_offset(),
            consumer: "order-status".into(),
            message_id: Uuid::now_v7().to_string(),
            subject: "orders.confirmed".into(),
            outcome: "applied: confirmed".into(),
            delivery: ordo_inbox::Delivery {
                order_id: Some(order_id),
                stream_sequence: 7,
                published_at: None,
            },
        };
        let (one, two) = (verdict(Uuid::now_v7()), verdict(Uuid::now_v7()));
        let statement = moves_statement(&[&one, &two]);
        let sql = &statement.sql;
        assert!(
            sql.contains("WHERE id = $1 AND status = 'PENDING'"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE id = $11 AND status = 'PENDING'"),
            "{sql}"
        );
        assert!(
            sql.contains("SELECT $15, $16, $17, $18, id, $19, $20 FROM moved_1"),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "SELECT order_id FROM recorded_0 UNION ALL SELECT order_id FROM recorded_1"
            ),
            "{sql}"
        );
        assert_eq!(statement.values.map_or(0, |values| values.0.len()), 20);
    }
}
