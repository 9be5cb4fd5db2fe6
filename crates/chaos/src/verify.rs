//! After the storm: every invariant of DESIGN.md checked from the
//! databases, the stream and the simulator's own counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use ordo_proto::payments::v1::GetPaymentCountsRequest;
use ordo_proto::processor::v1::{
    DeadLetter, ListDeadLettersRequest, PurgeDeadLetterRequest, RedriveDeadLetterRequest,
};
use ordo_proto::{PaymentServiceClient, ProcessorServiceClient};
use ordo_testkit::{StreamMessage, TestStream};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tonic::transport::Channel;

/// What was checked: facts, and violations (each naming the orders).
#[derive(Debug, Default)]
pub struct Report {
    pub facts: Vec<String>,
    pub violations: Vec<String>,
}

impl Report {
    fn violation(&mut self, what: &str, orders: &[String]) {
        if !orders.is_empty() {
            let shown: Vec<&str> = orders.iter().take(10).map(String::as_str).collect();
            self.violations.push(format!(
                "{what}: {} order(s), e.g. {}",
                orders.len(),
                shown.join(", ")
            ));
        }
    }
}

/// The simulator's books for one order.
struct Counts {
    id: String,
    declined: bool,
    authorizations: u32,
    approvals: u32,
    refunds: u32,
}

