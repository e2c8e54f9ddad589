//! The inbox's pages: the list of conversations (every channel's, or one channel's, newest
//! activity first) and the open thread with its reply form. Filters and pages are in the URL, so
//! every view can be linked and the browser's back works.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use pdchannels_apps::{Reply, SendError};
use pdchannels_model::Timestamp;
use pdchannels_store::UnsentReply;
use pdchannels_store::cursor::{
    decode_cursor, decode_message_position, encode_cursor, encode_message_position,
};
use serde::Deserialize;

use super::session::{Viewer, check_post, render, unavailable};
use super::view::{self, Message, Row, segment, thread_href};
use crate::state::AppState;

/// Conversations listed at once.
const ROWS: u32 = 50;
/// Messages shown at once.
const MESSAGES: u32 = 50;

/// `?channel=&after=&before=`
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    channel: Option<String>,
    /// Where the list goes on (an "older conversations" link).
    #[serde(default)]
    after: Option<String>,
    /// Where the thread goes back to (an "older messages" link).
    #[serde(default)]
    before: Option<String>,
}

impl ListQuery {
    fn channel(&self) -> Option<&str> {
        // No channel id holds a NUL (PostgreSQL's text cannot): such a filter matches none.
        self.channel
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| if c.contains('\0') { "\u{fffd}" } else { c })
    }

    fn after(&self) -> Option<(i64, i64, String)> {
        let fields = decode_cursor(self.after.as_deref()?, 3)?;
        Some((
            fields[0].parse().ok()?,
            fields[1].parse().ok()?,
            fields[2].clone(),
        ))
    }
}

/// A channel in the filter.
pub struct ChannelOption {
    id: String,
    name: String,
    selected: bool,
}

/// The open conversation.
pub struct Thread {
    title: String,
    channel_name: String,
    link: Option<String>,
    older_href: Option<String>,
    messages: Vec<Message>,
    unsent: Vec<UnsentReply>,
    error: Option<String>,
    cannot_send: Option<String>,
    reply_href: String,
    draft: String,
}

#[derive(Template)]
#[template(path = "inbox/inbox.html")]
struct InboxPage {
    csrf: String,
    channels: Vec<ChannelOption>,
    rows: Vec<Row>,
    older_href: Option<String>,
    thread: Option<Thread>,
    back_href: String,
}

/// `GET /inbox`
pub async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Response {
    match page(&app, &viewer, &query, None).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(response) => response,
    }
}

/// `GET /inbox/{channel}/{conversation}`
pub async fn thread(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    let open = Open {
        channel_id,
        conversation_id,
        error: None,
        draft: String::new(),
    };
    match page(&app, &viewer, &query, Some(open)).await {
        Ok(page) => render(StatusCode::OK, &page),
        Err(response) => response,
    }
}

/// The conversation a page shows, with what a failed reply left behind.
struct Open {
    channel_id: String,
    conversation_id: String,
    error: Option<String>,
    draft: String,
}

async fn page(
    app: &AppState,
    viewer: &Viewer,
    query: &ListQuery,
    open: Option<Open>,
) -> Result<InboxPage, Response> {
    let failed = |e: pdchannels_store::StoreError| unavailable(&e.to_string());
    let now = Timestamp::now().unix_millis();
    let channels = app.store.list_channels(None, 500).await.map_err(failed)?;
    let mut rows = app
        .store
        .inbox_rows(query.channel(), query.after(), ROWS + 1)
        .await
        .map_err(failed)?;
    let more = rows.len() > ROWS as usize;
    rows.truncate(ROWS as usize);
    let filter = query
        .channel()
        .map(|c| format!("channel={}", segment(c)))
        .unwrap_or_default();
    let older_href = more.then(|| {
        let (ms, pk, id) = &rows.last().expect("more than none").position;
        let cursor = encode_cursor(&[&ms.to_string(), &pk.to_string(), id]);
        let sep = if filter.is_empty() { "" } else { "&" };
        format!("/inbox?{filter}{sep}after={cursor}")
    });
    let open_ids = open
        .as_ref()
        .map(|o| (o.channel_id.as_str(), o.conversation_id.as_str()));
    let thread = match &open {
        Some(open) => Some(thread_of(app, open, query, &filter, now).await?),
        None => None,
    };
    Ok(InboxPage {
        csrf: viewer.csrf.clone(),
        channels: channels
            .into_iter()
            .map(|(_, c)| ChannelOption {
                selected: query.channel() == Some(c.provider_channel_id.as_str()),
                id: c.provider_channel_id.as_str().to_owned(),
                name: c.name.as_str().to_owned(),
            })
            .collect(),
        rows: rows.iter().map(|r| view::row(r, open_ids, now)).collect(),
        older_href,
        thread,
        back_href: if filter.is_empty() {
            "/inbox".to_owned()
        } else {
            format!("/inbox?{filter}")
        },
    })
}

