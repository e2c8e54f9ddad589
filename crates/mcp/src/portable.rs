//! Tool schemas every MCP client reads alike.
//!
//! schemars writes an optional value as `"type": ["string", "null"]`. JSON Schema allows it, but
//! several MCP clients (and the Inspector's portability check) only read a single `type`, so
//! each such schema is rewritten as `anyOf` of one schema per type, `null` last. Annotations
//! (description, default, examples) stay on the outer schema; everything that constrains the
//! value (format, lengths, items...) moves into the branch of its type.

use rmcp::model::{JsonObject, Tool};
use serde_json::{Map, Value};

/// Keywords that describe a value rather than constrain it: they stay on the outer schema.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords whose value is a schema.
pub(crate) const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];

/// Keywords whose value is a list of schemas.
pub(crate) const SCHEMA_LIST_KEYWORDS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// Keywords whose value maps names to schemas.
pub(crate) const SCHEMA_MAP_KEYWORDS: &[&str] = &["properties", "$defs", "patternProperties"];

/// Rewrites a tool's input and output schemas in place.
pub(crate) fn tool(tool: &mut Tool) {
    let mut input = tool.input_schema.as_ref().clone();
    // Which draft it is: every client assumes 2020-12 anyway, and the list stays smaller.
    input.remove("$schema");
    schema_object(&mut input);
    tool.input_schema = input.into();
    if let Some(output) = &tool.output_schema {
        let mut output = output.as_ref().clone();
        schema_object(&mut output);
        tool.output_schema = Some(output.into());
    }
}

/// Rewrites one schema and every schema inside it (never examples, defaults or consts: those are
/// data, whatever keys they hold).
pub(crate) fn schema_object(schema: &mut JsonObject) {
    for keyword in SCHEMA_KEYWORDS {
        if let Some(Value::Object(inner)) = schema.get_mut(*keyword) {
            schema_object(inner);
        }
    }
    for keyword in SCHEMA_LIST_KEYWORDS {
        if let Some(Value::Array(list)) = schema.get_mut(*keyword) {
            for inner in list.iter_mut().filter_map(Value::as_object_mut) {
                schema_object(inner);
            }
        }
    }
    for keyword in SCHEMA_MAP_KEYWORDS {
        if let Some(Value::Object(map)) = schema.get_mut(*keyword) {
            for inner in map.values_mut().filter_map(Value::as_object_mut) {
                schema_object(inner);
            }
        }
    }
    split_type_list(schema);
}

/// `{"type": ["string", "null"], "format": "uri", "description": d}` becomes
/// `{"description": d, "anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]}`.
fn split_type_list(schema: &mut JsonObject) {
    let Some(Value::Array(types)) = schema.get("type") else {
        return;
    };
    let mut types: Vec<Value> = types.clone();
    // `null` last: clients that show the first branch show the useful one.
    types.sort_by_key(|t| t == "null");
    schema.remove("type");
    let constraints: Map<String, Value> = schema
        .iter()
        .filter(|(key, _)| !ANNOTATIONS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    schema.retain(|key, _| ANNOTATIONS.contains(&key.as_str()));
    let branches = types
        .into_iter()
        .map(|t| {
            let mut branch = Map::new();
            if t != "null" {
                branch.extend(constraints.clone());
            }
            branch.insert("type".to_owned(), t);
            Value::Object(branch)
        })
        .collect();
    schema.insert("anyOf".to_owned(), Value::Array(branches));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rewritten(value: Value) -> Value {
        let Value::Object(mut schema) = value else {
            panic!("an object")
        };
        schema_object(&mut schema);
        Value::Object(schema)
    }

    #[test]
    fn an_optional_string_becomes_any_of_the_string_and_null() {
        assert_eq!(
            rewritten(json!({
                "description": "An icon.",
                "type": ["string", "null"],
                "format": "uri",
                "maxLength": 2048
            })),
            json!({
                "description": "An icon.",
                "anyOf": [
                    {"type": "string", "format": "uri", "maxLength": 2048},
                    {"type": "null"}
                ]
            })
        );
    }

    #[test]
    fn nested_schemas_are_rewritten_and_data_is_not() {
        let schema = rewritten(json!({
            "type": "object",
            "properties": {
                "a": {"type": ["null", "integer"], "minimum": 0},
                "list": {"type": "array", "items": {"type": ["string", "null"]}}
            },
            "$defs": {"D": {"anyOf": [{"type": ["boolean", "null"]}]}},
            "examples": [{"type": ["string", "null"]}]
        }));
        assert_eq!(
            schema["properties"]["a"],
            json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]})
        );
        assert_eq!(
            schema["properties"]["list"]["items"],
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
        );
        assert_eq!(
            schema["$defs"]["D"]["anyOf"][0],
            json!({"anyOf": [{"type": "boolean"}, {"type": "null"}]})
        );
        assert_eq!(schema["examples"], json!([{"type": ["string", "null"]}]));
    }
}
