//! The tools an agent reads with before it answers, and answers with: a channel's
//! conversations, one conversation (who is in it, its latest messages, the replies that did not
//! go out), and a reply through the channel's provider app. Listed only when the server runs on
//! the hub's own store ([`LocalHub`]).

use pdchannels_apps::{Older, Reply, SendError, Sent};
use pdchannels_model::{ApiResponse, FieldProblem};
use pdchannels_store::cursor::{
    decode_activity_position, decode_message_position, encode_activity_position,
    encode_message_position,
};
use pdchannels_store::reads::ConversationSummary;
use pdchannels_store::{ConversationHistory, StoreError};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arguments::Arguments;
use crate::local_hub::LocalHub;
use crate::outcome::{success, tool_failure};
use crate::output_schema::success_or_error;
use crate::server::ChannelsServer;
use pdchannels_model::Channels;

/// Conversations listed at once when the agent does not say.
const DEFAULT_CONVERSATIONS: u32 = 20;
/// Messages read at once when the agent does not say: Pipedrive's own page.
const DEFAULT_MESSAGES: u32 = 30;
/// The most of either in one call: more would flood the model's context.
const MAX_PAGE: u32 = 100;
/// The most pages of older messages asked of an app for one read (30 messages each).
const MAX_OLDER_FETCHES: usize = 4;

/// Which conversations to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    /// The channel's provider_channel_id.
    channel_id: String,
    /// `next_cursor` of the previous page; omit for the most recently active.
    #[serde(default)]
    cursor: Option<String>,
    /// How many, 1-100 (default 20).
    #[serde(default)]
    limit: Option<u32>,
}

/// Which conversation to read.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetConversation {
    /// The channel's provider_channel_id.
    channel_id: String,
    /// The conversation's id.
    conversation_id: String,
    /// `older_cursor` of the previous call, for the messages before those; omit for the latest.
    #[serde(default)]
    cursor: Option<String>,
    /// How many messages, 1-100 (default 30).
    #[serde(default)]
    limit: Option<u32>,
}

/// A reply to send.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The channel's provider_channel_id.
    channel_id: String,
    /// The conversation to answer in.
    conversation_id: String,
    /// The text to send. Omit only with `retry`.
    #[serde(default)]
    message: Option<String>,
    /// The template the text was written from (required once the conversation's reply_by has
    /// passed).
    #[serde(default)]
    template_id: Option<String>,
    /// The local_id of a failed reply, to send it again (check first that it did not arrive).
    #[serde(default)]
    retry: Option<String>,
}

/// A page of a channel's conversations, most recently active first.
#[derive(Serialize, JsonSchema)]
struct ConversationList {
    success: bool,
    data: Vec<ConversationSummary>,
    additional_data: ListPaging,
}

