//! `ordo dlq list|show|redrive|purge`: the processor's dead letters.
//!
//! `list` pages through everything the filter matches (and with `--group`
//! folds it by error fingerprint in [`group_by_fingerprint`]). `redrive`
//! and `purge` check their selection and reason before any call
//! ([`selection`], [`check_reason`]), then follow the server's stream of
//! outcomes: one line each as it comes, a [`Summary`] at the end.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ordo_proto::ProcessorServiceClient;
use ordo_proto::processor::v1::{
    BulkOutcome, DeadLetter, DeadLetterSelection, ErrorEntry, GetDeadLetterRequest,
    ListDeadLettersRequest, PurgeDeadLettersRequest, RedriveDeadLettersRequest,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::args::{BulkArgs, DlqListArgs};
use crate::connect::{Connection, MAX_ANSWER_BYTES, Service};
use crate::exit::CliError;
use crate::render::{Format, Table, cell, fields, plural, short_id, write_json};
use crate::time::{format_optional, from_optional};

/// The largest page ListDeadLetters gives.
const PAGE_SIZE: u32 = 100;

/// The longest reason the services keep.
const MAX_REASON_CHARS: usize = 512;

/// One dead letter, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    pub id: u64,
    pub time: Option<DateTime<Utc>>,
    pub source_stream: String,
    pub source_subject: String,
    pub message_id: String,
    pub order_id: String,
    pub correlation_id: String,
    pub code: String,
    pub fingerprint: String,
    pub reason: String,
    /// Failed attempts in its error history.
    pub attempts: usize,
}

impl From<&DeadLetter> for DeadLetterView {
    fn from(letter: &DeadLetter) -> Self {
        Self {
            id: letter.id,
            time: from_optional(letter.dead_letter_time.as_ref()),
            source_stream: letter.source_stream.clone(),
            source_subject: letter.source_subject.clone(),
            message_id: letter.message_id.clone(),
            order_id: letter.order_id.clone(),
            correlation_id: letter.correlation_id.clone(),
            code: letter.code.clone(),
            fingerprint: letter.fingerprint.clone(),
            reason: letter.reason.clone(),
            attempts: letter.error_history.len(),
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorView {
    pub attempt: u32,
    pub time: Option<DateTime<Utc>>,
    pub code: String,
    pub text: String,
    pub instance: String,
    pub message_id: String,
    pub subject: String,
    pub correlation_id: String,
}

impl From<&ErrorEntry> for ErrorView {
    fn from(entry: &ErrorEntry) -> Self {
        Self {
            attempt: entry.attempt,
            time: from_optional(entry.occur_time.as_ref()),
            code: entry.code.clone(),
            text: entry.text.clone(),
            instance: entry.instance.clone(),
            message_id: entry.message_id.clone(),
            subject: entry.subject.clone(),
            correlation_id: entry.correlation_id.clone(),
        }
    }
}

/// One dead letter in full, as `dlq show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub summary: DeadLetterView,
    pub headers: BTreeMap<String, String>,
    pub payload_size: usize,
    pub payload_base64: String,
    pub error_history: Vec<ErrorView>,
}

impl From<&DeadLetter> for DeadLetterDetail {
    fn from(letter: &DeadLetter) -> Self {
        Self {
            summary: DeadLetterView::from(letter),
            headers: letter
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            payload_size: letter.payload.len(),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&letter.payload),
            error_history: letter.error_history.iter().map(ErrorView::from).collect(),
        }
    }
}

/// Dead letters with one cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub fingerprint: String,
    pub code: String,
    pub count: usize,
    pub first_time: Option<DateTime<Utc>>,
    pub last_time: Option<DateTime<Utc>>,
    /// The first dead letter of the group.
    pub sample_id: u64,
}

/// Dead letters grouped by fingerprint, the largest group first (then the
/// oldest, then by fingerprint).
pub fn group_by_fingerprint(letters: &[DeadLetterView]) -> Vec<GroupView> {
    let mut groups: BTreeMap<&str, GroupView> = BTreeMap::new();
    for letter in letters {
        let group = groups
            .entry(letter.fingerprint.as_str())
            .or_insert_with(|| GroupView {
                fingerprint: letter.fingerprint.clone(),
                code: letter.code.clone(),
                count: 0,
                first_time: letter.time,
                last_time: letter.time,
                sample_id: letter.id,
            });
        group.count += 1;
        group.first_time = earliest(group.first_time, letter.time);
        group.last_time = group.last_time.max(letter.time);
    }
    let mut groups: Vec<GroupView> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.first_time.cmp(&b.first_time))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    groups
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn client(connection: &Connection) -> Result<ProcessorServiceClient<Channel>, CliError> {
    Ok(
        ProcessorServiceClient::new(connection.channel(Service::Processor)?)
            .max_decoding_message_size(MAX_ANSWER_BYTES),
    )
}