/// Where to look.
pub struct Sources {
    pub orders_db: String,
    pub processor_db: String,
    pub nats_url: String,
    pub nats_security: ordo_service_kit::nats::NatsSecurity,
    /// `OUTBOX_DEDUP_WINDOW` of the run.
    pub duplicate_window: std::time::Duration,
    /// Orders only poison messages named: never placed, left out.
    pub phantoms: HashSet<String>,
    pub payments: PaymentServiceClient<Channel>,
    pub processor: ProcessorServiceClient<Channel>,
    pub admin_token: String,
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// Waits (up to `deadline`) until no order is PENDING, the processor has
/// no payment left open (a refund or void due, a cancellation waiting on
/// its placement — phantoms aside), and both outboxes are empty.
pub async fn settle(sources: &Sources, deadline: Duration) -> anyhow::Result<(i64, i64, i64)> {
    let orders = Database::connect(&sources.orders_db).await?;
    let processor = Database::connect(&sources.processor_db).await?;
    let phantoms = sources
        .phantoms
        .iter()
        .map(|id| format!("'{id}'"))
        .chain(["'00000000-0000-0000-0000-000000000000'".to_owned()])
        .collect::<Vec<_>>()
        .join(",");
    let open_payments = format!(
        "SELECT count(*) FROM order_processing \
         WHERE state NOT IN ('confirmed', 'rejected', 'cancelled', 'refunded') \
           AND order_id::text NOT IN ({phantoms})"
    );
    let started = tokio::time::Instant::now();
    loop {
        let pending = count(
            &orders,
            "SELECT count(*) FROM orders WHERE status = 'PENDING'",
        )
        .await
        .unwrap_or(-1)
            + count(&processor, &open_payments).await.unwrap_or(-1);
        let outbox = count(&orders, "SELECT count(*) FROM outbox")
            .await
            .unwrap_or(-1);
        let processor_outbox = count(&processor, "SELECT count(*) FROM outbox")
            .await
            .unwrap_or(-1);
        if (pending, outbox, processor_outbox) == (0, 0, 0) || started.elapsed() > deadline {
            return Ok((pending, outbox, processor_outbox));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks invariants 1–5 over `acknowledged` (order id, declined by design).
pub async fn verify(sources: &Sources, acknowledged: &[(String, bool)]) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let (mut pending, mut outbox, mut processor_outbox) =
        settle(sources, Duration::from_secs(120)).await?;

    // Dead letters: each with its whole history, attempts 1..n; then an
    // operator's redrive, after which their orders must settle too.
    let dead = dead_letters(sources).await?;
    let incomplete: Vec<String> = dead
        .iter()
        .filter(|letter| {
            let attempts: Vec<u32> = letter
                .error_history
                .iter()
                .map(|entry| entry.attempt)
                .collect();
            attempts.is_empty() || attempts != (1..=attempts.len() as u32).collect::<Vec<_>>()
        })
        .map(|letter| letter.order_id.clone())
        .collect();
    report.violation(
        "a dead letter without its complete history (invariant 5)",
        &incomplete,
    );
    let mut poisoned = 0;
    for letter in &dead {
        let reason = letter.reason.clone();
        let poison = letter
            .headers
            .contains_key(&crate::poison::MARKER.to_lowercase())
            || letter.headers.contains_key(crate::poison::MARKER)
            || sources.phantoms.contains(&letter.order_id);
        if poison {
            // Nothing to redrive: purged, as an operator would, with a reason.
            poisoned += 1;
            let purged = as_an_operator(|| {
                let mut request = tonic::Request::new(PurgeDeadLetterRequest {
                    id: letter.id,
                    reason: "chaos: poison, never placed".into(),
                });
                authorize(&mut request, &sources.admin_token);
                let mut processor = sources.processor.clone();
                async move { processor.purge_dead_letter(request).await.map(drop) }
            })
            .await;
            if let Err(status) = purged {
                report.violations.push(format!(
                    "the purge of poison dead letter {} failed: {status:?}",
                    letter.id
                ));
            }
            continue;
        }
        report.facts.push(format!(
            "dead letter {} (order {}): {reason}; redriven",
            letter.id, letter.order_id
        ));
        as_an_operator(|| {
            let mut request = tonic::Request::new(RedriveDeadLetterRequest {
                id: letter.id,
                reason: "chaos: the faults are over".into(),
            });
            authorize(&mut request, &sources.admin_token);
            let mut processor = sources.processor.clone();
            async move { processor.redrive_dead_letter(request).await.map(drop) }
        })
        .await?;
    }
    if poisoned > 0 {
        report
            .facts
            .push(format!("{poisoned} poison dead letters purged"));
    }
    if !dead.is_empty() {
        (pending, outbox, processor_outbox) = settle(sources, Duration::from_secs(120)).await?;
    }
    report.facts.push(format!("pending orders {pending}, order-service outbox {outbox}, processor outbox {processor_outbox}"));
    if pending != 0 {
        report.violations.push(format!(
            "{pending} order(s) (or their payments) never reached a terminal state"
        ));
    }
    if outbox != 0 || processor_outbox != 0 {
        report.violations.push(format!(
            "outboxes not empty: {outbox} and {processor_outbox} rows"
        ));
    }

    let db = Database::connect(&sources.orders_db).await?;
    let statuses: HashMap<String, String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id::text AS id, status FROM orders".to_owned(),
        ))
        .await?
        .iter()
        .filter_map(|row| Some((row.try_get("", "id").ok()?, row.try_get("", "status").ok()?)))
        .collect();
    report.facts.push(format!(
        "{} orders acknowledged, {} in the database",
        acknowledged.len(),
        statuses.len()
    ));
    let known: HashSet<&String> = acknowledged.iter().map(|(id, _)| id).collect();
    let lost: Vec<String> = acknowledged
        .iter()
        .filter(|(id, _)| !statuses.contains_key(id))
        .map(|(id, _)| id.clone())
        .collect();
    report.violation("acknowledged but not stored", &lost);
    let extra: Vec<String> = statuses
        .keys()
        .filter(|id| !known.contains(id))
        .cloned()
        .collect();
    report.violation(
        "stored but never acknowledged (a retry made a second order)",
        &extra,
    );

    // The stream: each event once, one OrderPlaced per order, one verdict, in order.
    let stream = TestStream {
        name: "ORDERS".into(),
        subject_prefix: String::new(),
    };
    let messages = read_stream(sources, &stream).await?;
    report
        .facts
        .push(format!("{} messages in the ORDERS stream", messages.len()));
    let mut first_stored: HashMap<String, (time::OffsetDateTime, u64)> = HashMap::new();
    let mut duplicated = Vec::new();
    let mut republished_late = Vec::new();
    let mut per_order: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let poison = messages
        .iter()
        .filter(|message| message.header(crate::poison::MARKER).is_some())
        .count();
    if poison > 0 {
        report.facts.push(format!(
            "{poison} poison messages in the stream, left out of the checks below"
        ));
    }
    for message in messages
        .iter()
        .filter(|message| message.header(crate::poison::MARKER).is_none())
    {
        // Invariant 2: a re-publish inside the duplicate window is dropped
        // by JetStream; one outside it is stored again and dropped by the
        // consumers' inboxes, so it counts once below.
        if let Some((first, first_sequence)) = first_stored.get(&message.message_id) {
            let apart = message.stored_at - *first;
            if apart < sources.duplicate_window {
                duplicated.push(format!(
                    "{} ({}: sequences {first_sequence} and {}, {:.1}s apart)",
                    message.message_id,
                    message.subject,
                    message.sequence,
                    apart.as_seconds_f64()
                ));
            } else {
                republished_late.push(message.message_id.clone());
            }
            continue;
        }
        first_stored.insert(
            message.message_id.clone(),
            (message.stored_at, message.sequence),
        );
        let order = message.header("ce-subject").unwrap_or_default().to_owned();
        let kind = message
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        per_order
            .entry(order)
            .or_default()
            .push((message.sequence, kind));
    }
    report.violation(
        "an event stored twice within the duplicate window (by Nats-Msg-Id)",
        &duplicated,
    );
    if !republished_late.is_empty() {
        report.facts.push(format!(
            "{} event(s) re-published after the duplicate window, stored again and left to the inboxes (invariant 2), e.g. {}",
            republished_late.len(),
            republished_late[0]
        ));
    }
    let mut no_event = Vec::new();
    let mut wrong_events = Vec::new();
    let mut out_of_order = Vec::new();
    let mut status_mismatch = Vec::new();
    for (id, status) in &statuses {
        let Some(events) = per_order.get(id) else {
            no_event.push(id.clone());
            continue;
        };
        let kinds: Vec<&str> = events.iter().map(|(_, kind)| kind.as_str()).collect();
        let count = |kind: &str| kinds.iter().filter(|other| **other == kind).count();
        let verdicts: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|kind| *kind == "confirmed" || *kind == "rejected")
            .collect();
        if kinds.first() != Some(&"placed") {
            out_of_order.push(format!("{id} {kinds:?}"));
        }
        if status == "CANCELLED" {
            // Cancelled while pending (no verdict, or one that crossed the
            // cancellation) or after confirmation (then refunded).
            let refunded = count("refunded");
            let confirmed = count("confirmed");
            if count("placed") != 1
                || count("cancelled") != 1
                || verdicts.len() > 1
                || refunded > 1
                || (refunded == 1 && confirmed == 0 && verdicts.len() == 1)
            {
                wrong_events.push(format!("{id} {kinds:?}"));
            }
            continue;
        }
        if count("placed") != 1
            || verdicts.len() != 1
            || count("cancelled") + count("refunded") != 0
        {
            wrong_events.push(format!("{id} {kinds:?}"));
            continue;
        }
        let expected = if verdicts[0] == "confirmed" {
            "CONFIRMED"
        } else {
            "REJECTED"
        };
        if status != expected {
            status_mismatch.push(format!("{id} is {status} after {}", verdicts[0]));
        }
    }
    let orphan_events: Vec<String> = per_order
        .keys()
        .filter(|id| !statuses.contains_key(*id) && !sources.phantoms.contains(*id))
        .cloned()
        .collect();
    report.violation(
        "an order without its OrderPlaced event (invariant 1)",
        &no_event,
    );
    report.violation("an event without an order (invariant 1)", &orphan_events);
    report.violation(
        "not exactly one OrderPlaced and one verdict, or a cancellation's events amiss (invariants 2, 3)",
        &wrong_events,
    );
    report.violation("events out of order (invariant 4)", &out_of_order);
    report.violation("status differs from the verdict", &status_mismatch);