#[derive(Serialize, JsonSchema)]
struct ListPaging {
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// A conversation with its latest messages, oldest of them first.
#[derive(Serialize, JsonSchema)]
struct ConversationRead {
    success: bool,
    data: ConversationHistory,
    additional_data: HistoryPaging,
}

#[derive(Serialize, JsonSchema)]
struct HistoryPaging {
    /// Pass as `cursor` for the messages before these; absent when none are stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    older_cursor: Option<String>,
}

#[tool_router(router = conversation_tools, vis = "pub(crate)")]
impl<C: Channels> ChannelsServer<C> {
    /// List a channel's conversations, most recently active first (ids, message counts, last
    /// activity). Then read one with channels_get_conversation.
    #[tool(
        name = "channels_list_conversations",
        annotations(title = "List conversations", read_only_hint = true, open_world_hint = false),
        output_schema = success_or_error::<ConversationList>()
    )]
    pub async fn list_conversations(
        &self,
        Parameters(args): Parameters<Arguments<ListConversations>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_list_conversations";
        let hub = self.local_hub();
        let (request, limit, after) = match paged::<ListConversations, _>(
            args.value(),
            DEFAULT_CONVERSATIONS,
            ("next_cursor", decode_activity_position),
        ) {
            Ok(paged) => paged,
            Err(problem) => return Ok(invalid(TOOL, problem)),
        };
        let rows = match hub
            .store
            .list_conversations(&request.channel_id, after, limit + 1)
            .await
        {
            Ok(Some(rows)) => rows,
            Ok(None) => return Ok(channel_not_found(TOOL, &request.channel_id)),
            Err(e) => return Ok(unavailable(TOOL, &e)),
        };
        let mut rows = rows;
        let next_cursor = (rows.len() > limit as usize).then(|| {
            rows.truncate(limit as usize);
            let last = rows.last().expect("limit is at least 1");
            encode_activity_position(last.last_activity_at.unix_millis(), &last.conversation_id)
        });
        let summary = format!(
            "{} conversation{} of channel `{}`{}.",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            request.channel_id,
            if next_cursor.is_some() {
                "; more with cursor = additional_data.next_cursor"
            } else {
                ""
            }
        );
        Ok(success(
            &ConversationList {
                success: true,
                data: rows,
                additional_data: ListPaging { next_cursor },
            },
            summary,
        ))
    }

    /// Read a conversation before answering: participants (name, role end_user = the customer
    /// or source_user = your side), its latest messages oldest first, and replies that failed
    /// (send them again with channels_send_message retry).
    #[tool(
        name = "channels_get_conversation",
        annotations(title = "Read a conversation", read_only_hint = true, open_world_hint = false),
        output_schema = success_or_error::<ConversationRead>()
    )]
    pub async fn get_conversation(
        &self,
        Parameters(args): Parameters<Arguments<GetConversation>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_get_conversation";
        let hub = self.local_hub();
        let (request, limit, before) = match paged::<GetConversation, _>(
            args.value(),
            DEFAULT_MESSAGES,
            ("older_cursor", decode_message_position),
        ) {
            Ok(paged) => paged,
            Err(problem) => return Ok(invalid(TOOL, problem)),
        };
        let read_history = || async {
            match hub
                .store
                .conversation_history(&request.channel_id, &request.conversation_id, before, limit)
                .await
            {
                Ok(Some(history)) => Ok(history),
                Ok(None) => Err(conversation_not_found(
                    TOOL,
                    &request.channel_id,
                    &request.conversation_id,
                )),
                Err(e) => Err(unavailable(TOOL, &e)),
            }
        };
        let mut history = match read_history().await {
            Ok(history) => history,
            Err(failure) => return Ok(failure),
        };
        // Asked for more than the hub stores, and the app holds older messages: ask the app
        // now (as Pipedrive's inbox did on scrolling up), a few pages at most.
        let mut app_failed = None;
        for _ in 0..MAX_OLDER_FETCHES {
            let short = history.messages.len() < limit as usize;
            if history.older.is_some() || !history.app_has_older || !short {
                break;
            }
            match pdchannels_apps::fetch_older(
                &hub.store,
                &hub.apps,
                self.limits(),
                &request.channel_id,
                &request.conversation_id,
            )
            .await
            {
                Older::Fetched { .. } => {}
                Older::NoneHeld => break,
                Older::Failed(why) => {
                    app_failed = Some(why);
                    break;
                }
            }
            history = match read_history().await {
                Ok(history) => history,
                Err(failure) => return Ok(failure),
            };
        }
        let older_cursor = history.older.map(encode_message_position);
        let mut summary = format!(
            "Conversation `{}` of channel `{}`: {} participant{}, {} message{}",
            history.conversation_id,
            request.channel_id,
            history.participants.len(),
            if history.participants.len() == 1 {
                ""
            } else {
                "s"
            },
            history.messages.len(),
            if history.messages.len() == 1 { "" } else { "s" },
        );
        if older_cursor.is_some() {
            summary.push_str(" (older ones with cursor = additional_data.older_cursor)");
        } else if let Some(why) = app_failed {
            summary.push_str(&format!(
                " (the provider app holds older ones, but asking it failed: {why})"
            ));
        } else if history.app_has_older {
            summary.push_str(" (the provider app holds older ones than the hub stores)");
        }
        summary.push('.');
        let failed = history
            .unsent
            .iter()
            .filter(|u| u.state == "failed")
            .count();
        if failed > 0 {
            summary.push_str(&format!(
                " {failed} repl{} failed to go out: see data.unsent.",
                if failed == 1 { "y" } else { "ies" }
            ));
        }
        Ok(success(
            &ConversationRead {
                success: true,
                data: history,
                additional_data: HistoryPaging { older_cursor },
            },
            summary,
        ))
    }

    /// Reply to the customer in a conversation, through the channel's provider app. The reply
    /// is stored first and handed to the app once; if the app does not take it, it stays failed
    /// with the reason and `retry` with its local_id sends it again.
    #[tool(
        name = "channels_send_message",
        annotations(
            title = "Send a reply",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        ),
        output_schema = success_or_error::<ApiResponse<Sent>>()
    )]
    pub async fn send_message(
        &self,
        Parameters(args): Parameters<Arguments<SendMessage>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "channels_send_message";
        let hub = self.local_hub();
        let request: SendMessage = match read(args.value()) {
            Ok(request) => request,
            Err(problem) => return Ok(invalid(TOOL, problem)),
        };
        if request.message.is_none() && request.retry.is_none() {
            return Ok(invalid(
                TOOL,
                FieldProblem {
                    path: "message".to_owned(),
                    reason:
                        "required: the text to send (or `retry` with a failed reply's local_id)"
                            .to_owned(),
                },
            ));
        }
        let reply = Reply {
            channel_id: request.channel_id,
            conversation_id: request.conversation_id,
            message: request.message.unwrap_or_default(),
            template_id: request.template_id,
            retry: request.retry,
        };
        Ok(
            match pdchannels_apps::send_reply(&hub.store, &hub.apps, reply).await {
                Ok(sent) => {
                    let summary = format!(
                        "Sent: the app took the reply as message `{}` (status sent; delivered and read follow as the provider reports them).",
                        sent.id
                    );
                    success(&ApiResponse::ok(sent), summary)
                }
                Err(error) => send_failure(TOOL, error),
            },
        )
    }
}

