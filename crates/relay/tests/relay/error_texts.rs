//! What the relay tells a caller when a call fails: the upstream's words where they help, ours
//! where they would mislead, each URL once, and commands that can be pasted as they are.

use std::time::Duration;

use pdchannels_model::{Channels, ChannelsError, DeleteConversation, Limits, ReceiveOutcome};
use pdchannels_relay::RelayedChannels;
use serde_json::json;

use super::{local_relay, message, spawn_upstream};

#[tokio::test]
async fn a_relayed_401_says_to_check_the_upstream_token_not_to_create_a_local_one() {
    let upstream = spawn_upstream().await;
    let local = local_relay(
        &upstream.address,
        "pdc_not_a_token_of_the_upstream",
        Duration::from_secs(5),
    )
    .await;
    let channels = RelayedChannels::new(local.relay.clone());
    let err = channels
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap_err();
    let ChannelsError::Rejected {
        status, message, ..
    } = &err
    else {
        panic!("expected rejected, got {err:?}")
    };
    assert_eq!(*status, 401);
    for hint in [
        "--upstream-token",
        "--upstream-token-file",
        "pdchannels auth login",
    ] {
        assert!(message.contains(hint), "names {hint}: {message}");
    }
    let remedy = err.remedy();
    assert!(
        !message.contains("token create") && !remedy.contains("token create"),
        "a local token would not help: {message} / {remedy}"
    );
    assert!(
        !message.contains("pdc_not_a_token"),
        "the token never shows: {message}"
    );
    local.stop.cancel();
}

#[tokio::test]
async fn an_unreachable_upstream_is_named_once_and_the_show_command_names_the_database() {
    // Port 1 on loopback refuses connections.
    let local = local_relay("http://127.0.0.1:1", "pdc_any", Duration::from_millis(600)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    let received = channels
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap();
    let ReceiveOutcome::Queued { outbox_id, reason } = received.outcome else {
        panic!("expected queued, got {:?}", received.outcome)
    };
    assert!(reason.contains("cannot reach"), "{reason}");
    assert_eq!(
        reason.matches("127.0.0.1:1").count(),
        1,
        "the URL once: {reason}"
    );

    // A delete queued behind it answers with the command that shows it.
    let request = DeleteConversation::parse(
        &json!({"channel_id": "wa", "conversation_id": "c1"}),
        &Limits::default(),
    )
    .unwrap();
    let err = channels.delete_conversation(request).await.unwrap_err();
    let ChannelsError::Queued {
        outbox_id: queued,
        reason,
        ..
    } = &err
    else {
        panic!("expected queued, got {err:?}")
    };
    assert!(*queued > outbox_id, "{reason}");
    let show = format!(
        "`pdchannels --db {} outbox show {queued}`",
        local.store.database()
    );
    assert!(err.remedy().contains(&show), "{}", err.remedy());
    local.stop.cancel();
}
