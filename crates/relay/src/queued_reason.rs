//! Why a call accepted into the outbox is not delivered yet, in words its caller can act on: the
//! call of the same conversation (or channel) it waits behind, or why its own last send failed
//! and when it goes again, or that it is being sent.

use pdchannels_model::Timestamp;
use pdchannels_store::{Outbox, OutboxEntry, OutboxState};

/// Why call `id` is still queued, read from the outbox now.
pub(crate) async fn queued_reason(outbox: &Outbox, id: i64) -> String {
    const UNKNOWN: &str = "the upstream has not answered yet";
    let Ok(Some(call)) = outbox.entry(id).await else {
        return UNKNOWN.to_owned();
    };
    if call.state != OutboxState::Pending {
        return UNKNOWN.to_owned();
    }
    if let Ok(Some(blocker_id)) = outbox.held_behind(id).await {
        let blocker = outbox.entry(blocker_id).await.ok().flatten();
        return held_behind(&call, blocker_id, blocker.as_ref());
    }
    let now = Timestamp::now().unix_millis();
    match &call.last_error {
        Some(error) if call.next_attempt_at_ms > now => {
            format!("{error}; {}", retrying_in(call.next_attempt_at_ms - now))
        }
        Some(error) => format!("{error}; retrying now"),
        // Claimed (each claim counts an attempt), so under way: in the pacer, or sent.
        None if call.attempts > 0 => "being sent; the upstream has not answered yet".to_owned(),
        // Nothing says why it has not been claimed yet (a relay busy with other calls, one not
        // running, a deliver timeout of 0 s): say what is known, not a guess.
        None => "not sent yet: no relay has taken it up so far (a relay delivers it in order; \
                 `pdchannels relay` runs one)"
            .to_owned(),
    }
}

/// "held behind call N of the same conversation (upstream answered 503; retried in 4.0 s)": the
/// call that must go first, and, when it failed, why and when it goes again.
fn held_behind(call: &OutboxEntry, blocker_id: i64, blocker: Option<&OutboxEntry>) -> String {
    let same_conversation = call.conversation_key.is_some()
        && blocker.is_some_and(|b| b.conversation_key == call.conversation_key);
    let scope = if same_conversation {
        "conversation"
    } else {
        "channel"
    };
    let mut reason = format!("held behind call {blocker_id} of the same {scope}");
    if let Some(blocker) = blocker
        && let Some(error) = &blocker.last_error
    {
        let now = Timestamp::now().unix_millis();
        let when = if blocker.next_attempt_at_ms > now {
            retrying_in(blocker.next_attempt_at_ms - now)
        } else {
            "retrying now".to_owned()
        };
        reason.push_str(&format!(", which failed: {error}; {when}"));
    }
    reason
}

/// "retrying in 2.5 s"
pub(crate) fn retrying_in(ms: i64) -> String {
    format!("retrying in {:.1} s", ms.max(0) as f64 / 1000.0)
}
