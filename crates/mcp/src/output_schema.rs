//! Output schemas that describe both what a tool answers on success and on failure.
//!
//! Failures carry the API's error body as `structuredContent` (the same structure an HTTP client
//! gets), and some clients (the TypeScript SDK among them) check `structuredContent` against the
//! output schema even when `isError` is true. So each tool's schema is "the 200 body, or the
//! error envelope". MCP requires the root of an output schema to be an object.

use std::sync::Arc;

use pdchannels_model::ErrorBody;
use rmcp::handler::server::common::schema_for_output;
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Serialize;

/// What a tool puts in `structuredContent`: the API's success body or its error body.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "only its schema is used; the values are built as JSON"
)]
enum ToolResponse<T> {
    /// The 200 body.
    Success(T),
    /// The error envelope (`success: false`).
    Failure(ErrorBody),
}

/// The output schema of a tool whose success body is `T`.
pub(crate) fn success_or_error<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = schema_for_output::<ToolResponse<T>>().as_ref().clone();
    schema.insert("type".to_owned(), "object".into());
    Arc::new(schema)
}
