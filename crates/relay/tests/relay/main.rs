//! The relay against a real hub on 127.0.0.1, through a fault-injecting proxy: dropped
//! connections, answers lost after the hub applied the call, delays past the client's timeout,
//! 5xx, 429 with reset headers, a daily budget running out.

mod delivery_span;
mod dot_ids;
mod error_texts;
mod lanes;
mod lease;
mod outage;
mod proxy;
mod redirects;
mod repeats;

use std::time::Duration;

use pdchannels_client::{ChannelsClient, Credentials};
use pdchannels_hub::{Application, HubConfig};
use pdchannels_model::{Channels, ChannelsError, Limits, ReceiveMessage, ReceiveOutcome};
use pdchannels_relay::{Delivery, Relay, RelayConfig, RelayedChannels};
use pdchannels_store::{NewOutboxEntry, Store};
use proxy::{Fault, Proxy};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// An upstream hub with channel `wa`.
type Upstream = pdchannels_testkit::TestHub;

async fn spawn_upstream() -> Upstream {
    let upstream = Upstream::start().await;
    upstream.add_channel("wa").await;
    upstream
}

/// A local store whose outbox a relay delivers to `base_url` (the proxy).
struct Local {
    store: Store,
    relay: Relay,
    stop: CancellationToken,
    _db: pdchannels_testkit::TestDatabase,
}

async fn local_relay(base_url: &str, token: &str, deliver_timeout: Duration) -> Local {
    local_relay_with(
        base_url,
        token,
        RelayConfig {
            deliver_timeout,
            ..test_config()
        },
    )
    .await
}

/// Quick retries, short leases.
fn test_config() -> RelayConfig {
    RelayConfig {
        retry_base: Duration::from_millis(40),
        // A send that never settles is claimed again after this (its answer is an upsert).
        lease: Duration::from_secs(3),
        ..RelayConfig::default()
    }
}

async fn local_relay_with(base_url: &str, token: &str, config: RelayConfig) -> Local {
    // The local outbox: SQLite, or PostgreSQL under PDCHANNELS_TEST_BACKEND=postgres.
    let db = pdchannels_testkit::TestDatabase::from_env().await;
    let store = db.open().await;
    let client = ChannelsClient::builder(format!("{base_url}/v1"))
        .credentials(Credentials::ApiToken(token.to_owned().into()))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let relay = Relay::new(store.clone(), client, config);
    let stop = CancellationToken::new();
    let worker = relay.clone();
    let token = stop.clone();
    tokio::spawn(async move { worker.run(token).await });
    Local {
        store,
        relay,
        stop,
        _db: db,
    }
}

fn message(id: &str, conversation: &str, created_at: &str) -> ReceiveMessage {
    ReceiveMessage::parse(
        &json!({"id": id, "channel_id": "wa", "sender_id": "s", "conversation_id": conversation,
                "message": format!("text {id}"), "status": "sent", "created_at": created_at}),
        &Limits::default(),
    )
    .unwrap()
}

