//! The success envelopes: `{"success": true, "data": ...}` and `{"success": true}`.

use schemars::JsonSchema;
use serde::Serialize;

/// `{"success": true, "data": T}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ApiResponse<T> {
    /// Always `true`.
    pub success: bool,
    /// The stored object.
    pub data: T,
}

impl<T> ApiResponse<T> {
    /// Wraps a successful result.
    pub fn ok(data: T) -> Self {
        Self {
            success: true,
            data,
        }
    }
}

/// `{"success": true}`, the answer to a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Success {
    /// Always `true`.
    pub success: bool,
}

impl Success {
    /// The one value.
    pub const OK: Self = Self { success: true };
}

/// The answer to a relayed call that is durable in the outbox but not delivered yet (HTTP 202):
/// `{"success": true, "data": T or null, "additional_data": {"queued": {"outbox_id", "reason"}}}`.
///
/// Accepted, not done: `success` is true because nothing more is asked of the caller (the relay
/// keeps delivering it), and every relayed operation answers a queued call this way. `data` is
/// what the call will store (the message of a receive); `null` when the upstream alone can say
/// (the id of a new channel) or there is nothing to show (a delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct QueuedResponse<T> {
    /// Always `true`.
    pub success: bool,
    /// What the call will store, when known.
    pub data: Option<T>,
    /// Where the call waits.
    pub additional_data: QueuedDetails,
}

/// `additional_data` of a queued answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct QueuedDetails {
    /// The outbox call.
    pub queued: Queued,
}

/// A call waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Queued {
    /// Its outbox id (`pdchannels outbox show ID`).
    pub outbox_id: i64,
    /// Why it is not delivered yet.
    pub reason: String,
}

impl<T> QueuedResponse<T> {
    /// The answer for call `outbox_id`, waiting because of `reason`.
    pub fn new(data: Option<T>, outbox_id: i64, reason: impl Into<String>) -> Self {
        Self {
            success: true,
            data,
            additional_data: QueuedDetails {
                queued: Queued {
                    outbox_id,
                    reason: reason.into(),
                },
            },
        }
    }
}
