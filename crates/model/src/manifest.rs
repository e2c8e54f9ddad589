//! A provider app's messaging manifest: the URLs the hub calls back, as Pipedrive's Developer Hub
//! accepted them (`version` `v202101` and an `endpoints` map of URL templates).
//!
//! ```
//! use pdchannels_model::manifest::{Endpoint, Manifest};
//!
//! let manifest = Manifest::parse(&serde_json::json!({
//!     "version": "v202101",
//!     "endpoints": {
//!         "getConversations": "https://app.example/channels/:providerChannelId/conversations",
//!         "getConversationById": "https://app.example/channels/{providerChannelId}/conversations/:sourceConversationId",
//!         "postMessage": "https://app.example/channels/:providerChannelId/messages",
//!     },
//! }))
//! .unwrap();
//! let url = manifest
//!     .url(Endpoint::GetConversationById, &[("providerChannelId", "wa"), ("sourceConversationId", "a/b c")])
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(url.as_str(), "https://app.example/channels/wa/conversations/a%2Fb%20c");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::limits::Limits;
use crate::problems::Problems;
use crate::reader::{ObjectReader, ProblemSink, kind};

/// The only manifest version Pipedrive ever published.
pub const VERSION: &str = "v202101";

/// What an id may not carry unescaped into one path segment: everything but the unreserved
/// characters of RFC 3986 (so `/`, `?`, `#`, `%`, spaces and `+` are all escaped).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The values the hub can fill into a template.
pub const PLACEHOLDERS: [&str; 4] = [
    "providerChannelId",
    "sourceConversationId",
    "sourceMessageId",
    "senderId",
];

/// One callback of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// Lists a channel's conversations (required).
    GetConversations,
    /// One conversation, its participants and a page of its messages (required).
    GetConversationById,
    /// Sends a person's reply (required).
    PostMessage,
    /// A participant's name and avatar.
    GetSenderById,
    /// One message, with fresh attachment links.
    GetMessageById,
    /// The channel's message templates.
    GetTemplates,
    /// Tells the app a person deleted the channel.
    DeleteChannelById,
}

impl Endpoint {
    /// Every endpoint, in the order Pipedrive's docs list them.
    pub const ALL: [Endpoint; 7] = [
        Endpoint::GetConversations,
        Endpoint::GetConversationById,
        Endpoint::PostMessage,
        Endpoint::GetSenderById,
        Endpoint::GetMessageById,
        Endpoint::GetTemplates,
        Endpoint::DeleteChannelById,
    ];

    const KEYS: [&'static str; 7] = [
        "getConversations",
        "getConversationById",
        "postMessage",
        "getSenderById",
        "getMessageById",
        "getTemplates",
        "deleteChannelById",
    ];

