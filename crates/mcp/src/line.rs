//! Classifying one incoming JSON-RPC message (a stdio line, or an HTTP body) before the MCP
//! server sees it: a well-formed message goes on, anything else becomes a JSON-RPC error to
//! answer at once, with the request's id whenever it can be read, so no client waits forever.
//!
//! Pure: no I/O, no logging, no global state; any bytes in, an answer out.

use std::fmt;

use pdchannels_model::json_kind;
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, InitializeRequestParams,
    JsonRpcMessage, PaginatedRequestParams,
};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Value, json};

use crate::methods::is_known_method;

/// JSON-RPC 2.0's error codes for faulty messages.
pub mod code {
    /// The text is not valid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON, but not a JSON-RPC message (or a batch, which MCP does not allow).
    pub const INVALID_REQUEST: i32 = -32600;
    /// A method no MCP server takes.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// A known method with `params` that do not fit it.
    pub const INVALID_PARAMS: i32 = -32602;
}

/// What one incoming message is.
#[derive(Debug)]
pub enum Line {
    /// Only whitespace: nothing to do.
    Blank,
    /// A well-formed message for the MCP server.
    Message(Box<ClientJsonRpcMessage>),
    /// A faulty message, answered (or, for a notification, only logged) by the transport.
    Fault(Fault),
}

/// Why a message was refused, as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The request's `id` when it could be read (`"id": null` in the answer otherwise).
    pub id: Option<Value>,
    /// The JSON-RPC error code (see [`code`]).
    pub code: i32,
    /// What was wrong, where, and what to send instead.
    pub message: String,
    /// The JSON path of the offending member (`params.arguments`), when there is one.
    pub path: Option<String>,
    /// `false` for a faulty notification or response: JSON-RPC answers neither, so the
    /// fault is only logged.
    pub answer: bool,
}

impl Fault {
    fn new(id: Option<Value>, code: i32, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
            path: None,
            answer: true,
        }
    }

    fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// A line longer than `limit` bytes; `head` is its beginning, where the id may be read.
    pub fn too_long(head: &[u8], limit: usize) -> Self {
        Self::new(
            recover_id(head),
            code::INVALID_REQUEST,
            format!(
                "Invalid Request: the message is over {limit} bytes, the most this server reads \
                 (the request-body limit); send a smaller one"
            ),
        )
    }

    /// The JSON-RPC error response: `{"jsonrpc": "2.0", "id": ..., "error": {...}}`.
    pub fn frame(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(path) = &self.path {
            error["data"] = json!({"path": path});
        }
        json!({"jsonrpc": "2.0", "id": self.id.clone().unwrap_or(Value::Null), "error": error})
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// Classifies the bytes of one message (a line without its `\n`, or an HTTP body).
pub fn classify_line(bytes: &[u8]) -> Line {
    // RFC 8259 lets a parser ignore a leading byte order mark; some Windows tools write one.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Line::Fault(Fault::new(
            recover_id(bytes),
            code::PARSE_ERROR,
            format!(
                "Parse error: the message is not UTF-8 (invalid byte at offset {}); send UTF-8 JSON",
                e.valid_up_to()
            ),
        ));
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            return Line::Fault(Fault::new(
                recover_id(bytes),
                code::PARSE_ERROR,
                format!(
                    "Parse error: the message is not valid JSON: {e}; send one JSON-RPC message per line"
                ),
            ));
        }
    };
    match classify_value(value) {
        Ok(message) => Line::Message(Box::new(message)),
        Err(fault) => Line::Fault(fault),
    }
}

