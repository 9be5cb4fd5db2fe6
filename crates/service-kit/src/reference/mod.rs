//! The one declaration of a binary's settings: each one's name, what it is
//! when unset, and what it means. `--help`, `--list-settings`, the README's
//! configuration tables and the chart check all come from it.
//!
//! - [`Reference`]: a binary's settings, in groups; renders the help
//!   listing and the README's Markdown table, and finds that table between
//!   the binary's markers in the README.
//! - [`groups`]: the settings several binaries read the same way (the
//!   server, TLS, telemetry, NATS, the outbox relay, …), declared once.
//! - [`drift`]: the checks that keep a declaration true to the code that
//!   reads the settings: the same names, the same defaults.

pub mod drift;
pub mod groups;

pub use drift::Drift;

/// One setting as `--help` and the README show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub default: Unset,
    /// What it does, in Markdown (code in backticks).
    pub meaning: &'static str,
}

/// What a setting is when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// The value used, written as one would set it: setting it changes
    /// nothing ([`drift::Drift::defaults`] checks that).
    Value(&'static str),
    /// What happens instead, in words: `unset (no export)`, `the URL's host`.
    Described(&'static str),
}

impl Setting {
    /// A setting whose default is a value one could set.
    pub const fn value(name: &'static str, default: &'static str, meaning: &'static str) -> Self {
        Self {
            name,
            default: Unset::Value(default),
            meaning,
        }
    }

    /// A setting whose default is said in words (unset, derived, off).
    pub const fn described(
        name: &'static str,
        default: &'static str,
        meaning: &'static str,
    ) -> Self {
        Self {
            name,
            default: Unset::Described(default),
            meaning,
        }
    }
}

/// Every setting one binary reads, in the groups it shows them in.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    /// The binary's name, as in `--version` and the README's markers.
    pub binary: &'static str,
    /// What the binary does, in one line.
    pub about: &'static str,
    pub groups: &'static [&'static [Setting]],
}

/// Said once wherever settings are listed, instead of a `_FILE` twin per row.
pub const FILE_NOTE: &str = "Every setting NAME may instead be given as NAME_FILE, the path of a file holding the value (setting both is an error).";

impl Reference {
    /// Every setting, in order.
    pub fn settings(&self) -> impl Iterator<Item = &'static Setting> + use<> {
        self.groups.iter().flat_map(|group| group.iter())
    }

    /// Every setting's name, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.settings().map(|setting| setting.name).collect()
    }

    /// The README's table: `| variable | default | meaning |`, one row each.
    pub fn markdown(&self) -> String {
        let mut table = String::from("| variable | default | meaning |\n|---|---|---|\n");
        for setting in self.settings() {
            let default = match setting.default {
                Unset::Value(value) => format!("`{value}`"),
                Unset::Described(words) => words.to_owned(),
            };
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                setting.name,
                cell(&default),
                cell(setting.meaning)
            ));
        }
        table
    }

    /// The settings part of `--help`: each name with its default, and its
    /// meaning indented below (backticks dropped).
    pub fn help(&self) -> String {
        let mut text = format!("Settings, from the environment. {FILE_NOTE}\n");
        for setting in self.settings() {
            let default = match setting.default {
                Unset::Value(value) => value.to_owned(),
                Unset::Described(words) => words.replace('`', ""),
            };
            text.push_str(&format!(
                "\n  {}  (default: {default})\n      {}\n",
                setting.name,
                setting.meaning.replace('`', "")
            ));
        }
        text
    }

    /// The comment lines around this binary's table in the README.
    pub fn readme_markers(&self) -> (String, String) {
        (
            format!("<!-- settings:{}:begin -->", self.binary),
            format!("<!-- settings:{}:end -->", self.binary),
        )
    }

    /// What the README holds between this binary's markers, if both are there.
    pub fn readme_table<'a>(&self, readme: &'a str) -> Option<&'a str> {
        let (begin, end) = self.readme_markers();
        let (_, rest) = readme.split_once(&format!("{begin}\n"))?;
        let (table, _) = rest.split_once(&end)?;
        Some(table)
    }
}

/// `text` as one Markdown table cell: a `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: Reference = Reference {
        binary: "demo",
        about: "shows settings",
        groups: &[
            &[Setting::value(
                "A_ADDR",
                "0.0.0.0:1",
                "where `a` | b listens",
            )],
            &[Setting::described(
                "B_TOKEN",
                "unset (`b` off)",
                "b's token",
            )],
        ],
    };

    #[test]
    fn the_table_has_a_row_per_setting() {
        assert_eq!(
            REFERENCE.markdown(),
            "| variable | default | meaning |\n|---|---|---|\n\
             | `A_ADDR` | `0.0.0.0:1` | where `a` \\| b listens |\n\
             | `B_TOKEN` | unset (`b` off) | b's token |\n"
        );
        assert_eq!(REFERENCE.names(), ["A_ADDR", "B_TOKEN"]);
    }

    #[test]
    fn help_shows_defaults_and_meanings_without_markdown() {
        let help = REFERENCE.help();
        assert!(help.contains("NAME_FILE"), "{help}");
        assert!(
            help.contains("  A_ADDR  (default: 0.0.0.0:1)\n      where a | b listens\n"),
            "{help}"
        );
        assert!(help.contains("B_TOKEN  (default: unset (b off))"), "{help}");
    }

    #[test]
    fn the_readme_table_is_found_between_the_markers() {
        let readme = format!(
            "intro\n<!-- settings:demo:begin -->\n{}<!-- settings:demo:end -->\nrest",
            REFERENCE.markdown()
        );
        assert_eq!(
            REFERENCE.readme_table(&readme),
            Some(REFERENCE.markdown().as_str())
        );
        assert_eq!(REFERENCE.readme_table("no markers"), None);
    }
}