async fn wait_until_drained(store: &Store, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = store.outbox().stats().await.unwrap();
        if stats.pending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let pending = store
                .outbox()
                .list(Some(pdchannels_store::OutboxState::Pending), 0, 20)
                .await
                .unwrap();
            panic!("outbox not drained: {stats:?}\n{pending:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of a conversation's messages as the upstream stored them, in arrival order (all
/// messages of a conversation share one created_at, so the hub orders them by arrival).
async fn arrival_order(upstream: &Upstream, conversation: &str) -> Vec<String> {
    let page = upstream
        .store
        .conversation_page("wa", conversation, None, 500)
        .await
        .unwrap()
        .unwrap();
    page.messages
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(m.get()).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_exactly_once_in_conversation_order_through_faults() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |n| match n % 11 {
        1 => Fault::Status(503),
        3 => Fault::LoseAnswer,
        4 => Fault::Drop,
        5 => Fault::DelayPastTimeout(Duration::from_millis(450)),
        6 => Fault::Status(500),
        7 if n < 60 => Fault::RateLimited {
            retry_after_secs: 1,
            daily: false,
        },
        9 => Fault::Status(502),
        _ => Fault::Pass,
    })
    .await;
    let local = local_relay(&proxy.address, &upstream.token, Duration::from_secs(10)).await;

    let conversations = ["c1", "c2", "c3", "c4"];
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); conversations.len()];
    for i in 0..120 {
        let k = i % conversations.len();
        let id = format!("m{i:03}");
        let m = message(&id, conversations[k], "2024-05-01T10:00:00.000Z");
        local
            .store
            .outbox()
            .enqueue(NewOutboxEntry {
                operation: pdchannels_model::Operation::ReceiveMessage,
                channel_key: "wa".into(),
                conversation_key: Some(conversations[k].into()),
                request: serde_json::to_value(pdchannels_client::UpstreamRequest::receive_message(
                    &m,
                ))
                .unwrap(),
                idempotency_key: None,
            })
            .await
            .unwrap();
        expected[k].push(id);
    }
    local.relay.wake();
    // Generous: on a busy machine a debug hub can be slower than the client's timeout, and
    // repeated timeouts back off (that is the relay working, not failing).
    wait_until_drained(&local.store, Duration::from_secs(150)).await;
    // Let the answers delayed past the client's timeout land too.
    tokio::time::sleep(Duration::from_millis(600)).await;

    assert_eq!(local.store.outbox().stats().await.unwrap().dead, 0);
    assert_eq!(
        upstream.store.count_messages().await.unwrap(),
        120,
        "each exactly once"
    );
    for (k, conversation) in conversations.iter().enumerate() {
        assert_eq!(
            arrival_order(&upstream, conversation).await,
            expected[k],
            "{conversation}"
        );
    }
    let faults = proxy.requests();
    assert!(
        faults > 140,
        "faults were injected and retried ({faults} requests for 120 messages)"
    );
    local.stop.cancel();
}

#[tokio::test]
async fn a_caller_gets_queued_while_the_upstream_is_down_and_the_relay_delivers_later() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |_| Fault::Status(503)).await;
    let local = local_relay(&proxy.address, &upstream.token, Duration::from_millis(400)).await;
    let channels = RelayedChannels::new(local.relay.clone());

    let received = channels
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap();
    let ReceiveOutcome::Queued { outbox_id, reason } = received.outcome else {
        panic!("expected queued, got {:?}", received.outcome)
    };
    assert!(reason.contains("503"), "{reason}");
    assert_eq!(
        local
            .store
            .outbox()
            .entry(outbox_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        pdchannels_store::OutboxState::Pending
    );

    proxy.set(|_| Fault::Pass);
    wait_until_drained(&local.store, Duration::from_secs(20)).await;
    assert!(upstream.store.message("wa", "m1").await.unwrap().is_some());

    // With the upstream up, the caller gets the upstream's own answer.
    let delivered = channels
        .receive_message(message("m2", "c1", "2024-05-01 10:01"))
        .await
        .unwrap();
    let ReceiveOutcome::Delivered { upstream: data } = delivered.outcome else {
        panic!("expected delivered, got {:?}", delivered.outcome)
    };
    assert_eq!(data["created_at"], json!("2024-05-01T10:01:00.000Z"));
    local.stop.cancel();
}