impl<C: Channels> ChannelsServer<C> {
    pub(crate) fn local_hub(&self) -> &LocalHub {
        self.hub
            .as_ref()
            .expect("the conversation tools are routed only with a local hub")
    }
}

/// The path of the first string in `value` that holds a NUL, which no id or text can hold
/// (PostgreSQL's text cannot).
fn nul_at(value: &Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => s.contains('\0').then(|| path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, v)| nul_at(v, &join(k))),
        _ => None,
    }
}

/// The arguments as `T`, or the first problem at its JSON path.
pub(crate) fn read<T: DeserializeOwned>(value: &Value) -> Result<T, FieldProblem> {
    if let Some(path) = nul_at(value, "") {
        return Err(FieldProblem {
            path,
            reason: "contains a NUL character (\\u0000), which no id or text can hold".to_owned(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let reason = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path = String::new();
        }
        // serde_path_to_error already ends an unknown field's path with its name, but reports a
        // missing field at the object that lacks it: name the field itself there.
        if let Some(name) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
        }
        FieldProblem { path, reason }
    })
}

/// A read tool's arguments: a page size and a cursor besides what else `T` asks for.
trait PageArguments: DeserializeOwned {
    fn limit(&self) -> Option<u32>;
    fn cursor(&self) -> Option<&str>;
}

