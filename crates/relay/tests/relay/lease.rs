//! A claimed call's lease cannot lapse while it waits in the pacer: the relay claims no more
//! than the upstream's rate limit lets go within half a lease, so no call is claimed (and sent)
//! a second time while its first send is still on its way.

use std::time::Duration;

use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_hub::RateLimits;
use pdchannels_relay::{Relay, RelayConfig};
use pdchannels_store::{OutboxState, Store};
use pdchannels_testkit::TestHub;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::lanes::enqueue;
use super::{test_config, wait_until_drained};

const CALLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_for_the_rate_limit_unclaimed_so_that_no_lease_lapses() {
    // One request a second: the last of the calls would wait about six seconds in the pacer.
    let upstream = TestHub::start_with(|config| {
        config.rate_limits = RateLimits {
            per_window: Some(2),
            daily_budget: None,
        };
    })
    .await;
    upstream.add_channel("wa").await;
    // A token of its own, whose window the channel's creation did not touch.
    let token = upstream.store.create_token("relay").await.unwrap();
    let client = ChannelsClient::builder(format!("{}/v1", upstream.address))
        .credentials(Credentials::ApiToken(
            token.secret.expose_secret().to_owned().into(),
        ))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("local.db")).await.unwrap();
    let relay = Relay::new(
        store.clone(),
        client,
        RelayConfig {
            lease: Duration::from_secs(2),
            ..test_config()
        },
    );
    for i in 0..CALLS {
        enqueue(&store, &format!("m{i}"), &format!("c{i}")).await;
    }
    let stop = CancellationToken::new();
    let worker = relay.clone();
    let running = stop.clone();
    tokio::spawn(async move { worker.run(running).await });

    wait_until_drained(&store, Duration::from_secs(40)).await;
    let delivered = store
        .outbox()
        .list(Some(OutboxState::Delivered), 0, 100)
        .await
        .unwrap();
    assert_eq!(delivered.len(), CALLS);
    for call in &delivered {
        // A claim of a call whose lease was still recorded (lapsed, or held by a send under
        // way) marks it in doubt: it may then be sent twice.
        assert!(
            !call.in_doubt,
            "call {} was claimed again while its lease was held: {call:?}",
            call.id
        );
    }
    assert_eq!(upstream.store.count_messages().await.unwrap(), CALLS as i64);
    stop.cancel();
}