#[tokio::test]
async fn a_rejection_is_dead_quotes_the_upstream_and_can_be_retried_after_a_fix() {
    let upstream = spawn_upstream().await;
    let local = local_relay(&upstream.address, &upstream.token, Duration::from_secs(5)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    let mut m = message("m1", "c1", "2024-05-01 10:00");
    m.channel_id = pdchannels_model::ChannelId::parse("fb", &Limits::default()).unwrap();
    let err = channels.receive_message(m).await.unwrap_err();
    let ChannelsError::Rejected {
        status,
        code,
        message,
        outbox_id,
        ..
    } = &err
    else {
        panic!("expected rejected, got {err:?}")
    };
    assert_eq!((*status, code.as_deref()), (404, Some("NOT_FOUND")));
    assert!(message.contains("Channel not found."), "{message}");
    let retry = format!(
        "`pdchannels --db {} outbox retry {outbox_id}`",
        local.store.database()
    );
    assert!(err.remedy().contains(&retry), "{}", err.remedy());
    assert_eq!(
        local
            .store
            .outbox()
            .entry(*outbox_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        pdchannels_store::OutboxState::Dead
    );

    // The fix: the channel exists upstream. Then a retry delivers it.
    reqwest::Client::new()
        .post(format!("{}/v1/channels", upstream.address))
        .header("x-api-token", &upstream.token)
        .json(&json!({"name": "FB", "provider_channel_id": "fb"}))
        .send()
        .await
        .unwrap();
    assert!(local.store.outbox().retry(*outbox_id).await.unwrap());
    local.relay.wake();
    wait_until_drained(&local.store, Duration::from_secs(10)).await;
    assert!(upstream.store.message("fb", "m1").await.unwrap().is_some());
    local.stop.cancel();
}

#[tokio::test]
async fn after_a_429_the_relay_waits_as_long_as_it_was_told() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |n| {
        if n == 0 {
            Fault::RateLimited {
                retry_after_secs: 1,
                daily: false,
            }
        } else {
            Fault::Pass
        }
    })
    .await;
    let local = local_relay(&proxy.address, &upstream.token, Duration::from_secs(10)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    let received = channels
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap();
    assert!(matches!(received.outcome, ReceiveOutcome::Delivered { .. }));
    let times = proxy.request_times();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "{:?}",
        times[1] - times[0]
    );
    local.stop.cancel();
}

#[tokio::test]
async fn an_exhausted_daily_budget_holds_the_queue_until_the_reset_and_says_so() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |n| {
        if n < 1 {
            Fault::RateLimited {
                retry_after_secs: 2,
                daily: true,
            }
        } else {
            Fault::Pass
        }
    })
    .await;
    let local = local_relay(&proxy.address, &upstream.token, Duration::from_millis(500)).await;
    let channels = RelayedChannels::new(local.relay.clone());
    let received = channels
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap();
    let ReceiveOutcome::Queued { reason, .. } = received.outcome else {
        panic!("expected queued, got {:?}", received.outcome)
    };
    assert!(
        reason.contains("429") && reason.contains("daily token budget is used up"),
        "{reason}"
    );
    wait_until_drained(&local.store, Duration::from_secs(10)).await;
    let times = proxy.request_times();
    assert!(
        times[1] - times[0] >= Duration::from_millis(1950),
        "held until the reset"
    );
    local.stop.cancel();
}

#[tokio::test]
async fn a_relaying_hub_answers_202_while_the_upstream_is_down_and_shows_its_outbox_in_metrics() {
    let upstream = spawn_upstream().await;
    let proxy = Proxy::spawn(&upstream.address, |_| Fault::Status(503)).await;
    let local = local_relay(&proxy.address, &upstream.token, Duration::from_millis(300)).await;
    let token = local.store.create_token("test").await.unwrap();
    let token = token.secret.expose_secret().to_owned();
    let app = Application::build(
        HubConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HubConfig::default()
        },
        local.store.clone(),
        Delivery::Upstream(RelayedChannels::new(local.relay.clone())),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let hub = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(format!("{hub}/metrics"))
            .header("x-api-token", &token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let answer = http
        .post(format!("{hub}/v1/channels/messages/receive"))
        .header("x-api-token", &token)
        .json(
            &json!({"id": "m1", "channel_id": "wa", "sender_id": "s", "conversation_id": "c1",
                      "message": "hi", "status": "sent", "created_at": "2024-05-01T10:00:00Z"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["additional_data"]["queued"]["outbox_id"], 1, "{body}");
    let reason = body["additional_data"]["queued"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("upstream answered 503"), "{body}");
    let text = metrics().await;
    assert!(
        text.contains("pdchannels_outbox_calls{state=\"pending\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("pdchannels_outbox_oldest_pending_age_seconds"),
        "{text}"
    );

    proxy.set(|_| Fault::Pass);
    wait_until_drained(&local.store, Duration::from_secs(20)).await;
    let text = metrics().await;
    assert!(
        text.contains("pdchannels_outbox_calls{state=\"pending\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("pdchannels_outbox_calls{state=\"delivered\"} 1"),
        "{text}"
    );
    local.stop.cancel();
}
