//! Which dead letters an operator means: each dead letter's error code and
//! fingerprint (so dead letters with one cause group together), a filter
//! over them, and the selection a bulk redrive or purge acts on. Pure: the
//! listing and the bulk runner carry out what these decide.

use chrono::{DateTime, Utc};
use ordo_proto::processor::v1 as api;

use crate::dead_letter::DeadLetter;

/// The code of a dead letter whose last delivery was refused by the open
/// breaker (no failed attempt recorded).
pub const DELIVERY_CAP: &str = "delivery_cap";

/// Why the dead letter is one: the last failed attempt's code, or
/// [`DELIVERY_CAP`] when the delivery cap ran out with no attempt failing,
/// or `unknown`.
pub fn code_of(dead_letter: &DeadLetter) -> String {
    match dead_letter.history.last() {
        Some(last) => last.code.clone(),
        None if dead_letter.reason.contains("PROCESSOR_MAX_DELIVER") => DELIVERY_CAP.to_owned(),
        None => "unknown".to_owned(),
    }
}

/// The code and the error text with what differs between occurrences
/// masked: ids, numbers and quoted values (`payment_timeout: deadline of # ms
/// exceeded for "…"`).
pub fn fingerprint_of(dead_letter: &DeadLetter) -> String {
    let text = dead_letter
        .history
        .last()
        .map_or(dead_letter.reason.as_str(), |last| last.text.as_str());
    format!("{}: {}", code_of(dead_letter), normalised(text))
}

/// `text` with quoted values replaced by `"…"`, and runs of digits, hex ids
/// and UUIDs (any word with a digit in it) by `#`; whitespace collapsed;
/// at most 200 characters.
pub fn normalised(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut word, &mut out);
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                }
                out.push(c);
                out.push('…');
                out.push(c);
            }
            c if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' => word.push(c),
            c if c.is_whitespace() => {
                flush(&mut word, &mut out);
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            }
            c => {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
    let trimmed = out.trim_end();
    trimmed.chars().take(200).collect()
}

/// A filter over dead letters, checked: every part given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub subject: Option<String>,
    pub code: Option<String>,
    pub order_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
}

impl Filter {
    /// The filter a request names; an error names the field that is wrong.
    pub fn from_proto(filter: Option<&api::DeadLetterFilter>) -> Result<Self, (String, String)> {
        let Some(filter) = filter else {
            return Ok(Self::default());
        };
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        let time = |field: &str, at: Option<&prost_types::Timestamp>| {
            at.map(|at| {
                u32::try_from(at.nanos)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(at.seconds, nanos))
                    .ok_or_else(|| (format!("filter.{field}"), "not a valid time".to_owned()))
            })
            .transpose()
        };
        let order_id = text(&filter.order_id);
        if let Some(order_id) = &order_id
            && uuid::Uuid::parse_str(order_id).is_err()
        {
            return Err(("filter.order_id".to_owned(), "must be a UUID".to_owned()));
        }
        Ok(Self {
            subject: text(&filter.subject),
            code: text(&filter.code),
            order_id: order_id.map(|id| id.to_lowercase()),
            since: time("since", filter.since.as_ref())?,
            until: time("until", filter.until.as_ref())?,
            fingerprint: text(&filter.fingerprint),
        })
    }

    /// Whether the filter names anything at all.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether `dead_letter` passes.
    pub fn matches(&self, dead_letter: &DeadLetter) -> bool {
        let same = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        let at = dead_letter.dead_lettered_at;
        same(&self.subject, &dead_letter.source_subject)
            && same(&self.code, &code_of(dead_letter))
            && same(
                &self.order_id,
                &dead_letter
                    .order_id
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase(),
            )
            && self
                .since
                .is_none_or(|since| at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| at.is_some_and(|at| at < until))
            && same(&self.fingerprint, &fingerprint_of(dead_letter))
    }
}

/// What a bulk call acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids, in the order given, duplicates dropped.
    Ids(Vec<u64>),
    /// Every dead letter the filter matches (all of them for an empty one).
    Matching(Filter),
}

