//! What a person does to a conversation besides answering: mark it unread, close or reopen it,
//! delete it (after a confirmation page). Each is a form POST with the session's form token,
//! answered with a redirect (303), so it works without JavaScript.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use pdchannels_model::{Channels, ChannelsError, DeleteConversation};
use serde::Deserialize;
use serde_json::json;

use super::session::{Viewer, check_post, render, unavailable};
use super::view::{clean_query, thread_href};
use crate::state::AppState;

/// An action's form: its form token, and where to go back to (the list's filters).
#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// The list's query string (`channel=…&status=…`), kept across the action.
    #[serde(default)]
    back: Option<String>,
}

impl ActionForm {
    /// `/inbox` with the filters the form carried (only a query string: never another site).
    fn list_href(&self) -> String {
        match clean_query(self.back.as_deref().unwrap_or_default()) {
            q if q.is_empty() => "/inbox".to_owned(),
            q => format!("/inbox?{q}"),
        }
    }
}

/// What an action does.
#[derive(Clone, Copy)]
enum Action {
    Unread,
    Close,
    Reopen,
}

/// `POST /inbox/{channel}/{conversation}/unread`: back to the list (opening the thread again
/// would read it).
pub async fn unread(
    state: State<AppState>,
    viewer: Viewer,
    path: Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    form: Form<ActionForm>,
) -> Response {
    act(state, viewer, path, uri, headers, form, Action::Unread).await
}

/// `POST /inbox/{channel}/{conversation}/close`
pub async fn close(
    state: State<AppState>,
    viewer: Viewer,
    path: Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    form: Form<ActionForm>,
) -> Response {
    act(state, viewer, path, uri, headers, form, Action::Close).await
}

/// `POST /inbox/{channel}/{conversation}/reopen`
pub async fn reopen(
    state: State<AppState>,
    viewer: Viewer,
    path: Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    form: Form<ActionForm>,
) -> Response {
    act(state, viewer, path, uri, headers, form, Action::Reopen).await
}

async fn act(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
    action: Action,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    if channel_id.contains('\0') || conversation_id.contains('\0') {
        return not_found(&channel_id, &conversation_id);
    }
    let done = match action {
        Action::Unread => {
            app.store
                .mark_inbox_unread(&viewer.token_id, &channel_id, &conversation_id)
                .await
        }
        Action::Close | Action::Reopen => {
            app.store
                .set_conversation_closed(
                    &channel_id,
                    &conversation_id,
                    matches!(action, Action::Close),
                )
                .await
        }
    };
    match done {
        Ok(false) => not_found(&channel_id, &conversation_id),
        Err(e) => unavailable(&e.to_string()),
        Ok(true) => match action {
            Action::Unread | Action::Close => Redirect::to(&form.list_href()).into_response(),
            Action::Reopen => {
                Redirect::to(&thread_href(&channel_id, &conversation_id)).into_response()
            }
        },
    }
}

fn not_found(channel_id: &str, conversation_id: &str) -> Response {
    super::pages::conversation_not_found(channel_id, conversation_id)
}

#[derive(Template)]
#[template(path = "inbox/delete.html")]
struct ConfirmDelete {
    csrf: String,
    title: String,
    channel_id: String,
    conversation_id: String,
    action: String,
    cancel: String,
}

/// `GET /inbox/{channel}/{conversation}/delete`: are you sure?
pub async fn confirm_delete(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
) -> Response {
    if channel_id.contains('\0') || conversation_id.contains('\0') {
        return not_found(&channel_id, &conversation_id);
    }
    let href = thread_href(&channel_id, &conversation_id);
    match app
        .store
        .conversation_history(&channel_id, &conversation_id, None, 1)
        .await
    {
        Ok(Some(history)) => render(
            StatusCode::OK,
            &ConfirmDelete {
                csrf: viewer.csrf,
                title: history
                    .participants
                    .iter()
                    .find(|p| p.role.as_deref() == Some("end_user"))
                    .or_else(|| history.participants.first())
                    .map_or_else(
                        || conversation_id.clone(),
                        |p| p.name.clone().unwrap_or_else(|| p.id.clone()),
                    ),
                channel_id,
                conversation_id,
                action: format!("{href}/delete"),
                cancel: href,
            },
        ),
        Ok(None) => not_found(&channel_id, &conversation_id),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `POST /inbox/{channel}/{conversation}/delete`: the conversation and its messages are deleted
/// (as `DELETE /v1/channels/{id}/conversations/{id}` does), then back to the list.
pub async fn delete(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((channel_id, conversation_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(refused) = check_post(&app, &uri, &headers, Some(&viewer.csrf), Some(&form.csrf)) {
        return refused.into_response();
    }
    let payload = json!({ "channel_id": channel_id, "conversation_id": conversation_id });
    let request = match DeleteConversation::parse(&payload, &app.limits) {
        Ok(request) => request,
        Err(_) => return not_found(&channel_id, &conversation_id),
    };
    match app.channels.delete_conversation(request).await {
        Ok(()) => Redirect::to("/inbox").into_response(),
        Err(ChannelsError::ChannelNotFound { .. } | ChannelsError::ConversationNotFound { .. }) => {
            not_found(&channel_id, &conversation_id)
        }
        Err(e) => unavailable(&e.to_string()),
    }
}
