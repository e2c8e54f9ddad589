//! An upstream answering a redirect: the relay never follows it. A 301/302 does not become a
//! bodiless GET taken as delivered, and no redirect carries the API token to another host.

use std::time::Duration;

use pdchannels_model::{Channels, ReceiveOutcome};
use pdchannels_relay::RelayedChannels;

use super::proxy::{Fault, OtherHost, Proxy};
use super::{local_relay, message, spawn_upstream};

#[tokio::test]
async fn a_redirect_is_never_followed_and_says_where_it_pointed() {
    for status in [301, 302, 303, 307, 308] {
        let upstream = spawn_upstream().await;
        let other = OtherHost::spawn().await;
        let location = format!("{}/v1/channels/messages/receive", other.address);
        let target = location.clone();
        let proxy = Proxy::spawn(&upstream.address, move |_| Fault::Redirect {
            status,
            location: target.clone(),
        })
        .await;
        let local = local_relay(&proxy.address, &upstream.token, Duration::from_millis(500)).await;
        let channels = RelayedChannels::new(local.relay.clone());

        let received = channels
            .receive_message(message("m1", "c1", "2024-05-01 10:00"))
            .await
            .unwrap();

        let ReceiveOutcome::Queued { outbox_id, reason } = received.outcome else {
            panic!("{status}: expected queued, got {:?}", received.outcome)
        };
        assert!(
            reason.contains(&format!("answered {status}, redirecting to {location}"))
                && reason.contains("Fix --upstream"),
            "{status}: {reason}"
        );
        let stored = local
            .store
            .outbox()
            .entry(outbox_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.state,
            pdchannels_store::OutboxState::Pending,
            "{status}: kept for after the fix"
        );
        assert!(
            stored.last_error.unwrap_or_default().contains(&location),
            "{status}"
        );
        assert!(
            other.arrived().is_empty(),
            "{status}: nothing (no GET, no token) reached the other host: {:?}",
            other.arrived()
        );
        assert!(upstream.store.message("wa", "m1").await.unwrap().is_none());

        // Once the upstream answers for itself, the call goes out.
        proxy.set(|_| Fault::Pass);
        super::wait_until_drained(&local.store, Duration::from_secs(20)).await;
        assert!(upstream.store.message("wa", "m1").await.unwrap().is_some());
        assert!(other.arrived().is_empty(), "{status}");
        local.stop.cancel();
    }
}