    // Payments, by the simulator's own books: at most one authorization per
    // order; declined ones never charged; CONFIRMED charged once; CANCELLED
    // and REJECTED charged nothing in the end.
    let counts: Vec<Counts> = futures::stream::iter(acknowledged.iter().cloned())
        .map(|(id, declined)| {
            let mut payments = sources.payments.clone();
            async move {
                let counts = payments
                    .get_payment_counts(GetPaymentCountsRequest {
                        order_id: id.clone(),
                    })
                    .await
                    .map(tonic::Response::into_inner)
                    .unwrap_or_default();
                Counts {
                    id,
                    declined,
                    authorizations: counts.authorizations,
                    approvals: counts.approvals,
                    refunds: counts.refunds,
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let status_of = |counts: &Counts| statuses.get(&counts.id).map(String::as_str);
    let orders_where = |predicate: &dyn Fn(&Counts) -> bool| -> Vec<String> {
        counts
            .iter()
            .filter(|counts| predicate(counts))
            .map(|counts| counts.id.clone())
            .collect()
    };
    report.violation(
        "authorized more than once (invariant 3)",
        &orders_where(&|c| c.authorizations > 1 || c.approvals > 1),
    );
    report.violation(
        "refunded more than charged (invariant 3)",
        &orders_where(&|c| c.refunds > c.approvals),
    );
    report.violation(
        "charged although declined by design",
        &orders_where(&|c| c.declined && c.approvals > 0),
    );
    report.violation(
        "CONFIRMED without exactly one approved authorization, unrefunded",
        &orders_where(&|c| status_of(c) == Some("CONFIRMED") && (c.approvals, c.refunds) != (1, 0)),
    );
    report.violation(
        "CANCELLED but charged (approvals minus refunds is not 0; invariant 3)",
        &orders_where(&|c| status_of(c) == Some("CANCELLED") && c.approvals != c.refunds),
    );
    report.violation(
        "REJECTED but charged (invariant 3)",
        &orders_where(&|c| status_of(c) == Some("REJECTED") && c.approvals != c.refunds),
    );
    let authorizations: u32 = counts.iter().map(|c| c.authorizations).sum();
    let refunds: u32 = counts.iter().map(|c| c.refunds).sum();
    let cancelled = statuses
        .values()
        .filter(|status| *status == "CANCELLED")
        .count();
    report.facts.push(format!(
        "{authorizations} authorizations and {refunds} refunds for {} orders, {cancelled} of them cancelled",
        counts.len()
    ));

    // The processor's record agrees with the order's status.
    let processor = Database::connect(&sources.processor_db).await?;
    let stages: HashMap<String, String> = processor
        .query_all_raw(Statement::from_string(
            processor.get_database_backend(),
            "SELECT order_id::text AS id, state FROM order_processing".to_owned(),
        ))
        .await?
        .iter()
        .filter_map(|row| Some((row.try_get("", "id").ok()?, row.try_get("", "state").ok()?)))
        .collect();
    let disagreeing: Vec<String> = statuses
        .iter()
        .filter(|(id, status)| {
            let stage = stages.get(*id).map(String::as_str);
            match status.as_str() {
                "CONFIRMED" => stage != Some("confirmed"),
                "REJECTED" => stage != Some("rejected"),
                "CANCELLED" => !matches!(stage, Some("cancelled" | "refunded")),
                _ => false,
            }
        })
        .map(|(id, status)| format!("{id} {status} / {:?}", stages.get(id)))
        .collect();
    report.violation(
        "the processor's record disagrees with the order's status",
        &disagreeing,
    );

    Ok(report)
}

/// `authorization: Bearer <token>` on `request`.
fn authorize<T>(request: &mut tonic::Request<T>, token: &str) {
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
}

/// Calls `call` until it succeeds, retrying UNAVAILABLE (the API says:
/// retry) for up to 30 s, as an operator would.
async fn as_an_operator<T, F, Fut>(call: F) -> Result<T, tonic::Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable && tries < 60 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            done => return done,
        }
    }
}

/// Every message of `stream`, retried as an operator would while a
/// restarted cluster still elects its leaders (an API request times out).
async fn read_stream(sources: &Sources, stream: &TestStream) -> anyhow::Result<Vec<StreamMessage>> {
    let mut attempt = 1;
    loop {
        let read = async {
            let options = sources
                .nats_security
                .apply(async_nats::ConnectOptions::new())
                .await?;
            let client = ordo_service_kit::nats::connect(&sources.nats_url, options).await?;
            stream
                .messages_via(client)
                .await
                .map_err(|err| anyhow::anyhow!("{err}"))
        };
        match read.await {
            Ok(messages) => return Ok(messages),
            Err(err) if attempt < 5 => {
                println!("chaos: reading the stream failed ({err}); again in 2 s");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(err) => return Err(err.context("reading the ORDERS stream")),
        }
    }
}

/// Every dead letter, page by page, each page asked for as an operator
/// would (again while the stream is unavailable, as after a leader change).
async fn dead_letters(sources: &Sources) -> anyhow::Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = as_an_operator(|| {
            let mut request = tonic::Request::new(ListDeadLettersRequest {
                page_size: 100,
                page_token: page_token.clone(),
                filter: None,
            });
            authorize(&mut request, &sources.admin_token);
            let mut processor = sources.processor.clone();
            async move {
                processor
                    .list_dead_letters(request)
                    .await
                    .map(|answer| answer.into_inner())
            }
        })
        .await?;
        all.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}
