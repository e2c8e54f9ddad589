//! Older messages on demand: when a reader asks for messages past the oldest one the hub
//! stores and the app said it holds more (`next_messages_cursor`), the hub asks the app
//! (getConversationById with `after` = that cursor) there and then, stores what it answers by
//! the receive rules, and keeps the app's next cursor. Like Pipedrive's infinite loader, never in
//! the background: the research's "sync just the recent conversations".

use pdchannels_model::manifest::Endpoint;
use pdchannels_model::{Channels, Limits, ReceiveOutcome};
use pdchannels_store::Store;

use crate::call::{Answer, AppClient};
use crate::conversation::read_conversation;
use crate::turns::{Turns, new_turns, take_turn};

/// One fetch of older messages per conversation at a time (a few locks shared by all).
static CONVERSATION_TURNS: Turns = new_turns();

/// What asking for older messages did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Older {
    /// The app holds none (no cursor is stored), or the channel belongs to no app.
    NoneHeld,
    /// This many messages were stored; `more`: whether the app holds older ones still.
    Fetched {
        /// New messages stored.
        added: usize,
        /// Whether a cursor to older ones remains.
        more: bool,
    },
    /// The app could not give them: why (what is stored is unchanged).
    Failed(String),
}

/// Asks the app of `channel_id` for the messages of `conversation_id` older than the stored
/// ones, and stores them. The cursor is dropped (no more asking) when the app answers the same
/// cursor again or a page with no message the hub did not have: the stop rules against apps
/// whose cursor never ends.
pub async fn fetch_older(
    store: &Store,
    client: &AppClient,
    limits: &Limits,
    channel_id: &str,
    conversation_id: &str,
) -> Older {
    match fetch(store, client, limits, channel_id, conversation_id).await {
        Ok(older) => older,
        Err(why) => Older::Failed(why),
    }
}

async fn fetch(
    store: &Store,
    client: &AppClient,
    limits: &Limits,
    channel_id: &str,
    conversation_id: &str,
) -> Result<Older, String> {
    let text = |e: pdchannels_store::StoreError| e.to_string();
    let Some(app) = crate::call::app_of_channel(store, channel_id)
        .await
        .map_err(text)?
    else {
        return Ok(Older::NoneHeld);
    };
    crate::call::callable(&app)?;
    // One fetch per conversation at a time; a reader that waited finds the cursor moved on.
    let _turn = take_turn(
        &CONVERSATION_TURNS,
        &format!("{channel_id}\0{conversation_id}"),
    )
    .await;
    let Some(cursor) = store
        .messages_cursor(channel_id, conversation_id)
        .await
        .map_err(text)?
    else {
        return Ok(Older::NoneHeld);
    };
    let called = client
        .get(
            &app,
            Endpoint::GetConversationById,
            &[
                ("providerChannelId", channel_id),
                ("sourceConversationId", conversation_id),
            ],
            &[
                ("messages_limit", "30".to_owned()),
                ("after", cursor.clone()),
            ],
        )
        .await
        .ok_or("the app's manifest has no getConversationById")?;
    let data = match called.answer {
        Answer::Data(data) => data,
        Answer::Refused(r) => {
            crate::call::remember_refusal(store, &app.name, &r)
                .await
                .map_err(text)?;
            return Err(format!("the app refused: {}", r.describe()));
        }
        Answer::Failed(why) => return Err(why),
    };
    let mut conversation = read_conversation(&data, channel_id, Some(conversation_id), limits)?;
    let mut added = 0;
    for message in std::mem::take(&mut conversation.messages) {
        match store.receive_message(message).await {
            Ok(received) if received.outcome == ReceiveOutcome::Created => added += 1,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut next = conversation.details.next_messages_cursor.take();
    if added == 0 || next.as_deref() == Some(cursor.as_str()) {
        next = None;
    }
    let more = next.is_some();
    store
        .advance_messages_cursor(channel_id, conversation_id, &cursor, next)
        .await
        .map_err(text)?;
    Ok(Older::Fetched { added, more })
}
