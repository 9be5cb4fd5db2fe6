//! What keeps a [`Reference`] true: each binary's tests compare it with
//! the code that reads its settings and with the README, so a setting
//! added, renamed or given another default without its declaration (or
//! the other way round) fails a test instead of going undocumented.
//!
//! The code is run through a lookup function, as services read settings:
//! - [`Drift::names`] records the names it asks for: exactly the declared
//!   ones (and their `_FILE` twins, which [`crate::Lookup`] asks for).
//! - [`Drift::defaults`] sets each declared [`Unset::Value`] and expects
//!   the same settings as with nothing set.
//! - [`Drift::readme`] expects the README's table to be the generated one.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use super::{Reference, Unset};

/// The differences found, one line each; none when the declaration holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drift(Vec<String>);

impl Drift {
    /// Whether the declaration holds.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names `read` asks for with nothing set, against the declared
    /// ones; `read` must accept the empty environment (defaults run).
    pub fn names<T, E: fmt::Display>(
        reference: &Reference,
        read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, E>,
    ) -> Self {
        let asked = RefCell::new(BTreeSet::new());
        let record = |name: &str| -> Option<String> {
            asked.borrow_mut().insert(name.to_owned());
            None
        };
        let mut drift = Self::default();
        if let Err(err) = read(&record) {
            drift.0.push(format!("nothing set is refused: {err}"));
        }
        let asked = asked.into_inner();
        let mut declared = BTreeSet::new();
        for name in reference.names() {
            if !declared.insert(name.to_owned()) {
                drift.0.push(format!("{name} is declared twice"));
            }
        }
        let expected: BTreeSet<String> = declared
            .iter()
            .flat_map(|name| [name.clone(), format!("{name}_FILE")])
            .collect();
        let undeclared: BTreeSet<&str> = asked.difference(&expected).map(String::as_str).collect();
        // `X_FILE` is asked for with `X`: one line says both.
        let twin = |name: &str| {
            name.strip_suffix("_FILE")
                .is_some_and(|base| undeclared.contains(base))
        };
        for name in undeclared.iter().filter(|name| !twin(name)) {
            drift.0.push(format!(
                "{name} is read but not declared in {}'s reference",
                reference.binary
            ));
        }
        for name in declared.iter().filter(|name| !asked.contains(*name)) {
            drift.0.push(format!(
                "{name} is declared in {}'s reference but not read",
                reference.binary
            ));
        }
        drift
    }

    /// Each declared [`Unset::Value`], set, against nothing set: `read`
    /// returns a fingerprint of the settings read (their `Debug` text, with
    /// anything random per read, such as an instance name, blanked).
    pub fn defaults<E: fmt::Display>(
        reference: &Reference,
        read: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<String, E>,
    ) -> Self {
        let mut drift = Self::default();
        let unset = match read(&|_: &str| None) {
            Ok(fingerprint) => fingerprint,
            Err(err) => {
                drift.0.push(format!("nothing set is refused: {err}"));
                return drift;
            }
        };
        for setting in reference.settings() {
            let Unset::Value(value) = setting.default else {
                continue;
            };
            let one = |name: &str| (name == setting.name).then(|| value.to_owned());
            match read(&one) {
                Ok(fingerprint) if fingerprint == unset => {}
                Ok(_) => drift.0.push(format!(
                    "{}={value} reads differently from {} unset: the declared default is not the one used",
                    setting.name, setting.name
                )),
                Err(err) => drift.0.push(format!(
                    "{}'s declared default {value:?} is refused: {err}",
                    setting.name
                )),
            }
        }
        drift
    }

    /// The README's table for this binary against the generated one.
    pub fn readme(reference: &Reference, readme: &str) -> Self {
        let (begin, end) = reference.readme_markers();
        let generated = reference.markdown();
        let fix = format!(
            "run scripts/settings-tables.sh, or put the output of `{} --settings-markdown` between {begin} and {end}",
            reference.binary
        );
        let Some(table) = reference.readme_table(readme) else {
            return Self(vec![format!("the README has no table for it: {fix}")]);
        };
        let differs = generated
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(table.lines().map(Some).chain(std::iter::repeat(None)))
            .take_while(|pair| *pair != (None, None))
            .enumerate()
            .find(|(_, (generated, found))| generated != found);
        match differs {
            None => Self::default(),
            Some((row, (generated, found))) => Self(vec![format!(
                "the README's {} table differs at its line {}: generated {:?}, found {:?}; {fix}",
                reference.binary,
                row + 1,
                generated.unwrap_or("(end)"),
                found.unwrap_or("(end)")
            )]),
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.0 {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Setting;
    use crate::{Lookup, SettingsError};

    const REFERENCE: Reference = Reference {
        binary: "demo",
        about: "reads two settings",
        groups: &[&[
            Setting::value("DEMO_PORT", "8080", "the port"),
            Setting::described("DEMO_NAME", "unset", "a name"),
        ]],
    };

    fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, SettingsError> {
        let env = Lookup(&lookup);
        let port = env.number("DEMO_PORT", 1..=65535, 8080_u16)?;
        let name = env.parse("DEMO_NAME", "a name", |raw| Some(raw.to_owned()))?;
        Ok(format!("{port} {name:?}"))
    }

    #[test]
    fn a_true_declaration_shows_no_drift() {
        assert!(Drift::names(&REFERENCE, read).is_empty());
        assert!(Drift::defaults(&REFERENCE, read).is_empty());
    }

    #[test]
    fn a_name_read_but_not_declared_and_one_declared_but_not_read_are_named() {
        let drift = Drift::names(&REFERENCE, |lookup| {
            let env = Lookup(&lookup);
            env.number("DEMO_PORT", 1..=65535, 8080_u16)?;
            env.flag("DEMO_VERBOSE", false)
        });
        let text = drift.to_string();
        assert!(
            text.contains("DEMO_VERBOSE is read but not declared"),
            "{text}"
        );
        assert!(!text.contains("DEMO_VERBOSE_FILE"), "said once: {text}");
        assert!(text.contains("DEMO_NAME is declared"), "{text}");
        assert!(!text.contains("DEMO_PORT"), "{text}");
    }

    #[test]
    fn a_declared_default_that_is_not_the_one_used_is_named() {
        const WRONG: Reference = Reference {
            groups: &[&[Setting::value("DEMO_PORT", "9090", "the port")]],
            ..REFERENCE
        };
        let text = Drift::defaults(&WRONG, read).to_string();
        assert!(text.contains("DEMO_PORT=9090 reads differently"), "{text}");
    }

    #[test]
    fn a_readme_table_that_differs_is_named_with_its_line() {
        let (begin, end) = REFERENCE.readme_markers();
        let good = format!("# demo\n{begin}\n{}{end}\n", REFERENCE.markdown());
        assert!(Drift::readme(&REFERENCE, &good).is_empty());
        let stale = good.replace("the port", "the old port");
        let text = Drift::readme(&REFERENCE, &stale).to_string();
        assert!(text.contains("differs at its line 3"), "{text}");
        assert!(text.contains("demo --settings-markdown"), "{text}");
        let short = good.replace("| `DEMO_NAME` | unset | a name |\n", "");
        let text = Drift::readme(&REFERENCE, &short).to_string();
        assert!(text.contains("found \"(end)\""), "{text}");
        assert!(!Drift::readme(&REFERENCE, "# no table").is_empty());
    }
}
