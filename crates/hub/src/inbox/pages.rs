//! The inbox's pages: the list of conversations (every channel's, or one channel's, newest
//! activity first) and the open thread with its reply form. Filters and pages are in the URL, so
//! every view can be linked and the browser's back works.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use pdchannels_apps::{Older, Reply, SendError};
use pdchannels_model::Timestamp;
use pdchannels_store::cursor::{
    decode_cursor, decode_message_position, encode_cursor, encode_message_position,
};
use pdchannels_store::{InboxFilter, UnsentReply};
use serde::Deserialize;

use super::session::{Viewer, check_post, render, unavailable};
use super::view::{self, Message, Row, clean_query, thread_href};
use crate::state::AppState;

/// Conversations listed at once.
const ROWS: u32 = 50;
/// Messages shown at once.
const MESSAGES: u32 = 50;

/// The list's filters and the pages' positions, all in the URL: `?channel=&status=&unread=1
/// &awaiting=1&q=&after=&before=`.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    channel: Option<String>,
    /// `open` (the default), `closed` or `all`.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    unread: Option<String>,
    #[serde(default)]
    awaiting: Option<String>,
    /// The search box.
    #[serde(default)]
    q: Option<String>,
    /// Where the list goes on (an "older conversations" link).
    #[serde(default)]
    after: Option<String>,
    /// Where the thread goes back to (an "older messages" link).
    #[serde(default)]
    before: Option<String>,
}

/// The longest search the box takes (characters); more is cut.
const MAX_SEARCH_CHARS: usize = 200;

impl ListQuery {
    fn channel(&self) -> Option<&str> {
        // No channel id holds a NUL (PostgreSQL's text cannot): such a filter matches none.
        self.channel
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| if c.contains('\0') { "\u{fffd}" } else { c })
    }

    fn status(&self) -> &str {
        match self.status.as_deref() {
            Some("closed") => "closed",
            Some("all") => "all",
            _ => "open",
        }
    }

    fn unread(&self) -> bool {
        self.unread
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "0")
    }

    fn awaiting(&self) -> bool {
        self.awaiting
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "0")
    }

    fn search(&self) -> Option<String> {
        let q = self.q.as_deref()?.replace('\0', " ");
        let q: String = q.trim().chars().take(MAX_SEARCH_CHARS).collect();
        (!q.is_empty()).then_some(q)
    }

    fn filter(&self) -> InboxFilter {
        InboxFilter {
            channel_id: self.channel().map(str::to_owned),
            closed: match self.status() {
                "closed" => Some(true),
                "all" => None,
                _ => Some(false),
            },
            unread_only: self.unread(),
            awaiting_only: self.awaiting(),
            search: self.search(),
        }
    }

    /// The filters as a query string (no `?`), for every link that keeps them.
    fn filter_query(&self) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        if let Some(channel) = self.channel() {
            pairs.append_pair("channel", channel);
        }
        if self.status() != "open" {
            pairs.append_pair("status", self.status());
        }
        if self.unread() {
            pairs.append_pair("unread", "1");
        }
        if self.awaiting() {
            pairs.append_pair("awaiting", "1");
        }
        if let Some(q) = self.search() {
            pairs.append_pair("q", &q);
        }
        pairs.finish()
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

