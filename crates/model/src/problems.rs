//! Validation problems: every one found in a payload, each with its JSON path and reason.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One problem with one field of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldProblem {
    /// Where the problem is, as a JSON path from the payload's root, e.g. `attachments[0].url`.
    pub path: String,
    /// What is wrong and what to do about it.
    pub reason: String,
}

/// Every problem found in one payload. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(Vec<FieldProblem>);

impl Problems {
    /// The problems, in the order the fields were checked.
    pub fn as_slice(&self) -> &[FieldProblem] {
        &self.0
    }

    /// A payload-level problem (the payload is not an object, the body is not JSON, ...).
    pub fn single(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self(vec![FieldProblem {
            path: path.into(),
            reason: reason.into(),
        }])
    }

    /// Wraps a list that is known to hold at least one problem.
    pub(crate) fn from_vec(problems: Vec<FieldProblem>) -> Option<Self> {
        (!problems.is_empty()).then_some(Self(problems))
    }
}

impl std::error::Error for Problems {}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if p.path.is_empty() {
                write!(f, "{}", p.reason)?;
            } else {
                write!(f, "`{}`: {}", p.path, p.reason)?;
            }
        }
        Ok(())
    }
}
