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