fn classify_value(value: Value) -> Result<ClientJsonRpcMessage, Fault> {
    let object = match &value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Fault::new(
                None,
                code::INVALID_REQUEST,
                "Invalid Request: JSON-RPC batches (arrays) are not supported by MCP; send each message on its own",
            ));
        }
        other => {
            return Err(Fault::new(
                None,
                code::INVALID_REQUEST,
                format!(
                    "Invalid Request: a JSON-RPC message is an object, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    let id = match object.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(other) => {
            return Err(Fault::new(
                None,
                code::INVALID_REQUEST,
                format!(
                    "Invalid Request: `id` must be a string or an integer, got {}",
                    json_kind(other)
                ),
            )
            .at("id"));
        }
    };
    let method = match object.get("method") {
        None => None,
        Some(Value::String(method)) => Some(method.as_str()),
        Some(other) => {
            return Err(Fault::new(
                id,
                code::INVALID_REQUEST,
                format!(
                    "Invalid Request: `method` must be a string, got {}",
                    json_kind(other)
                ),
            )
            .at("method"));
        }
    };
    let is_response = object.contains_key("result") || object.contains_key("error");
    // A notification (a method, no id) and a response are never answered, even when faulty.
    let answer = !(id.is_none() && (method.is_some() || is_response));
    let refuse = |fault: Fault| Fault { answer, ..fault };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(refuse(
            Fault::new(
                id,
                code::INVALID_REQUEST,
                "Invalid Request: `jsonrpc` must be \"2.0\"",
            )
            .at("jsonrpc"),
        ));
    }
    if method.is_none() && !is_response {
        return Err(refuse(Fault::new(
            id,
            code::INVALID_REQUEST,
            "Invalid Request: a message needs `method` (a request or notification), or `result` or `error` (a response)",
        )));
    }
    let method = method.map(str::to_owned);
    let params = object.get("params").cloned();
    let message: ClientJsonRpcMessage = match serde_json::from_value(value) {
        Ok(message) => message,
        Err(e) => {
            // Params that are not even an object fail here, before rmcp's custom fallback.
            if let Some(fault) = method
                .as_deref()
                .and_then(|m| params_fault(m, params.as_ref()))
            {
                return Err(refuse(Fault { id, ..fault }));
            }
            return Err(refuse(Fault::new(
                id,
                code::INVALID_REQUEST,
                format!("Invalid Request: {e}"),
            )));
        }
    };
    if let JsonRpcMessage::Request(request) = &message
        && let ClientRequest::CustomRequest(_) = &request.request
        && let Some(method) = method.as_deref()
    {
        // A method no MCP server takes: answered here, the same over stdio and HTTP. rmcp's own
        // answer names the method alone, and over HTTP a request before `initialize` would get
        // a bare "Session ID is required": clients that probe with a newer method (Python's
        // `server/discover`-first mode) could not tell "unknown method" from "broken server".
        if !is_known_method(method) {
            return Err(refuse(Fault::new(
                id,
                code::METHOD_NOT_FOUND,
                format!(
                    "Method not found: {method}; this server takes the MCP methods (initialize, tools/list, tools/call, ...)"
                ),
            )));
        }
        // rmcp reads a known method whose params do not fit as a custom request, which the
        // server would answer "method not found": say what is wrong with the params instead.
        if let Some(fault) = params_fault(method, params.as_ref()) {
            return Err(refuse(Fault { id, ..fault }));
        }
    }
    Ok(message)
}

/// Why `params` do not fit `method`, for the methods this server implements.
fn params_fault(method: &str, params: Option<&Value>) -> Option<Fault> {
    let invalid = |path: &str, why: String| {
        Some(
            Fault::new(
                None,
                code::INVALID_PARAMS,
                format!("Invalid params for `{method}`: {why}"),
            )
            .at(path),
        )
    };
    match method {
        "tools/call" => {
            let Some(params) = params else {
                return invalid(
                    "params",
                    "`params` is required: {\"name\": <a tool from tools/list>, \"arguments\": {...}}".into(),
                );
            };
            let raw = params;
            let Value::Object(params) = params else {
                return invalid(
                    "params",
                    format!(
                        "`params` must be an object {{\"name\": ..., \"arguments\": {{...}}}}, got {}",
                        json_kind(params)
                    ),
                );
            };
            match params.get("name") {
                None => {
                    return invalid(
                        "params.name",
                        "`params.name` is required: the tool to call (tools/list names them)"
                            .into(),
                    );
                }
                Some(Value::String(_)) => {}
                Some(other) => {
                    return invalid(
                        "params.name",
                        format!(
                            "`params.name` must be a string, the tool's name, got {}",
                            json_kind(other)
                        ),
                    );
                }
            }
            match params.get("arguments") {
                None | Some(Value::Object(_) | Value::Null) => {}
                Some(other) => {
                    return invalid(
                        "params.arguments",
                        format!(
                            "`params.arguments` must be an object of the tool's named arguments, got {}",
                            json_kind(other)
                        ),
                    );
                }
            }
            typed_fault::<CallToolRequestParams>(Some(raw))
                .and_then(|(path, why)| invalid(&path, why))
        }
        "initialize" => typed_fault::<InitializeRequestParams>(params)
            .and_then(|(path, why)| invalid(&path, why)),
        "tools/list" => params
            .and_then(|p| typed_fault::<PaginatedRequestParams>(Some(p)))
            .and_then(|(path, why)| invalid(&path, why)),
        _ => None,
    }
}

/// The first mismatch between `params` and `P`, as (JSON path, reason).
fn typed_fault<P: serde::de::DeserializeOwned>(params: Option<&Value>) -> Option<(String, String)> {
    let Some(params) = params else {
        return Some(("params".into(), "`params` is required".into()));
    };
    match serde_path_to_error::deserialize::<_, P>(params) {
        Ok(_) => None,
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." {
                "params".to_owned()
            } else {
                format!("params.{inner}")
            };
            Some((path.clone(), format!("`{path}`: {}", e.inner())))
        }
    }
}

