//! Output schemas that describe both what a tool answers on success and on failure.
//!
//! Failures carry the API's error body as `structuredContent` (the same structure an HTTP client
//! gets), and some clients (the TypeScript SDK among them) check `structuredContent` against the
//! output schema even when `isError` is true. So each tool's schema is "the 200 body, or the
//! error envelope". MCP requires the root of an output schema to be an object.

use std::sync::Arc;

use pdchannels_model::{ErrorBody, QueuedResponse};
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
enum ToolResponse<S, D> {
    /// The 200 body.
    Success(S),
    /// Relayed and durable in the outbox, not delivered yet (HTTP 202); `D` is its `data`.
    Queued(QueuedResponse<D>),
    /// The error envelope (`success: false`).
    Failure(ErrorBody),
}

/// The output schema of a tool whose success body is `S` and whose queued answer carries a `D`.
pub(crate) fn success_or_error<S: JsonSchema + 'static, D: JsonSchema + 'static>() -> Arc<JsonObject>
{
    let mut schema = schema_for_output::<ToolResponse<S, D>>().as_ref().clone();
    schema.insert("type".to_owned(), "object".into());
    Arc::new(schema)
}