impl PageArguments for ListConversations {
    fn limit(&self) -> Option<u32> {
        self.limit
    }
    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

impl PageArguments for GetConversation {
    fn limit(&self) -> Option<u32> {
        self.limit
    }
    fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// A read tool's arguments, its page size (`default` when not given) and its cursor decoded by
/// `decode` (named `from`, the field of the previous answer it comes from); or the first problem.
fn paged<T: PageArguments, P>(
    value: &Value,
    default: u32,
    (from, decode): (&str, fn(&str) -> Option<P>),
) -> Result<(T, u32, Option<P>), FieldProblem> {
    let request: T = read(value)?;
    let limit = page_size(request.limit(), default)?;
    let position = match request.cursor() {
        None => None,
        Some(cursor) => Some(decode(cursor).ok_or_else(|| bad_cursor(from))?),
    };
    Ok((request, limit, position))
}

fn page_size(limit: Option<u32>, default: u32) -> Result<u32, FieldProblem> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(FieldProblem {
            path: "limit".to_owned(),
            reason: format!("must be from 1 to {MAX_PAGE}, got {n}; omit it for {default}"),
        }),
    }
}

fn bad_cursor(from: &str) -> FieldProblem {
    FieldProblem {
        path: "cursor".to_owned(),
        reason: format!(
            "not a cursor this tool gave out: pass additional_data.{from} of the previous call unchanged, or omit it"
        ),
    }
}

pub(crate) fn invalid(tool: &str, problem: FieldProblem) -> CallToolResult {
    tool_failure(
        tool,
        "INVALID_ARGUMENTS",
        "The arguments are not valid.".to_owned(),
        "Fix the argument named and call again; nothing was changed.".to_owned(),
        &[problem],
    )
}

pub(crate) fn channel_not_found(tool: &str, channel_id: &str) -> CallToolResult {
    tool_failure(
        tool,
        "NOT_FOUND",
        format!("No channel has provider_channel_id `{channel_id}`."),
        "Check the channel id: it is the provider_channel_id the channel was created with."
            .to_owned(),
        &[],
    )
}

fn conversation_not_found(tool: &str, channel_id: &str, conversation_id: &str) -> CallToolResult {
    tool_failure(
        tool,
        "NOT_FOUND",
        format!("Channel `{channel_id}` has no conversation `{conversation_id}`."),
        "List the channel's conversations with channels_list_conversations to find its id."
            .to_owned(),
        &[],
    )
}

pub(crate) fn unavailable(tool: &str, error: &StoreError) -> CallToolResult {
    tool_failure(
        tool,
        "SERVICE_UNAVAILABLE",
        format!("The hub's database did not answer: {error}"),
        "Call again shortly.".to_owned(),
        &[],
    )
}

/// Each way a reply is not sent, with what to do about it.
fn send_failure(tool: &str, error: SendError) -> CallToolResult {
    match error {
        SendError::Invalid(field, reason) => invalid(
            tool,
            FieldProblem {
                path: field.to_owned(),
                reason,
            },
        ),
        SendError::NotFound(what) => tool_failure(
            tool,
            "NOT_FOUND",
            format!("Cannot send: {what}."),
            "Check the ids with channels_list_conversations.".to_owned(),
            &[],
        ),
        SendError::Refused(why) => tool_failure(
            tool,
            "CANNOT_SEND",
            format!("Cannot send: {why}."),
            "Nothing was stored or sent.".to_owned(),
            &[],
        ),
        SendError::Failed { local_id, reason } => tool_failure(
            tool,
            "APP_DID_NOT_TAKE_THE_REPLY",
            format!("The app did not take the reply {local_id}: {reason}."),
            format!(
                "The reply is stored as failed. Send it again with retry = \"{local_id}\" once the app works; it may have reached the customer, so check the conversation first."
            ),
            &[],
        ),
        SendError::Store(why) => tool_failure(
            tool,
            "SERVICE_UNAVAILABLE",
            why,
            "Call again shortly.".to_owned(),
            &[],
        ),
    }
}
