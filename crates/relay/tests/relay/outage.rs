//! The relay after an outage: once the upstream answers again, the calls waiting out the backoff
//! of their failures go at once, not each after its own delay.

use std::time::Duration;

use pdchannels_relay::RelayConfig;
use pdchannels_store::{OutboxEntry, OutboxState, Store};
use tokio::time::Instant;

use super::lanes::enqueue;
use super::proxy::{Fault, Proxy};
use super::{local_relay_with, spawn_upstream, test_config, wait_until_drained};

const CALLS: usize = 50;

async fn pending(store: &Store) -> Vec<OutboxEntry> {
    store
        .outbox()
        .list(Some(OutboxState::Pending), 0, 1000)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_calls_waiting_for_their_retry_go_as_soon_as_one_gets_through() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |_| Fault::Status(503)).await;
    let local = local_relay_with(
        &proxy.address,
        &upstream.token,
        RelayConfig {
            // Each failed call then waits 5 to 10 s (jittered) for its retry.
            retry_base: Duration::from_secs(10),
            ..test_config()
        },
    )
    .await;
    for i in 0..CALLS {
        enqueue(&local.store, &format!("m{i}"), &format!("c{i}")).await;
    }
    local.relay.wake();

    // The outage: every call fails once, then waits for its own retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let calls = pending(&local.store).await;
        if calls.len() == CALLS && calls.iter().all(|call| call.last_error.is_some()) {
            break calls;
        }
        assert!(Instant::now() < deadline, "the calls did not all fail once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = pdchannels_model::Timestamp::now().unix_millis();
    proxy.set(|_| Fault::Pass);
    let due: Vec<i64> = waiting
        .iter()
        .map(|call| call.next_attempt_at_ms - ended)
        .collect();
    let (first, last) = (*due.iter().min().unwrap(), *due.iter().max().unwrap());
    assert!(
        last - first > 3000,
        "the retries are spread (first in {first} ms, last in {last} ms), so that catching up one \
         by one would show"
    );

    // The first retry gets through; the rest follow at once.
    wait_until_drained(&local.store, Duration::from_secs(30)).await;
    let drained = pdchannels_model::Timestamp::now().unix_millis() - ended;
    assert_eq!(
        upstream.store.count_messages().await.unwrap(),
        CALLS as i64,
        "the upstream got every call"
    );
    assert!(
        drained <= first + 2500,
        "all delivered {drained} ms after the outage: the first retry was due after {first} ms, \
         the last after {last} ms"
    );
    local.stop.cancel();
}
