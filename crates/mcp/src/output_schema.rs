//! Output schemas that describe both what a tool answers on success and on failure.
//!
//! Failures carry the API's error body as `structuredContent` (the same structure an HTTP client
//! gets), and some clients (the TypeScript SDK among them) check `structuredContent` against the
//! output schema even when `isError` is true. So each tool's schema is "the 200 body, or the
//! error envelope". MCP requires the root of an output schema to be an object.
//!
//! A client puts every tool's schemas into the model's context, so they are kept small: the
//! error envelope's branch gives its shape, not every field (the tool's text says the rest), and
//! descriptions and bounds are left to the input schemas.

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_output;
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::portable::{SCHEMA_KEYWORDS, SCHEMA_LIST_KEYWORDS, SCHEMA_MAP_KEYWORDS};

/// The output schema of a tool whose success body is `S`. The same object also describes the
/// answer of a relayed call waiting in the outbox (`data` null or the queued object,
/// `additional_data.queued`) and the error envelope.
pub(crate) fn success_or_error<S: JsonSchema + 'static>() -> Arc<JsonObject> {
    envelope::<S>()
}

/// One object for every answer, rather than a branch per answer (which would repeat the
/// envelope in every tool): `success`, `data` as on success or null, `additional_data` open
/// (paging, the queued call, the error's code and field problems), and the error's texts.
fn envelope<S: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = schema_for_output::<S>().as_ref().clone();
    compact(&mut schema);
    inline_defs(&mut schema);
    let properties = schema
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("an envelope's properties are an object");
    if let Some(data) = properties.get_mut("data") {
        *data = json!({"anyOf": [data.take(), {"type": "null"}]});
    }
    properties.insert("additional_data".to_owned(), json!({"type": "object"}));
    properties.insert("error".to_owned(), json!({"type": "string"}));
    properties.insert("error_info".to_owned(), json!({"type": "string"}));
    schema.insert("required".to_owned(), json!(["success"]));
    schema.insert("type".to_owned(), "object".into());
    Arc::new(schema)
}

/// Puts each definition in place of its `$ref`s (the tools' types are not recursive), so the
/// schema carries no names a client has no use for.
fn inline_defs(schema: &mut JsonObject) {
    let Some(Value::Object(defs)) = schema.remove("$defs") else {
        return;
    };
    fn replace(value: &mut Value, defs: &JsonObject, depth: usize) {
        match value {
            Value::Object(object) => {
                let target = object
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .and_then(|name| defs.get(name));
                if let (Some(target), true) = (target, depth < 16) {
                    object.remove("$ref");
                    let mut inlined = target.clone();
                    replace(&mut inlined, defs, depth + 1);
                    if let Value::Object(inlined) = inlined {
                        for (key, value) in inlined {
                            object.entry(key).or_insert(value);
                        }
                    }
                } else {
                    for inner in object.values_mut() {
                        replace(inner, defs, depth);
                    }
                }
            }
            Value::Array(list) => list.iter_mut().for_each(|v| replace(v, defs, depth)),
            _ => {}
        }
    }
    for value in schema.values_mut() {
        replace(value, &defs, 0);
    }
}

/// Keywords an output schema does without. A client puts every tool's schemas into the model's
/// context, and the SDKs check structured content against them: the shape (types, properties,
/// required, enums) is what both need; descriptions, examples and bounds are for inputs.
const LEFT_OUT: &[&str] = &[
    "$schema",
    "title",
    "description",
    "examples",
    "default",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "additionalProperties",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Leaves out of `schema`, and every schema inside it, the keywords of [`LEFT_OUT`].
fn compact(schema: &mut JsonObject) {
    schema.retain(|key, _| !LEFT_OUT.contains(&key.as_str()));
    for keyword in SCHEMA_KEYWORDS {
        if let Some(Value::Object(inner)) = schema.get_mut(*keyword) {
            compact(inner);
        }
    }
    for keyword in SCHEMA_LIST_KEYWORDS {
        if let Some(Value::Array(list)) = schema.get_mut(*keyword) {
            for inner in list.iter_mut().filter_map(Value::as_object_mut) {
                compact(inner);
            }
        }
    }
    for keyword in SCHEMA_MAP_KEYWORDS {
        if let Some(Value::Object(map)) = schema.get_mut(*keyword) {
            for inner in map.values_mut().filter_map(Value::as_object_mut) {
                compact(inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn output_schemas_keep_their_shape_and_lose_their_prose() {
        let Value::Object(mut schema) = json!({
            "description": "A page.",
            "type": "object",
            "required": ["data"],
            "properties": {
                "description": {"type": "string", "description": "a property named description stays"},
                "data": {"type": "array", "maxItems": 3, "items": {"type": "string", "format": "uri", "enum": ["a"]}}
            },
            "$defs": {"E": {"type": "object", "additionalProperties": false, "examples": [{}]}}
        }) else {
            unreachable!()
        };
        compact(&mut schema);
        assert_eq!(
            Value::Object(schema),
            json!({
                "type": "object",
                "required": ["data"],
                "properties": {
                    "description": {"type": "string"},
                    "data": {"type": "array", "items": {"type": "string", "enum": ["a"]}}
                },
                "$defs": {"E": {"type": "object"}}
            })
        );
    }
}