/// What `dlq list` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ListView {
    Letters { dead_letters: Vec<DeadLetterView> },
    Groups { groups: Vec<GroupView> },
}

/// `ordo dlq list`.
pub async fn list(
    connection: &Connection,
    args: &DlqListArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut client = client(connection)?;
    let filter = args.filter.to_proto();
    let mut letters = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_dead_letters(connection.admin(ListDeadLettersRequest {
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
                filter: filter.clone(),
            }))
            .await
            .map_err(|status| CliError::rpc("processor ListDeadLetters", status))?
            .into_inner();
        letters.extend(page.dead_letters.iter().map(DeadLetterView::from));
        // A token that does not move on would page forever.
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            break;
        }
        page_token = page.next_page_token;
    }
    let view = if args.group {
        ListView::Groups {
            groups: group_by_fingerprint(&letters),
        }
    } else {
        ListView::Letters {
            dead_letters: letters,
        }
    };
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(out.write_all(render_list(&view).as_bytes())?),
    }
}

/// `dlq list` as a table.
pub fn render_list(view: &ListView) -> String {
    match view {
        ListView::Letters { dead_letters } => {
            let mut table = Table::new(&[
                "ID",
                "DEAD-LETTERED",
                "SUBJECT",
                "ORDER",
                "CODE",
                "ATTEMPTS",
                "REASON",
            ]);
            for letter in dead_letters {
                table.row([
                    letter.id.to_string(),
                    format_optional(letter.time),
                    letter.source_subject.clone(),
                    letter.order_id.clone(),
                    letter.code.clone(),
                    letter.attempts.to_string(),
                    letter.reason.clone(),
                ]);
            }
            format!(
                "{}{}\n",
                table.render(),
                plural(dead_letters.len(), "dead letter")
            )
        }
        ListView::Groups { groups } => {
            let mut table =
                Table::new(&["COUNT", "CODE", "FIRST", "LAST", "SAMPLE", "FINGERPRINT"]);
            for group in groups {
                table.row([
                    group.count.to_string(),
                    group.code.clone(),
                    format_optional(group.first_time),
                    format_optional(group.last_time),
                    group.sample_id.to_string(),
                    group.fingerprint.clone(),
                ]);
            }
            let total: usize = groups.iter().map(|group| group.count).sum();
            format!(
                "{}{} in {} (act on one: --fingerprint '<FINGERPRINT>')\n",
                table.render(),
                plural(total, "dead letter"),
                plural(groups.len(), "group")
            )
        }
    }
}

/// `ordo dlq show ID`.
pub async fn show(
    connection: &Connection,
    id: u64,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let letter = client(connection)?
        .get_dead_letter(connection.admin(GetDeadLetterRequest { id }))
        .await
        .map_err(|status| CliError::rpc("processor GetDeadLetter", status))?
        .into_inner()
        .dead_letter
        .ok_or_else(|| CliError::NotFound(format!("no dead letter {id}")))?;
    let view = DeadLetterDetail::from(&letter);
    match format {
        Format::Json => write_json(out, &view),
        Format::Table => Ok(out.write_all(render_detail(&view).as_bytes())?),
    }
}

/// `dlq show` as text: the dead letter, its headers, its error history.
pub fn render_detail(view: &DeadLetterDetail) -> String {
    let letter = &view.summary;
    let mut pairs: Vec<(&str, String)> = vec![
        ("dead letter", letter.id.to_string()),
        ("dead-lettered", format_optional(letter.time)),
        ("reason", letter.reason.clone()),
        ("code", letter.code.clone()),
        ("fingerprint", letter.fingerprint.clone()),
        ("order", letter.order_id.clone()),
        ("correlation id", letter.correlation_id.clone()),
        (
            "message",
            format!("{} from {}", letter.message_id, letter.source_stream),
        ),
        ("subject", letter.source_subject.clone()),
        ("payload", format!("{} bytes", view.payload_size)),
    ];
    let headers: Vec<String> = view
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    pairs.extend(headers.into_iter().map(|header| ("header", header)));
    let mut table = Table::new(&["ATTEMPT", "TIME", "CODE", "INSTANCE", "TEXT"]);
    for entry in &view.error_history {
        table.row([
            entry.attempt.to_string(),
            format_optional(entry.time),
            entry.code.clone(),
            entry.instance.clone(),
            entry.text.clone(),
        ]);
    }
    format!("{}\n{}", fields(&pairs), table.render())
}