impl Selection {
    /// The selection a request names. Nothing named is refused, so a
    /// forgotten filter never means "everything".
    pub fn from_proto(
        selection: Option<&api::DeadLetterSelection>,
    ) -> Result<Self, (String, String)> {
        let nothing = || {
            (
                "selection".to_owned(),
                "name dead letter ids, a filter, or all".to_owned(),
            )
        };
        let selection = selection.ok_or_else(nothing)?;
        if !selection.ids.is_empty() {
            if selection.ids.contains(&0) {
                return Err(("selection.ids".to_owned(), "ids are 1 or more".to_owned()));
            }
            let mut ids = Vec::with_capacity(selection.ids.len());
            for id in &selection.ids {
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
            return Ok(Self::Ids(ids));
        }
        let filter = Filter::from_proto(selection.filter.as_ref())?;
        match (filter.is_empty(), selection.all) {
            (true, false) => Err(nothing()),
            _ => Ok(Self::Matching(filter)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processing::ErrorEntry;

    fn dead_letter(code: &str, text: &str) -> DeadLetter {
        DeadLetter {
            id: 1,
            source_stream: "ORDERS".into(),
            source_subject: "orders.placed".into(),
            message_id: "m".into(),
            order_id: Some("0190a8c2-0000-7000-8000-000000000001".into()),
            reason: "attempts exhausted".into(),
            dead_lettered_at: DateTime::from_timestamp(1_800_000_000, 0),
            headers: Default::default(),
            payload: Default::default(),
            source_sequence: 3,
            payload_omitted: false,
            history: vec![ErrorEntry {
                message_id: "m".into(),
                subject: "orders.placed".into(),
                attempt: 1,
                occurred_at: Utc::now(),
                code: code.into(),
                text: text.into(),
                instance: "p".into(),
                correlation_id: String::new(),
            }],
        }
    }

    #[test]
    fn one_cause_has_one_fingerprint_whatever_the_ids_and_numbers() {
        let a = dead_letter(
            "payment_timeout",
            "deadline of 2000 ms exceeded for order 0190a8c2-1111",
        );
        let b = dead_letter(
            "payment_timeout",
            "deadline of 3500 ms exceeded for order 0190ffff-2222",
        );
        assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
        assert_eq!(
            fingerprint_of(&a),
            "payment_timeout: deadline of # ms exceeded for order #"
        );
        let c = dead_letter("payment_refused", "deadline of 2000 ms exceeded");
        assert_ne!(fingerprint_of(&a), fingerprint_of(&c));
    }

    #[test]
    fn quoted_values_are_masked_and_long_texts_bounded() {
        assert_eq!(
            normalised("unknown sku \"abc\" in  line 'x y'"),
            "unknown sku \"…\" in line '…'"
        );
        assert_eq!(normalised(&"word ".repeat(100)).chars().count(), 200);
        assert_eq!(normalised("a\r\nb"), "a b");
    }

    #[test]
    fn without_history_the_code_comes_from_the_reason() {
        let mut capped = dead_letter("x", "y");
        capped.history.clear();
        capped.reason = "deferred on its last allowed delivery (PROCESSOR_MAX_DELIVER)".into();
        assert_eq!(code_of(&capped), DELIVERY_CAP);
        capped.reason = "something".into();
        assert_eq!(code_of(&capped), "unknown");
    }

    #[test]
    fn every_part_of_a_filter_must_match() {
        let letter = dead_letter("payment_timeout", "slow");
        let filter = |f: Filter| f.matches(&letter);
        assert!(filter(Filter::default()));
        assert!(filter(Filter {
            subject: Some("orders.placed".into()),
            code: Some("payment_timeout".into()),
            ..Default::default()
        }));
        assert!(!filter(Filter {
            subject: Some("orders.placed".into()),
            code: Some("payment_refused".into()),
            ..Default::default()
        }));
        assert!(filter(Filter {
            order_id: Some("0190a8c2-0000-7000-8000-000000000001".into()),
            ..Default::default()
        }));
        let at = letter.dead_lettered_at.unwrap();
        assert!(filter(Filter {
            since: Some(at),
            until: Some(at + chrono::Duration::seconds(1)),
            ..Default::default()
        }));
        assert!(!filter(Filter {
            until: Some(at),
            ..Default::default()
        }));
        assert!(filter(Filter {
            fingerprint: Some("payment_timeout: slow".into()),
            ..Default::default()
        }));
    }

    #[test]
    fn a_selection_must_name_something() {
        assert!(Selection::from_proto(None).is_err());
        assert!(Selection::from_proto(Some(&api::DeadLetterSelection::default())).is_err());
        assert_eq!(
            Selection::from_proto(Some(&api::DeadLetterSelection {
                all: true,
                ..Default::default()
            })),
            Ok(Selection::Matching(Filter::default()))
        );
        assert_eq!(
            Selection::from_proto(Some(&api::DeadLetterSelection {
                ids: vec![3, 1, 3],
                ..Default::default()
            })),
            Ok(Selection::Ids(vec![3, 1]))
        );
        assert!(
            Selection::from_proto(Some(&api::DeadLetterSelection {
                ids: vec![0],
                ..Default::default()
            }))
            .is_err()
        );
        let bad_order = api::DeadLetterSelection {
            filter: Some(api::DeadLetterFilter {
                order_id: "nope".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            Selection::from_proto(Some(&bad_order)).unwrap_err().0,
            "filter.order_id"
        );
    }
}
