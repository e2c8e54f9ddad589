//! Turning a Channels result into a tool result: structured content shaped like the Channels
//! API response, plus a short text for the model.

use pdchannels_model::{ChannelsError, ErrorBody, ErrorDetails, FieldProblem, QueuedResponse};
use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;

/// A success: `structuredContent` is the API's 200 body, the text says what happened.
pub(crate) fn success(body: &impl Serialize, summary: String) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(summary)]);
    result.structured_content =
        Some(serde_json::to_value(body).expect("response bodies always serialize"));
    result
}

/// A failure the model can act on: `isError: true`, a text naming every problem and the
/// remedy, and the API's error body as structured content.
pub(crate) fn failure(tool: &str, error: &ChannelsError) -> CallToolResult {
    // Accepted into the outbox is not a failure: answered like a queued receive.
    if let ChannelsError::Queued {
        outbox_id, reason, ..
    } = error
    {
        return success(
            &QueuedResponse::<()>::new(None, *outbox_id, reason.clone()),
            queued_text(&format!("{tool} was accepted."), *outbox_id, reason),
        );
    }
    let body = error.body();
    let problems = match error {
        ChannelsError::Invalid { problems, .. } => problems.as_slice(),
        _ => &[],
    };
    refused(tool, &error.to_string(), &error.remedy(), problems, &body)
}

/// A failure of the conversation tools, which have no Channels API operation: `code` names it
/// (`NOT_FOUND`, `CANNOT_SEND`...), `remedy` says what to do.
pub(crate) fn tool_failure(
    tool: &str,
    code: &str,
    error: String,
    remedy: String,
    problems: &[FieldProblem],
) -> CallToolResult {
    let body = ErrorBody {
        success: false,
        error,
        error_info: remedy,
        data: None,
        additional_data: ErrorDetails {
            code: code.to_owned(),
            errors: (!problems.is_empty()).then(|| problems.to_vec()),
        },
    };
    refused(tool, &body.error, &body.error_info, problems, &body)
}

/// `isError: true`, the text a model reads (every field problem on its own line, then the
/// remedy and the code), and the error envelope as structured content.
fn refused(
    tool: &str,
    error: &str,
    remedy: &str,
    problems: &[FieldProblem],
    body: &ErrorBody,
) -> CallToolResult {
    let mut text = if problems.is_empty() {
        format!("{tool} failed: {error}\n")
    } else {
        let mut text = format!(
            "{tool} was not applied: {} problem{} with the arguments:\n",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems {
            let at = if p.path.is_empty() {
                "(arguments)"
            } else {
                &p.path
            };
            text.push_str(&format!("- `{at}`: {}\n", p.reason));
        }
        text
    };
    text.push_str(remedy);
    text.push_str(&format!(" (code {})", body.additional_data.code));
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content =
        Some(serde_json::to_value(body).expect("error bodies always serialize"));
    result
}

/// What a model reads about a relayed call that waits in the outbox.
pub(crate) fn queued_text(summary: &str, outbox_id: i64, reason: &str) -> String {
    format!(
        "{summary} Not delivered yet: {reason}. It is safe in the outbox (id {outbox_id}); the relay keeps delivering it."
    )
}