async fn thread_of(
    app: &AppState,
    open: &Open,
    query: &ListQuery,
    filter: &str,
    now: i64,
) -> Result<Thread, Response> {
    let failed = |e: pdchannels_store::StoreError| unavailable(&e.to_string());
    let not_found = || {
        super::session::render(
            StatusCode::NOT_FOUND,
            &NotFound {
                what: format!(
                    "Channel {} has no conversation {}.",
                    open.channel_id, open.conversation_id
                ),
            },
        )
    };
    // No id holds a NUL (PostgreSQL's text cannot): not asked of the store.
    if open.channel_id.contains('\0') || open.conversation_id.contains('\0') {
        return Err(not_found());
    }
    let before = query.before.as_deref().and_then(decode_message_position);
    let history = app
        .store
        .conversation_history(&open.channel_id, &open.conversation_id, before, MESSAGES)
        .await
        .map_err(failed)?
        .ok_or_else(not_found)?;
    let channel_name = app
        .store
        .list_channels(None, 500)
        .await
        .map_err(failed)?
        .into_iter()
        .find(|(_, c)| c.provider_channel_id.as_str() == open.channel_id)
        .map_or_else(
            || open.channel_id.clone(),
            |(_, c)| c.name.as_str().to_owned(),
        );
    let app_name = app
        .store
        .channel_app(&open.channel_id)
        .await
        .map_err(failed)?;
    let cannot_send = app_name.is_none().then(|| {
        format!(
            "Replies cannot be sent from here: the channel {} belongs to no provider app, and replies reach the customer through the channel's app. Link one with `pdchannels channels link {} APP`.",
            open.channel_id, open.channel_id
        )
    });
    let customer = history
        .participants
        .iter()
        .find(|p| p.role.as_deref() == Some("end_user"))
        .or_else(|| history.participants.first())
        .map(|p| p.name.clone().unwrap_or_else(|| p.id.clone()));
    let href = thread_href(&open.channel_id, &open.conversation_id);
    let messages: Vec<Message> = history
        .messages
        .iter()
        .filter_map(|raw| serde_json::from_str(raw.get()).ok())
        .map(|m| view::message(&m, &history.participants, now))
        .collect();
    let sep = if filter.is_empty() { "" } else { "&" };
    Ok(Thread {
        title: customer.unwrap_or_else(|| open.conversation_id.clone()),
        channel_name,
        link: history
            .link
            .clone()
            .filter(|l| l.starts_with("https://") || l.starts_with("http://")),
        older_href: history.older.map(|position| {
            format!(
                "{href}?{filter}{sep}before={}",
                encode_message_position(position)
            )
        }),
        messages,
        unsent: history.unsent,
        error: open.error.clone(),
        cannot_send,
        reply_href: format!("{href}/reply"),
        draft: open.draft.clone(),
    })
}

#[derive(Template)]
#[template(
    source = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title><link rel=\"stylesheet\" href=\"/inbox/assets/inbox.css\"></head><body><main class=\"login\"><h1>Not found</h1><p>{{ what }}</p><p><a href=\"/inbox\">Back to the inbox</a></p></main></body></html>",
    ext = "html"
)]
struct NotFound {
    what: String,
}

/// The reply form: `csrf`, and `message` or `retry` (a failed reply's local id).
#[derive(Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    retry: Option<String>,
}

/// `POST /inbox/{channel}/{conversation}/reply`: sent through the channel's app, then back to
/// the thread (303); if it is not sent, the thread again with why, the text kept.
pub async fn reply(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<ReplyForm>,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    let reply = Reply {
        channel_id: channel_id.clone(),
        conversation_id: conversation_id.clone(),
        message: form.message.clone(),
        template_id: None,
        retry: form.retry.filter(|r| !r.is_empty()),
    };
    let (status, error) = match pdchannels_apps::send_reply(&app.store, &app.apps, reply).await {
        Ok(_) => return Redirect::to(&thread_href(&channel_id, &conversation_id)).into_response(),
        Err(SendError::Invalid(_, why)) => (StatusCode::BAD_REQUEST, why),
        Err(SendError::NotFound(what)) => (StatusCode::NOT_FOUND, format!("Cannot send: {what}.")),
        Err(SendError::Refused(why)) => (StatusCode::CONFLICT, format!("Cannot send: {why}.")),
        Err(SendError::Failed { reason, .. }) => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The app did not take the reply: {reason}. It is kept as not sent below; Retry sends it again (check first that the customer did not get it)."
            ),
        ),
        Err(SendError::Store(why)) => (StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let failed_send = status == StatusCode::BAD_GATEWAY;
    let open = Open {
        channel_id,
        conversation_id,
        error: Some(error),
        // A reply kept as failed shows below; the box does not offer it a second time.
        draft: if failed_send {
            String::new()
        } else {
            form.message
        },
    };
    match page(&app, &viewer, &ListQuery::default(), Some(open)).await {
        Ok(page) => render(status, &page),
        Err(response) => response,
    }
}