/// The dead letters a bulk run acts on: the ids, or the filter, or all —
/// exactly one of them, or it is a usage error and nothing is called.
pub fn selection(args: &BulkArgs) -> Result<DeadLetterSelection, CliError> {
    let filter = args.filter.to_proto();
    let ways =
        usize::from(!args.ids.is_empty()) + usize::from(filter.is_some()) + usize::from(args.all);
    match ways {
        0 => Err(CliError::Usage(
            "say which dead letters: ids, a filter (--subject, --code, --since, --until, --order, --fingerprint) or --all".to_owned(),
        )),
        1 => Ok(DeadLetterSelection {
            ids: args.ids.clone(),
            filter,
            all: args.all,
        }),
        _ => Err(CliError::Usage(
            "ids, a filter and --all select differently: give one of them".to_owned(),
        )),
    }
}

/// The reason as the services take it: 1-512 characters, not blank.
pub fn check_reason(reason: &str) -> Result<String, CliError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(CliError::Usage("--reason must say why".to_owned()));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(CliError::Usage(format!(
            "--reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(reason.to_owned())
}

/// A bulk run's outcomes counted by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub done: u64,
    pub would: u64,
    pub failed: u64,
    pub not_found: u64,
    /// Results this version does not know, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, u64>,
}

impl Summary {
    /// Counts one outcome's result.
    pub fn add(&mut self, result: &str) {
        match result {
            "done" => self.done += 1,
            "would" => self.would += 1,
            "failed" => self.failed += 1,
            "not_found" => self.not_found += 1,
            other => *self.other.entry(other.to_owned()).or_default() += 1,
        }
    }

    /// Outcomes counted.
    pub fn total(&self) -> u64 {
        self.done + self.would + self.failed + self.not_found + self.other.values().sum::<u64>()
    }

    /// One line: `redrive: 3 done, 0 would, 1 failed, 0 not_found`.
    pub fn line(&self, action: &str) -> String {
        let mut line = format!(
            "{action}: {} done, {} would, {} failed, {} not_found",
            self.done, self.would, self.failed, self.not_found
        );
        for (result, count) in &self.other {
            line.push_str(&format!(", {count} {}", cell(result)));
        }
        line
    }
}

/// One outcome of a bulk run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeView {
    pub id: u64,
    pub order_id: String,
    pub subject: String,
    /// done, would, failed or not_found.
    pub result: String,
    pub detail: String,
}

impl From<BulkOutcome> for OutcomeView {
    fn from(outcome: BulkOutcome) -> Self {
        Self {
            id: outcome.id,
            order_id: outcome.order_id,
            subject: outcome.subject,
            result: outcome.result,
            detail: outcome.detail,
        }
    }
}

/// An outcome as one streamed line: `done       12  …444455556666  orders.placed  redriven …`.
pub fn outcome_line(outcome: &OutcomeView) -> String {
    format!(
        "{:<9}  {:>6}  {:<13}  {}  {}",
        cell(&outcome.result),
        outcome.id,
        short_id(&cell(&outcome.order_id)),
        cell(&outcome.subject),
        cell(&outcome.detail)
    )
}

/// What `dlq redrive` / `dlq purge` print with `-o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkView {
    pub action: &'static str,
    pub dry_run: bool,
    pub outcomes: Vec<OutcomeView>,
    pub summary: Summary,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

/// Which bulk RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Redrive,
    Purge,
}

impl BulkAction {
    fn name(self) -> &'static str {
        match self {
            Self::Redrive => "redrive",
            Self::Purge => "purge",
        }
    }
}

