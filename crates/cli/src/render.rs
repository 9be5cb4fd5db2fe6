//! Output: aligned tables for people, JSON for scripts.
//!
//! Text that comes from a service (reasons, error texts, ids) is made one
//! line with no control characters before it reaches a terminal, so a
//! hostile or garbled value cannot move the cursor or fake a line. JSON
//! escapes everything itself.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use crate::exit::CliError;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// `text` as one line: line breaks and tabs become spaces, other control
/// characters U+FFFD.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A table cell: [`one_line`], and `-` for nothing.
pub fn cell(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        one_line(text)
    }
}

/// A table with a header row; columns as wide as their widest cell, two
/// spaces apart, the last one unpadded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell goes through [`cell`].
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(cells.into_iter().map(|text| cell(text.as_ref())).collect());
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (width, text) in widths.iter_mut().zip(line) {
                *width = (*width).max(text.chars().count());
            }
        }
        let mut rendered = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (column, cell) in line.iter().enumerate() {
                if column > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[column].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            rendered.push_str(text.trim_end());
            rendered.push('\n');
        }
        rendered
    }
}

/// Named values, one per line, the values aligned: `status    pending`.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut rendered = String::new();
    for (name, value) in pairs {
        let line = format!("{name:<width$}  {}", cell(value));
        rendered.push_str(line.trim_end());
        rendered.push('\n');
    }
    rendered
}

/// Writes `view` as pretty JSON and a newline.
pub fn write_json(out: &mut dyn Write, view: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(view)
        .map_err(|error| CliError::Failed(format!("cannot encode the output as JSON: {error}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Prints a warning on stderr.
pub fn warn(text: &str) {
    eprintln!("warning: {}", one_line(text));
}

/// The lower-case name of a protobuf enum value without its prefix:
/// `ORDER_STATUS_PENDING` → `pending`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// An amount in minor units as the currency writes it: `1800`, `EUR` →
/// `18.00 EUR` (ISO 4217 minor-unit exponents; 2 for the rest).
pub fn money(minor: i64, currency: &str) -> String {
    let exponent: u32 = match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    };
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    let amount = if exponent == 0 {
        magnitude.to_string()
    } else {
        let scale = 10_u64.pow(exponent);
        format!(
            "{}.{:0width$}",
            magnitude / scale,
            magnitude % scale,
            width = exponent as usize
        )
    };
    format!("{sign}{amount} {}", cell(currency))
}

/// The last characters of an id, enough to tell ids apart in a table
/// (the JSON output has them whole). The tail, because a UUID v7 starts
/// with its time: ids made together share their first characters.
pub fn short_id(id: &str) -> String {
    const KEEP: usize = 12;
    let length = id.chars().count();
    if length <= KEEP + 1 {
        id.to_owned()
    } else {
        let tail: String = id.chars().skip(length - KEEP).collect();
        format!("…{tail}")
    }
}

/// `count` and the noun, plural unless one: `1 dead letter`, `3 dead letters`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_not_padded() {
        let mut table = Table::new(&["ID", "STATUS", "REASON"]);
        table.row(["1", "confirmed", ""]);
        table.row(["12345", "dead", "a\nb"]);
        assert_eq!(
            table.render(),
            "ID     STATUS     REASON\n\
             1      confirmed  -\n\
             12345  dead       a b\n"
        );
    }

    #[test]
    fn a_table_without_rows_is_its_header() {
        let table = Table::new(&["A", "B"]);
        assert!(table.is_empty());
        assert_eq!(table.render(), "A  B\n");
    }

    #[test]
    fn wide_characters_count_once() {
        let mut table = Table::new(&["X", "Y"]);
        table.row(["é…", "1"]);
        assert_eq!(table.render(), "X   Y\né…  1\n");
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("status", "pending".into()), ("customer", String::new())]),
            "status    pending\ncustomer  -\n"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(
            one_line("a\tb\r\nc\x1b[2J\u{9b}"),
            "a b  c\u{fffd}[2J\u{fffd}"
        );
        assert_eq!(cell(""), "-");
    }

    #[test]
    fn amounts_follow_the_currency() {
        assert_eq!(money(1800, "EUR"), "18.00 EUR");
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(-1250, "USD"), "-12.50 USD");
        assert_eq!(money(1800, "JPY"), "1800 JPY");
        assert_eq!(money(1800, "KWD"), "1.800 KWD");
        assert_eq!(money(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(
            enum_name("ORDER_STATUS_PENDING", "ORDER_STATUS_"),
            "pending"
        );
        assert_eq!(
            enum_name("PROCESSING_STATE_DEAD_LETTERED", "PROCESSING_STATE_"),
            "dead_lettered"
        );
    }

    #[test]
    fn ids_are_cut_short() {
        assert_eq!(
            short_id("0190f3a2-1111-7222-8333-444455556666"),
            "…444455556666"
        );
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("1234567890123"), "1234567890123");
        assert_eq!(plural(1, "group"), "1 group");
        assert_eq!(plural(0, "group"), "0 groups");
    }
}
