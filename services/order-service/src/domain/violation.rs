//! Field violations: every rule a request breaks, collected before answering.

/// One broken rule: the field's path (`lines[2].sku`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// All violations found in one request; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records that `field` breaks a rule.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value of a parse, or records its error under `field`.
    pub fn check<T>(&mut self, field: impl Into<String>, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|description| self.add(field, description))
            .ok()
    }

    /// `Ok(value)` when nothing was recorded, else every violation.
    pub fn into_result<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Self> {
        match (self.0.is_empty(), value()) {
            (true, Some(value)) => Ok(value),
            _ => Err(self),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A single violation.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Self::default();
        violations.add(field, description);
        violations
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for violation in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}