/// `ordo dlq redrive` / `ordo dlq purge`.
pub async fn bulk(
    connection: &Connection,
    action: BulkAction,
    args: &BulkArgs,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let selection = selection(args)?;
    let reason = check_reason(&args.reason)?;
    let max_per_second = args.rate.unwrap_or(0);
    let mut client = client(connection)?;
    let mut view = BulkView {
        action: action.name(),
        dry_run: args.dry_run,
        outcomes: Vec::new(),
        summary: Summary::default(),
        error: None,
    };
    let context = match action {
        BulkAction::Redrive => "processor RedriveDeadLetters",
        BulkAction::Purge => "processor PurgeDeadLetters",
    };
    let mut outcomes: OutcomeStream = match action {
        BulkAction::Redrive => OutcomeStream::Redrive(
            client
                .redrive_dead_letters(connection.admin_stream(RedriveDeadLettersRequest {
                    selection: Some(selection),
                    reason,
                    dry_run: args.dry_run,
                    max_per_second,
                }))
                .await
                .map_err(|status| CliError::rpc(context, status))?
                .into_inner(),
        ),
        BulkAction::Purge => OutcomeStream::Purge(
            client
                .purge_dead_letters(connection.admin_stream(PurgeDeadLettersRequest {
                    selection: Some(selection),
                    reason,
                    dry_run: args.dry_run,
                    max_per_second,
                }))
                .await
                .map_err(|status| CliError::rpc(context, status))?
                .into_inner(),
        ),
    };
    let mut broken = None;
    loop {
        match outcomes.next().await {
            Ok(Some(outcome)) => {
                let outcome = OutcomeView::from(outcome);
                view.summary.add(&outcome.result);
                if format == Format::Table {
                    writeln!(out, "{}", outcome_line(&outcome))?;
                    out.flush()?;
                }
                view.outcomes.push(outcome);
            }
            Ok(None) => break,
            Err(status) => {
                broken = Some(CliError::rpc(context, status));
                break;
            }
        }
    }
    view.error = broken.as_ref().map(ToString::to_string);
    match format {
        Format::Json => write_json(out, &view)?,
        Format::Table => writeln!(out, "{}", view.summary.line(view.action))?,
    }
    if let Some(error) = broken {
        return Err(error);
    }
    if view.summary.failed > 0 {
        return Err(CliError::Failed(format!(
            "{} of {} dead letters failed",
            view.summary.failed,
            view.summary.total()
        )));
    }
    Ok(())
}

/// The server stream of either bulk RPC, as outcomes.
enum OutcomeStream {
    Redrive(tonic::Streaming<ordo_proto::processor::v1::RedriveDeadLettersResponse>),
    Purge(tonic::Streaming<ordo_proto::processor::v1::PurgeDeadLettersResponse>),
}