    /// Its key in the manifest's `endpoints`.
    pub fn key(self) -> &'static str {
        Self::KEYS[self as usize]
    }

    /// Whether every manifest must have it.
    pub fn required(self) -> bool {
        matches!(
            self,
            Endpoint::GetConversations | Endpoint::GetConversationById | Endpoint::PostMessage
        )
    }

    /// The placeholders its URL must contain.
    pub fn required_placeholders(self) -> &'static [&'static str] {
        match self {
            Endpoint::GetConversationById => &["providerChannelId", "sourceConversationId"],
            Endpoint::GetSenderById => &["providerChannelId", "senderId"],
            // The manifest's long form also has :sourceConversationId; the OpenAPI's short form
            // (`/channels/{providerChannelId}/messages/{sourceMessageId}`) does not.
            Endpoint::GetMessageById => &["providerChannelId", "sourceMessageId"],
            _ => &["providerChannelId"],
        }
    }

    /// The placeholders the hub can fill in for it.
    pub fn available_placeholders(self) -> &'static [&'static str] {
        match self {
            Endpoint::GetMessageById => &[
                "providerChannelId",
                "sourceConversationId",
                "sourceMessageId",
            ],
            other => other.required_placeholders(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A URL template: literal text and placeholders, `:name` or `{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(&'static str),
}

impl UrlTemplate {
    /// Parses `text` for `endpoint`: an absolute http(s) URL whose placeholders are ones the hub
    /// fills in for that endpoint, with every required one present.
    fn parse(text: &str, endpoint: Endpoint, limits: &Limits) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars > limits.max_url_chars {
            return Err(format!(
                "is {chars} characters long; the limit is {} characters",
                limits.max_url_chars
            ));
        }
        let scheme_end = text
            .find("://")
            .filter(|at| {
                let scheme = &text[..*at];
                scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
            })
            .ok_or_else(|| format!("must be an absolute http or https URL, got {text:?}"))?;
        // Placeholders are looked for after the host: `host:8080` is a port, not a placeholder.
        let path_start = text[scheme_end + 3..]
            .find(['/', '?', '#'])
            .map_or(text.len(), |at| scheme_end + 3 + at);
        let mut parts = vec![Part::Literal(text[..path_start].to_owned())];
        let mut rest = &text[path_start..];
        while !rest.is_empty() {
            let next = rest.find([':', '{']);
            let Some(at) = next else {
                push_literal(&mut parts, rest);
                break;
            };
            push_literal(&mut parts, &rest[..at]);
            let after = &rest[at + 1..];
            let (name, consumed) = if rest.as_bytes()[at] == b'{' {
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("has a `{{` with no closing `}}` in {text:?}"))?;
                let name = &after[..end];
                let known = known_placeholder(name).ok_or_else(|| {
                    format!(
                        "has an unknown placeholder `{{{name}}}`; the hub fills in {}",
                        PLACEHOLDERS.join(", ")
                    )
                })?;
                (Some(known), end + 2)
            } else {
                let len = after
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(after.len());
                // `:word` that is not one of ours stays literal text (`/v1:batch`).
                (known_placeholder(&after[..len]), len + 1)
            };
            match name {
                Some(name) if !endpoint.available_placeholders().contains(&name) => {
                    return Err(format!(
                        "has the placeholder `{name}`, which {endpoint} has no value for; it may use {}",
                        endpoint.available_placeholders().join(", ")
                    ));
                }
                Some(name) => parts.push(Part::Placeholder(name)),
                None => push_literal(&mut parts, &rest[at..at + consumed]),
            }
            rest = &rest[at + consumed..];
        }
        let template = Self {
            text: text.to_owned(),
            parts,
        };
        let missing: Vec<_> = endpoint
            .required_placeholders()
            .iter()
            .filter(|p| !template.parts.contains(&Part::Placeholder(p)))
            .map(|p| format!(":{p}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "must contain {} (as `:name` or `{{name}}`), got {text:?}",
                missing.join(" and ")
            ));
        }
        // Filled in, the URL must be one a client can call.
        let sample: Vec<(&str, &str)> = PLACEHOLDERS.iter().map(|p| (*p, "x")).collect();
        let url = template
            .fill(&sample)
            .map_err(|e| format!("{e}, got {text:?}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("must name a host, got {text:?}"));
        }
        Ok(template)
    }

    /// The template as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL with each placeholder replaced by its value, percent-encoded as one path segment.
    fn fill(&self, values: &[(&str, &str)]) -> Result<url::Url, String> {
        let mut out = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Placeholder(name) => {
                    let value = values
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| format!("no value for the placeholder `{name}`"))?;
                    // `.` and `..` are path steps to every URL parser (escaped too: WHATWG
                    // reads `%2E` as `.`), so no URL names them: refused, rather than calling
                    // another URL with the app's credentials.
                    if value == "." || value == ".." {
                        return Err(format!(
                            "the id {value:?} ({name}) cannot be put in a URL path"
                        ));
                    }
                    out.extend(utf8_percent_encode(value, SEGMENT));
                }
            }
        }
        url::Url::parse(&out).map_err(|e| format!("is not a valid URL once filled in ({e})"))
    }
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(Part::Literal(last)) => last.push_str(text),
        _ => parts.push(Part::Literal(text.to_owned())),
    }
}

fn known_placeholder(name: &str) -> Option<&'static str> {
    PLACEHOLDERS.iter().copied().find(|p| *p == name)
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    endpoints: BTreeMap<Endpoint, UrlTemplate>,
}

impl Manifest {
    /// Validates a manifest, naming every bad field by its JSON path.
    pub fn parse(value: &Value) -> Result<Self, Problems> {
        let limits = Limits::default();
        let mut sink = ProblemSink::default();
        let manifest =
            ObjectReader::new(value, String::new(), &["version", "endpoints"], &mut sink).and_then(
                |root| {
                    root.required("version", &mut sink, |v| match v.as_str() {
                        Some(VERSION) => Ok(()),
                        Some(other) => Err(format!(
                            "must be \"{VERSION}\" (the only manifest version), got {other:?}"
                        )),
                        None => Err(format!("must be the string \"{VERSION}\", got {}", kind(v))),
                    });
                    let Some(raw) = root.raw("endpoints") else {
                        sink.push(
                            root.path_of("endpoints"),
                            "required field is missing: an object of endpoint URLs",
                        );
                        return None;
                    };
                    let path = root.path_of("endpoints");
                    let reader = ObjectReader::new(raw, path.clone(), &Endpoint::KEYS, &mut sink)?;
                    let mut endpoints = BTreeMap::new();
                    for endpoint in Endpoint::ALL {
                        let parse = |v: &Value| match v.as_str() {
                            Some(text) => UrlTemplate::parse(text, endpoint, &limits),
                            None => Err(format!("must be a URL string, got {}", kind(v))),
                        };
                        let template = if endpoint.required() {
                            reader.required(endpoint.key(), &mut sink, parse)
                        } else {
                            reader
                                .optional(endpoint.key(), &mut sink, parse)
                                .ok()
                                .flatten()
                        };
                        if let Some(template) = template {
                            endpoints.insert(endpoint, template);
                        }
                    }
                    Some(Self { endpoints })
                },
            );
        sink.finish(manifest)
    }

    /// Parses a manifest from its JSON text.
    pub fn parse_str(text: &str) -> Result<Self, Problems> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Problems::single("", format!("the manifest is not valid JSON ({e})")))?;
        Self::parse(&value)
    }

    /// Whether the app implements `endpoint`.
    pub fn has(&self, endpoint: Endpoint) -> bool {
        self.endpoints.contains_key(&endpoint)
    }

    /// The template of `endpoint`, if the app implements it.
    pub fn template(&self, endpoint: Endpoint) -> Option<&UrlTemplate> {
        self.endpoints.get(&endpoint)
    }

    /// The URL to call for `endpoint`, its placeholders filled with `values` (name, value),
    /// each percent-encoded as one path segment. `None` when the app does not implement it;
    /// `Some(Err(why))` when an id cannot be put in a URL (`.`, `..`).
    pub fn url(
        &self,
        endpoint: Endpoint,
        values: &[(&str, &str)],
    ) -> Option<Result<url::Url, String>> {
        Some(self.endpoints.get(&endpoint)?.fill(values))
    }

    /// The manifest as JSON, as it is stored and shown.
    pub fn to_json(&self) -> Value {
        let endpoints: serde_json::Map<String, Value> = self
            .endpoints
            .iter()
            .map(|(e, t)| (e.key().to_owned(), Value::String(t.text.clone())))
            .collect();
        serde_json::json!({"version": VERSION, "endpoints": endpoints})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(endpoints: &Value) -> Result<Manifest, Problems> {
        Manifest::parse(&json!({"version": VERSION, "endpoints": endpoints}))
    }

    fn required() -> Value {
        json!({
            "getConversations": "https://a.example/c/:providerChannelId/conversations",
            "getConversationById": "https://a.example/c/:providerChannelId/conversations/:sourceConversationId",
            "postMessage": "https://a.example/c/:providerChannelId/messages",
        })
    }

    fn paths(problems: &Problems) -> Vec<String> {
        problems.as_slice().iter().map(|p| p.path.clone()).collect()
    }

    #[test]
    fn the_playgrounds_manifest_is_accepted_in_both_placeholder_forms() {
        let m = manifest(&json!({
            "getConversations": "http://localhost:3000/channels/:providerChannelId/conversations",
            "getConversationById": "http://localhost:3000/channels/{providerChannelId}/conversations/:sourceConversationId",
            "postMessage": "http://localhost:3000/channels/:providerChannelId/messages",
            "getSenderById": "http://localhost:3000/channels/:providerChannelId/senders/:senderId",
            "getMessageById": "http://localhost:3000/channels/{providerChannelId}/conversations/:sourceConversationId/messages/{sourceMessageId}",
            "getTemplates": "http://localhost:3000/channels/:providerChannelId/templates",
            "deleteChannelById": "http://localhost:3000/channels/:providerChannelId",
        }))
        .unwrap();
        assert!(Endpoint::ALL.iter().all(|e| m.has(*e)));
        let url = m
            .url(
                Endpoint::GetMessageById,
                &[
                    ("providerChannelId", "wa 1"),
                    ("sourceConversationId", "c/1?x#y"),
                    ("sourceMessageId", "m+1%"),
                ],
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://localhost:3000/channels/wa%201/conversations/c%2F1%3Fx%23y/messages/m%2B1%25"
        );
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn each_bad_field_is_named() {
        let err = Manifest::parse(&json!({"version": "v2", "endpoints": {
            "getConversations": "ftp://a.example/:providerChannelId",
            "getConversationById": "https://a.example/c/:providerChannelId",
            "postMessage": 7,
            "getSenderById": "https://a.example/:providerChannelId/{nope}",
            "getTemplate": "https://a.example/:providerChannelId",
        }}))
        .unwrap_err();
        assert_eq!(
            paths(&err),
            [
                "version",
                "endpoints.getTemplate",
                "endpoints.getConversations",
                "endpoints.getConversationById",
                "endpoints.postMessage",
                "endpoints.getSenderById",
            ],
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("did you mean `getTemplates`"), "{text}");
        assert!(
            text.contains("must contain :sourceConversationId"),
            "{text}"
        );
        assert!(text.contains("unknown placeholder `{nope}`"), "{text}");
    }

    #[test]
    fn required_endpoints_and_the_object_itself_are_required() {
        let err = manifest(&json!({})).unwrap_err();
        assert_eq!(
            paths(&err),
            [
                "endpoints.getConversations",
                "endpoints.getConversationById",
                "endpoints.postMessage"
            ]
        );
        let err = Manifest::parse(&json!({"version": VERSION})).unwrap_err();
        assert_eq!(paths(&err), ["endpoints"]);
        let err = Manifest::parse(&json!([])).unwrap_err();
        assert_eq!(paths(&err), [""]);
        assert!(Manifest::parse_str("{").is_err());
    }

    #[test]
    fn a_placeholder_the_endpoint_has_no_value_for_is_refused() {
        let mut endpoints = required();
        endpoints["getTemplates"] = json!("https://a.example/:providerChannelId/:senderId");
        let err = manifest(&endpoints).unwrap_err();
        assert_eq!(paths(&err), ["endpoints.getTemplates"]);
        assert!(err.to_string().contains("getTemplates has no value for"));
    }

    #[test]
    fn ports_and_unknown_colon_words_are_literal() {
        let mut endpoints = required();
        endpoints["getTemplates"] =
            json!("https://a.example:8443/v1:batch/:providerChannelId/templates");
        let m = manifest(&endpoints).unwrap();
        let url = m
            .url(Endpoint::GetTemplates, &[("providerChannelId", "wa")])
            .unwrap()
            .unwrap();
        assert_eq!(url.as_str(), "https://a.example:8443/v1:batch/wa/templates");
        assert!(!m.has(Endpoint::DeleteChannelById));
        assert_eq!(
            m.url(Endpoint::DeleteChannelById, &[("providerChannelId", "wa")]),
            None
        );
    }

    #[test]
    fn the_short_get_message_by_id_form_is_accepted() {
        let mut endpoints = required();
        endpoints["getMessageById"] =
            json!("https://a.example/channels/{providerChannelId}/messages/{sourceMessageId}");
        assert!(manifest(&endpoints).unwrap().has(Endpoint::GetMessageById));
    }
}