/// `base` with the query `query` (if any).
fn with_query(base: &str, query: &str) -> String {
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

/// The filters and page a form carried back in `back` (see [`clean_query`]), so that a page
/// answered to a POST shows the list as the person had it.
fn carried_query(back: &str) -> (String, ListQuery) {
    let back = clean_query(back);
    let query = format!("/?{back}")
        .parse::<Uri>()
        .ok()
        .and_then(|uri| Query::<ListQuery>::try_from_uri(&uri).ok())
        .map(|Query(query)| query)
        .unwrap_or_default();
    (back, query)
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
    /// The oldest stored messages are shown and the channel's app holds older ones: the query
    /// string of this page, which a button to ask the app carries back.
    app_older: Option<String>,
    messages: Vec<Message>,
    unsent: Vec<UnsentReply>,
    error: Option<String>,
    cannot_send: Option<CannotSend>,
    /// `reply_by`: until when free text is taken, as people read it; after it, why not.
    reply_window: Option<ReplyWindow>,
    /// The channel's templates, offered once free text is no longer taken.
    templates: Vec<TemplateOption>,
    closed: bool,
    /// Where its actions post: `{href}/reply`, `{href}/unread`, …
    href: String,
    draft: String,
}

/// Why the thread has no composer, and the command that gives it one.
pub struct CannotSend {
    why: String,
    command: String,
}

impl Thread {
    /// `reply_by` passed: the provider takes only templates.
    fn free_text_closed(&self) -> bool {
        self.reply_window.as_ref().is_some_and(|w| w.passed)
    }
}

/// The conversation's `reply_by`, shown above the composer.
pub struct ReplyWindow {
    passed: bool,
    time_iso: String,
    time_exact: String,
    /// "3 h left", or when it ended.
    text: String,
}

/// A template the composer offers.
pub struct TemplateOption {
    id: String,
    label: String,
}

#[derive(Template)]
#[template(path = "inbox/inbox.html")]
struct InboxPage {
    csrf: String,
    channels: Vec<ChannelOption>,
    status: String,
    unread_only: bool,
    awaiting_only: bool,
    search: String,
    /// The list's filters as a query string, kept across actions.
    filter: String,
    unread_count: i64,
    rows: Vec<Row>,
    older_href: Option<String>,
    thread: Option<Thread>,
    back_href: String,
}

impl InboxPage {
    /// `(3) ` before the title when conversations are unread, `(999+) ` past the counted ones.
    fn unread_prefix(&self) -> String {
        match self.unread_count {
            0 => String::new(),
            n if n >= pdchannels_store::UNREAD_COUNT_WINDOW => {
                format!("({}+) ", pdchannels_store::UNREAD_COUNT_WINDOW - 1)
            }
            n => format!("({n}) "),
        }
    }
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

/// `GET /inbox/{channel}/{conversation}`: marks it read (unless the page only refreshed itself
/// in a tab nobody looks at: `X-Inbox-Background: 1`).
pub async fn thread(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let seen = headers
        .get("x-inbox-background")
        .is_none_or(|v| v.as_bytes() != b"1");
    let ids_ok = !channel_id.contains('\0') && !conversation_id.contains('\0');
    let reading = seen && ids_ok;
    // The read marker is written while the page is read (the page shows the conversation read
    // either way, see `Open::reading`), and the answer waits for both: the marker's commit
    // (an fsync) no longer comes on top of the page's reads.
    let mark = async {
        if !reading {
            return Ok(());
        }
        // A read first: opening a conversation already read costs no write.
        match app
            .store
            .inbox_unread(&viewer.token_id, &channel_id, &conversation_id)
            .await
        {
            Ok(Some(true)) => app
                .store
                .mark_inbox_read(&viewer.token_id, &channel_id, &conversation_id)
                .await
                .map(drop),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    };
    let open = Open {
        channel_id: channel_id.clone(),
        conversation_id: conversation_id.clone(),
        error: None,
        draft: String::new(),
        reading,
    };
    let (marked, page) = tokio::join!(mark, page(&app, &viewer, &query, Some(open)));
    if let Err(e) = marked {
        return unavailable(&e.to_string());
    }
    match page {
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
    /// The person is opening it, and its read marker is being written meanwhile: the page shows
    /// it read (in the list, and in the title's count) whether its reads came before or after
    /// the marker's commit.
    reading: bool,
}

impl Open {
    /// The thread again after a form it could not act on: `error` says why, `draft` is put
    /// back in the reply box.
    fn refused(channel_id: String, conversation_id: String, error: String, draft: String) -> Self {
        Self {
            channel_id,
            conversation_id,
            error: Some(error),
            draft,
            reading: false,
        }
    }

    /// The page with this thread open, answered with `status`.
    async fn answer(
        self,
        app: &AppState,
        viewer: &Viewer,
        query: &ListQuery,
        status: StatusCode,
    ) -> Response {
        match page(app, viewer, query, Some(self)).await {
            Ok(page) => render(status, &page),
            Err(response) => response,
        }
    }
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
    let reading = open
        .as_ref()
        .filter(|o| o.reading)
        .map(|o| (o.channel_id.as_str(), o.conversation_id.as_str()));
    let is_read = |r: &pdchannels_store::InboxRow| {
        reading == Some((r.channel_id.as_str(), r.conversation_id.as_str()))
    };
    // An unread-only list leaves out the one being read: one more row keeps a full page.
    let spare = u32::from(reading.is_some() && query.unread());
    let mut rows = app
        .store
        .inbox_rows(
            &viewer.token_id,
            &query.filter(),
            query.after(),
            ROWS + 1 + spare,
        )
        .await
        .map_err(failed)?;
    if reading.is_some() {
        rows.retain(|r| !(query.unread() && is_read(r)));
        for row in rows.iter_mut().filter(|r| is_read(r)) {
            row.unread = false;
        }
    }
    let unread_count = app
        .store
        .inbox_unread_count(&viewer.token_id, reading)
        .await
        .map_err(failed)?;
    let more = rows.len() > ROWS as usize;
    rows.truncate(ROWS as usize);
    let filter = query.filter_query();
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
        Some(open) => Some(thread_of(app, open, query, &filter, &channels, now).await?),
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
        status: query.status().to_owned(),
        unread_only: query.unread(),
        awaiting_only: query.awaiting(),
        search: query.search().unwrap_or_default(),
        filter: filter.clone(),
        unread_count,
        rows: rows
            .iter()
            .map(|r| view::row(r, open_ids, &filter, now))
            .collect(),
        older_href,
        thread,
        back_href: with_query("/inbox", &filter),
    })
}

async fn thread_of(
    app: &AppState,
    open: &Open,
    query: &ListQuery,
    filter: &str,
    channels: &[(i64, pdchannels_store::ChannelRecord)],
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
    let channel = channels
        .iter()
        .find(|(_, c)| c.provider_channel_id.as_str() == open.channel_id)
        .map(|(_, c)| c);
    let channel_name =
        channel.map_or_else(|| open.channel_id.clone(), |c| c.name.as_str().to_owned());
    let app_name = app
        .store
        .channel_app(&open.channel_id)
        .await
        .map_err(failed)?;
    let cannot_send = app_name.is_none().then(|| CannotSend {
        why: format!(
            "Replies cannot be sent from here: the channel {} belongs to no provider app, and replies reach the customer through the channel's app. Link one with:",
            open.channel_id
        ),
        command: format!("pdchannels channels link {} APP", open.channel_id),
    });
    let customer = history
        .participants
        .iter()
        .find(|p| p.role.as_deref() == Some("end_user"))
        .or_else(|| history.participants.first())
        .map(|p| p.name.clone().unwrap_or_else(|| p.id.clone()));
    let href = thread_href(&open.channel_id, &open.conversation_id);
    let payloads: Vec<serde_json::Value> = history
        .messages
        .iter()
        .filter_map(|raw| serde_json::from_str(raw.get()).ok())
        .collect();
    let reply_window = view::reply_by(&payloads).map(|by| reply_window(by, now));
    let templates = match &reply_window {
        Some(w) if w.passed && app_name.is_some() => {
            // Offered only where the channel has templates; anything else leaves the
            // composer's own explanation.
            app.templates
                .list(&app.store, &app.apps, &open.channel_id)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|t| TemplateOption {
                    label: t
                        .name
                        .clone()
                        .or_else(|| t.content.clone())
                        .unwrap_or_else(|| t.id.clone()),
                    id: t.id,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let messages: Vec<Message> = payloads
        .iter()
        .map(|m| view::message(m, &history.participants, now))
        .collect();
    let sep = if filter.is_empty() { "" } else { "&" };
    let app_older =
        (history.older.is_none() && history.app_has_older && app_name.is_some()).then(|| {
            match &query.before {
                Some(before) => format!("{filter}{sep}before={before}"),
                None => filter.to_owned(),
            }
        });
    Ok(Thread {
        title: customer.unwrap_or_else(|| open.conversation_id.clone()),
        channel_name,
        link: history.link.clone().filter(|l| view::is_web_link(l)),
        app_older,
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
        reply_window,
        templates,
        closed: history.state.as_deref() == Some("closed"),
        href,
        draft: open.draft.clone(),
    })
}

fn reply_window(by_ms: i64, now_ms: i64) -> ReplyWindow {
    let passed = by_ms <= now_ms;
    ReplyWindow {
        passed,
        time_iso: view::iso(by_ms),
        time_exact: view::exact(by_ms),
        text: if passed {
            "The time to answer in free text has ended: the provider takes only templates now."
                .to_owned()
        } else {
            format!("{} left to answer in free text.", view::left(by_ms, now_ms))
        },
    }
}

/// The 404 page of a conversation the channel does not have (every inbox route's).
pub(super) fn conversation_not_found(channel_id: &str, conversation_id: &str) -> Response {
    render(
        StatusCode::NOT_FOUND,
        &NotFound {
            what: format!("Channel {channel_id} has no conversation {conversation_id}."),
        },
    )
}

#[derive(Template)]
#[template(
    source = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title><link rel=\"stylesheet\" href=\"/inbox/assets/inbox.css\"><link rel=\"icon\" href=\"/inbox/assets/icon.svg\" type=\"image/svg+xml\"></head><body><main class=\"login\"><h1>Not found</h1><p>{{ what }}</p><p><a href=\"/inbox\">Back to the inbox</a></p></main></body></html>",
    ext = "html"
)]
struct NotFound {
    what: String,
}

/// The reply form: `csrf`, and `message` (with a `template_id` chosen after `reply_by`) or
/// `retry` (a failed reply's local id).
#[derive(Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    /// The list's filters, kept on the page that answers.
    #[serde(default)]
    back: String,
}

/// `POST /inbox/{channel}/{conversation}/reply`: sent through the channel's app, then back to
/// the thread (303); if it is not sent, the thread again with why, the text kept.
pub async fn reply(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<ReplyForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => {
            return unreadable_reply(
                &app,
                &viewer,
                &uri,
                &headers,
                channel_id,
                conversation_id,
                &rejection,
            )
            .await;
        }
    };
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    let (back, query) = carried_query(&form.back);
    let thread = with_query(&thread_href(&channel_id, &conversation_id), &back);
    let template_id = form.template_id.filter(|t| !t.is_empty());
    let reply = Reply {
        channel_id: channel_id.clone(),
        conversation_id: conversation_id.clone(),
        // A template is sent by its text where none was written (the app knows it by its id).
        message: if form.message.trim().is_empty() && template_id.is_some() {
            template_text(&app, &channel_id, template_id.as_deref()).await
        } else {
            form.message.clone()
        },
        template_id,
        retry: form.retry.filter(|r| !r.is_empty()),
    };
    let (status, error) = match pdchannels_apps::send_reply(&app.store, &app.apps, reply).await {
        Ok(_) => {
            // Answering a conversation reads it.
            let _ = app
                .store
                .mark_inbox_read(&viewer.token_id, &channel_id, &conversation_id)
                .await;
            return Redirect::to(&thread).into_response();
        }
        Err(SendError::Invalid(_, why)) => (StatusCode::BAD_REQUEST, why),
        Err(SendError::NotFound(what)) => (StatusCode::NOT_FOUND, format!("Cannot send: {what}.")),
        Err(SendError::Refused(why)) => (StatusCode::CONFLICT, format!("Cannot send: {why}.")),
        Err(SendError::Failed { .. }) => (StatusCode::BAD_GATEWAY, String::new()),
        Err(SendError::Store(why)) => (StatusCode::SERVICE_UNAVAILABLE, why),
    };
    if status == StatusCode::BAD_GATEWAY {
        // The reply is kept as failed, with why, and shows in the thread with Retry: back to
        // the thread (303), so that reloading the page cannot send the form a second time.
        return Redirect::to(&thread).into_response();
    }
    // Nothing was stored: the text stays in the box.
    let open = Open::refused(channel_id, conversation_id, error, form.message);
    open.answer(&app, &viewer, &query, status).await
}

/// A reply form the hub could not read (over the largest form, or not a form): the thread
/// with why, and nothing sent. The page's script puts the text back in the box.
async fn unreadable_reply(
    app: &AppState,
    viewer: &Viewer,
    uri: &Uri,
    headers: &HeaderMap,
    channel_id: String,
    conversation_id: String,
    rejection: &FormRejection,
) -> Response {
    // Not from the inbox's own page: refused as any such POST (nothing is shown to it).
    if let Err(refused) = check_post(app, uri, headers, None, None) {
        return refused.into_response();
    }
    // The form's own filters could not be read: the page it was sent from has them.
    let sent_from = headers
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| r.split_once('?'))
        .map_or("", |(_, query)| query);
    let (_, query) = carried_query(sent_from);
    let status = rejection.status();
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "The reply is far over 64 KiB, the most a message may be: nothing was sent. Shorten it, or send it in parts.".to_owned()
    } else {
        format!(
            "The reply form could not be read ({}): nothing was sent.",
            rejection.body_text()
        )
    };
    let open = Open::refused(channel_id, conversation_id, error, String::new());
    open.answer(app, viewer, &query, status).await
}