/// Reads the top-level `id` of a JSON object as far as the text is well-formed: a line broken
/// after its id (a bad number, a lone surrogate, nesting too deep, cut short) still tells whom
/// to answer. Only a string or an integer counts as an id.
fn recover_id(bytes: &[u8]) -> Option<Value> {
    let mut id = None;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // The error is expected (that is why we are here); the id read before it is what counts.
    let _ = IdScan(&mut id).deserialize(&mut deserializer);
    id.filter(|id| id.is_string() || id.is_i64() || id.is_u64())
}

/// A serde visitor that keeps the top-level `id` and skips every other member.
struct IdScan<'a>(&'a mut Option<Value>);

impl<'de> DeserializeSeed<'de> for IdScan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IdScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "id" {
                *self.0 = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(bytes: &[u8]) -> Fault {
        match classify_line(bytes) {
            Line::Fault(fault) => fault,
            other => panic!(
                "expected a fault for {:?}, got {other:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn well_formed_messages_pass() {
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}"#;
        assert!(matches!(classify_line(line), Line::Message(_)));
        let notification = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(classify_line(notification), Line::Message(_)));
        assert!(matches!(classify_line(b"  \r"), Line::Blank));
    }

    #[test]
    fn a_method_no_mcp_server_takes_is_answered_method_not_found_naming_it() {
        let unknown = br#"{"jsonrpc":"2.0","id":"a","method":"no/such"}"#;
        let fault = fault(unknown);
        assert_eq!(fault.code, code::METHOD_NOT_FOUND);
        assert_eq!(fault.id, Some(json!("a")));
        assert!(
            fault.message.starts_with("Method not found: no/such"),
            "{fault}"
        );
        assert!(fault.answer);
        // A notification of an unknown method is not answered (JSON-RPC answers none).
        let notification = br#"{"jsonrpc":"2.0","method":"no/such"}"#;
        assert!(matches!(classify_line(notification), Line::Message(_)));
    }

    #[test]
    fn parse_errors_keep_the_id_read_before_the_fault() {
        let f = fault(br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":1e400}}"#);
        assert_eq!((f.code, f.id.clone()), (code::PARSE_ERROR, Some(json!(7))));
        let f = fault(br#"{"jsonrpc":"2.0","id":"s","method":"ping","params":{"a":"\ud800"}}"#);
        assert_eq!((f.code, f.id), (code::PARSE_ERROR, Some(json!("s"))));
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"ping","params":{}{}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        let f = fault(deep.as_bytes());
        assert_eq!((f.code, f.id), (code::PARSE_ERROR, Some(json!(3))));
        let f = fault(b"{\"id\":4,\"method\":\"\xff\"}");
        assert_eq!((f.code, f.id), (code::PARSE_ERROR, Some(json!(4))));
        let f = fault(b"not json");
        assert_eq!(
            (f.code, f.id.clone(), f.answer),
            (code::PARSE_ERROR, None, true)
        );
        assert_eq!(f.frame()["id"], Value::Null);
    }

    #[test]
    fn batches_and_non_objects_are_invalid_requests() {
        let f = fault(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert_eq!(f.code, code::INVALID_REQUEST);
        assert!(f.message.contains("batches"), "{}", f.message);
        assert_eq!(fault(b"\"x\"").code, code::INVALID_REQUEST);
        let f = fault(br#"{"id":2,"method":"ping"}"#);
        assert_eq!(
            (f.code, f.id, f.path.as_deref()),
            (code::INVALID_REQUEST, Some(json!(2)), Some("jsonrpc"))
        );
        let f = fault(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#);
        assert_eq!((f.id, f.path.as_deref()), (None, Some("id")));
    }

    #[test]
    fn tools_call_params_are_checked_by_path() {
        for (params, path) in [
            (
                json!({"name": "channels_create", "arguments": [1]}),
                "params.arguments",
            ),
            (
                json!({"name": "channels_create", "arguments": "x"}),
                "params.arguments",
            ),
            (json!({"arguments": {}}), "params.name"),
            (json!({"name": 5}), "params.name"),
            (json!("x"), "params"),
        ] {
            let line = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params});
            let f = fault(line.to_string().as_bytes());
            assert_eq!(f.code, code::INVALID_PARAMS, "{line}");
            assert_eq!(f.id, Some(json!(9)));
            assert_eq!(f.path.as_deref(), Some(path), "{}", f.message);
            assert_eq!(f.frame()["error"]["data"]["path"], json!(path));
        }
        let f = fault(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
        assert_eq!(
            (f.code, f.path.as_deref()),
            (code::INVALID_PARAMS, Some("params"))
        );
    }

    #[test]
    fn faulty_notifications_are_not_answered() {
        let f = fault(br#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#);
        assert!(!f.answer);
    }

    #[test]
    fn an_oversized_line_is_answered_with_the_id_from_its_head() {
        let f = Fault::too_long(
            br#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"#,
            10,
        );
        assert_eq!((f.code, f.id), (code::INVALID_REQUEST, Some(json!(12))));
    }
}