impl OutcomeStream {
    async fn next(&mut self) -> Result<Option<BulkOutcome>, tonic::Status> {
        Ok(match self {
            Self::Redrive(stream) => stream
                .message()
                .await?
                .map(|response| response.outcome.unwrap_or_default()),
            Self::Purge(stream) => stream
                .message()
                .await?
                .map(|response| response.outcome.unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::args::FilterArgs;

    use super::*;

    fn at(raw: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(raw)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    fn letter(id: u64, fingerprint: &str, time: &str) -> DeadLetterView {
        DeadLetterView {
            id,
            time: at(time),
            source_stream: "ORDERS".into(),
            source_subject: "orders.placed".into(),
            message_id: format!("m-{id}"),
            order_id: format!("o-{id}"),
            correlation_id: String::new(),
            code: fingerprint.split(':').next().unwrap_or_default().to_owned(),
            fingerprint: fingerprint.to_owned(),
            reason: "attempts exhausted".into(),
            attempts: 5,
        }
    }

    #[test]
    fn groups_count_their_letters_largest_first() {
        let letters = [
            letter(
                1,
                "payment_timeout: deadline of # ms exceeded",
                "2025-05-01T12:00:05Z",
            ),
            letter(2, "undecodable: #", "2025-05-01T12:00:01Z"),
            letter(
                3,
                "payment_timeout: deadline of # ms exceeded",
                "2025-05-01T12:00:02Z",
            ),
            letter(
                4,
                "payment_timeout: deadline of # ms exceeded",
                "2025-05-01T12:00:09Z",
            ),
            letter(5, "", "2025-05-01T12:00:03Z"),
        ];
        let groups = group_by_fingerprint(&letters);
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups[0].fingerprint,
            "payment_timeout: deadline of # ms exceeded"
        );
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[0].code, "payment_timeout");
        assert_eq!(groups[0].first_time, at("2025-05-01T12:00:02Z"));
        assert_eq!(groups[0].last_time, at("2025-05-01T12:00:09Z"));
        assert_eq!(groups[0].sample_id, 1, "the first listed");
        // Equal counts: the older group first.
        assert_eq!(groups[1].fingerprint, "undecodable: #");
        assert_eq!(groups[2].fingerprint, "");
        assert!(group_by_fingerprint(&[]).is_empty());
    }

    fn bulk_args(ids: Vec<u64>, filter: FilterArgs, all: bool) -> BulkArgs {
        BulkArgs {
            ids,
            filter,
            all,
            reason: "provider back".into(),
            dry_run: false,
            rate: None,
        }
    }

    #[test]
    fn a_selection_is_ids_or_a_filter_or_all() {
        let code = FilterArgs {
            code: Some("payment_timeout".into()),
            ..FilterArgs::default()
        };
        assert_eq!(
            selection(&bulk_args(vec![3, 4], FilterArgs::default(), false)).unwrap(),
            DeadLetterSelection {
                ids: vec![3, 4],
                filter: None,
                all: false
            }
        );
        let by_code = selection(&bulk_args(Vec::new(), code.clone(), false)).unwrap();
        assert_eq!(by_code.filter.unwrap().code, "payment_timeout");
        assert!(
            selection(&bulk_args(Vec::new(), FilterArgs::default(), true))
                .unwrap()
                .all
        );

        for wrong in [
            bulk_args(Vec::new(), FilterArgs::default(), false),
            bulk_args(vec![1], code.clone(), false),
            bulk_args(vec![1], FilterArgs::default(), true),
            bulk_args(Vec::new(), code, true),
        ] {
            assert!(
                matches!(selection(&wrong), Err(CliError::Usage(_))),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn a_reason_says_something_within_the_limit() {
        assert_eq!(check_reason("  provider back \n").unwrap(), "provider back");
        assert!(check_reason(" ").is_err());
        assert!(check_reason(&"x".repeat(513)).is_err());
        assert!(check_reason(&"é".repeat(512)).is_ok());
    }

    #[test]
    fn the_summary_counts_every_result() {
        let mut summary = Summary::default();
        for result in ["done", "done", "failed", "would", "not_found", "skipped"] {
            summary.add(result);
        }
        assert_eq!(summary.total(), 6);
        assert_eq!(
            summary.line("redrive"),
            "redrive: 2 done, 1 would, 1 failed, 1 not_found, 1 skipped"
        );
        let json = serde_json::to_value(Summary::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"done": 0, "would": 0, "failed": 0, "not_found": 0})
        );
    }

    #[test]
    fn an_outcome_is_one_clean_line() {
        let line = outcome_line(&OutcomeView {
            id: 12,
            order_id: "0190f3a2-1111-7222-8333-444455556666".into(),
            subject: "orders.placed".into(),
            result: "done".into(),
            detail: "redriven to orders.placed\nas seq 42".into(),
        });
        assert_eq!(
            line,
            "done           12  …444455556666  orders.placed  redriven to orders.placed as seq 42"
        );
    }

    #[test]
    fn the_list_json_names_its_array() {
        let letters = vec![letter(1, "undecodable: #", "2025-05-01T12:00:01Z")];
        let json = serde_json::to_value(ListView::Letters {
            dead_letters: letters.clone(),
        })
        .unwrap();
        assert_eq!(json["dead_letters"][0]["id"], 1);
        assert_eq!(json["dead_letters"][0]["time"], "2025-05-01T12:00:01Z");
        let grouped = serde_json::to_value(ListView::Groups {
            groups: group_by_fingerprint(&letters),
        })
        .unwrap();
        assert_eq!(grouped["groups"][0]["count"], 1);
        assert_eq!(grouped["groups"][0]["sample_id"], 1);
    }

    #[test]
    fn the_group_table_says_how_to_act_on_a_group() {
        let letters = [letter(7, "undecodable: #", "2025-05-01T12:00:01Z")];
        let text = render_list(&ListView::Groups {
            groups: group_by_fingerprint(&letters),
        });
        assert!(text.starts_with("COUNT  CODE         FIRST"), "{text}");
        assert!(
            text.ends_with(
                "1 dead letter in 1 group (act on one: --fingerprint '<FINGERPRINT>')\n"
            ),
            "{text}"
        );
    }
}