/// The form of the button that asks the app for older messages: where to come back to.
#[derive(Deserialize)]
pub struct OlderForm {
    #[serde(default)]
    csrf: String,
    /// The thread page's query string (filters, `before`).
    #[serde(default)]
    back: String,
}

/// `POST /inbox/{channel}/{conversation}/older`: the channel's app is asked for the messages
/// before the oldest one stored (as Pipedrive's inbox did on scrolling up; the agents'
/// `channels_get_conversation` does the same), which are stored by the receive rules; then
/// back to the same page of the thread (303), which now goes on further back. If the app
/// cannot give them, the thread again with why (502).
pub async fn older(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<OlderForm>,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    if channel_id.contains('\0') || conversation_id.contains('\0') {
        return conversation_not_found(&channel_id, &conversation_id);
    }
    let (back, query) = carried_query(&form.back);
    let why = match pdchannels_apps::fetch_older(
        &app.store,
        &app.apps,
        &app.limits,
        &channel_id,
        &conversation_id,
    )
    .await
    {
        Older::Fetched { .. } | Older::NoneHeld => {
            let back = with_query(&thread_href(&channel_id, &conversation_id), &back);
            return Redirect::to(&back).into_response();
        }
        Older::Failed(why) => why,
    };
    let error = format!(
        "The provider app could not give older messages: {why}. What the hub stores is shown; try again later."
    );
    let open = Open::refused(channel_id, conversation_id, error, String::new());
    open.answer(&app, &viewer, &query, StatusCode::BAD_GATEWAY)
        .await
}

/// A template's text, by its id (empty if the app no longer has it: the send then says the
/// reply is empty).
async fn template_text(app: &AppState, channel_id: &str, template_id: Option<&str>) -> String {
    let Some(id) = template_id else {
        return String::new();
    };
    app.templates
        .list(&app.store, &app.apps, channel_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.id == id)
        .and_then(|t| t.content.or(t.name))
        .unwrap_or_default()
}
