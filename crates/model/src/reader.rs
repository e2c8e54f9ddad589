//! Reads a JSON object field by field, collecting every problem instead of stopping at the first.
//!
//! serde's derive stops at the first error and cannot say "and these three fields too", so
//! payloads are decoded into a `serde_json::Value` and walked with [`ObjectReader`]. Each field is
//! turned into its validated type by a `parse` function; problems are recorded with their path.

use serde_json::{Map, Value};

use crate::limits::Limits;
use crate::problems::{FieldProblem, Problems};

/// Collects problems while a payload is read.
#[derive(Debug, Default)]
pub(crate) struct ProblemSink(Vec<FieldProblem>);

impl ProblemSink {
    pub(crate) fn push(&mut self, path: String, reason: impl Into<String>) {
        self.0.push(FieldProblem {
            path,
            reason: reason.into(),
        });
    }

    /// `Ok(value)` when nothing was recorded, otherwise every problem.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Problems> {
        match (Problems::from_vec(self.0), value) {
            (None, Some(value)) => Ok(value),
            (Some(problems), _) => Err(problems),
            (None, None) => Err(Problems::single("", "the payload could not be read")),
        }
    }
}

/// Joins a parent path and a key: `""` + `id` is `id`, `attachments[0]` + `url` is `attachments[0].url`.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A JSON object being read; reports missing, mistyped and unknown fields.
pub(crate) struct ObjectReader<'a> {
    object: &'a Map<String, Value>,
    path: String,
    known: &'static [&'static str],
}

impl<'a> ObjectReader<'a> {
    /// Starts reading `value`, which must be an object whose keys are all in `known`.
    pub(crate) fn new(
        value: &'a Value,
        path: String,
        known: &'static [&'static str],
        sink: &mut ProblemSink,
    ) -> Option<Self> {
        let Some(object) = value.as_object() else {
            let at = if path.is_empty() {
                "the payload"
            } else {
                "this value"
            };
            sink.push(
                path,
                format!("{at} must be a JSON object, got {}", kind(value)),
            );
            return None;
        };
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
                sink.push(join(&path, key), unknown_field_reason(key, known));
            }
        }
        Some(Self {
            object,
            path,
            known,
        })
    }

    /// A field that must be present and not null.
    pub(crate) fn required<T>(
        &self,
        key: &'static str,
        sink: &mut ProblemSink,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        debug_assert!(self.known.contains(&key));
        let path = join(&self.path, key);
        match self.object.get(key) {
            None | Some(Value::Null) => {
                sink.push(path, "required field is missing");
                None
            }
            Some(value) => parse(value).map_err(|reason| sink.push(path, reason)).ok(),
        }
    }

    /// A field that may be absent or null (`Ok(None)`); when present it must parse.
    pub(crate) fn optional<T>(
        &self,
        key: &'static str,
        sink: &mut ProblemSink,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        debug_assert!(self.known.contains(&key));
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|reason| sink.push(join(&self.path, key), reason)),
        }
    }

    /// The raw value of a field, for fields whose parsing needs the path (arrays of objects).
    pub(crate) fn raw(&self, key: &'static str) -> Option<&'a Value> {
        debug_assert!(self.known.contains(&key));
        self.object.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// "unknown field", with a suggestion when the key is a known field spelled differently
/// (`conversationId` for `conversation_id`): a typo must not silently drop data.
fn unknown_field_reason(key: &str, known: &[&str]) -> String {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let squashed = squash(key);
    // The same name spelled differently, else one within two typos.
    let similar = known.iter().find(|k| squash(k) == squashed).or_else(|| {
        known
            .iter()
            .filter(|k| squashed.len() > 3 && edit_distance(&squash(k), &squashed) <= 2)
            .min_by_key(|k| edit_distance(&squash(k), &squashed))
    });
    match similar {
        Some(k) => format!("unknown field; did you mean `{k}`?"),
        None => format!("unknown field; expected one of: {}", known.join(", ")),
    }
}

/// The Levenshtein distance between two short names (fields are a few dozen characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The JSON type of a value, for "must be a string, got number" messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as a string, or a reason naming what it was instead.
pub(crate) fn as_str(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("must be a string, got {}", kind(value)))
}

/// A parser for a string field whose rules depend on the limits: `text(MessageId::parse, limits)`.
pub(crate) fn text<'a, T: 'a>(
    parse: fn(&str, &Limits) -> Result<T, String>,
    limits: &'a Limits,
) -> impl FnOnce(&Value) -> Result<T, String> + 'a {
    move |v| as_str(v).and_then(|s| parse(s, limits))
}

pub(crate) fn as_bool(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("must be true or false, got {}", kind(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_snake_case_field_for_a_camel_case_key() {
        let reason = unknown_field_reason("conversationId", &["id", "conversation_id"]);
        assert_eq!(reason, "unknown field; did you mean `conversation_id`?");
    }

    #[test]
    fn lists_the_known_fields_when_nothing_is_close() {
        let reason = unknown_field_reason("colour", &["id", "name"]);
        assert_eq!(reason, "unknown field; expected one of: id, name");
    }

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "id"), "id");
        assert_eq!(join("attachments[2]", "url"), "attachments[2].url");
    }
}
