//! Two hubs on one PostgreSQL database behave as one: a token's rate limits and daily budget
//! count the requests of both together, and a token revoked on one is refused by both within
//! 2 seconds. (Two `Store`s on one database stand for two processes: neither shares memory
//! with the other; `crates/cli/tests/cli/postgres_hubs.rs` runs real processes.)

use std::time::{Duration, Instant};

use pdchannels_hub::RateLimits;
use pdchannels_store::Store;
use pdchannels_testkit::{TestDatabase, TestHub};

/// Two hubs on one fresh PostgreSQL database with `limits`; `None` without a server.
async fn two_hubs(limits: RateLimits) -> Option<(TestHub, TestHub, TestDatabase)> {
    let db = TestDatabase::postgres().await?;
    let start = |store: Store| {
        TestHub::builder()
            .store(store)
            .config(move |c| c.rate_limits = limits)
            .start()
    };
    let a = start(db.open().await).await;
    let b = start(Store::connect(db.database()).await.unwrap()).await;
    Some((a, b, db))
}

/// Sends `count` `GET path` with `token`, alternating between the hubs; how many were admitted.
async fn admitted(hubs: [&TestHub; 2], token: &str, path: &str, count: usize) -> usize {
    let mut admitted = 0;
    for i in 0..count {
        let hub = hubs[i % 2];
        let status = hub
            .client
            .get(hub.url(path))
            .header("x-api-token", token)
            .send()
            .await
            .unwrap()
            .status();
        match status.as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    admitted
}

#[tokio::test]
async fn two_hubs_admit_one_burst_window_between_them_not_one_each() {
    let limits = RateLimits {
        per_window: Some(10),
        daily_budget: None,
    };
    let Some((a, b, _db)) = two_hubs(limits).await else {
        return;
    };
    let started = Instant::now();
    let admitted = admitted([&a, &b], &a.token, "/v1/channels", 30).await;
    // The 30 requests fit in one 2-second window unless the machine is very slow; if not, the
    // window may have rolled once (never more than twice the limit).
    if started.elapsed() < Duration::from_millis(1_900) {
        assert_eq!(admitted, 10, "one window of 10 across both hubs");
    } else {
        assert!(admitted <= 20, "admitted {admitted}");
    }
    // Another token has its own window.
    assert_eq!(admitted_one(&b, &b.token).await, 200);
}

async fn admitted_one(hub: &TestHub, token: &str) -> u16 {
    hub.client
        .get(hub.url("/v1/channels"))
        .header("x-api-token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_hubs_spend_one_daily_budget_between_them() {
    let limits = RateLimits {
        per_window: None,
        // A channel list costs 20: five lists in all.
        daily_budget: Some(100),
    };
    let Some((a, b, _db)) = two_hubs(limits).await else {
        return;
    };
    assert_eq!(admitted([&a, &b], &a.token, "/v1/channels", 12).await, 5);
    let refused = b
        .client
        .get(b.url("/v1/channels"))
        .header("x-api-token", &a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["x-daily-ratelimit-token-remaining"],
        "0",
        "the other hub's spending is counted"
    );
}

#[tokio::test]
async fn a_token_revoked_through_one_hub_is_refused_by_both_within_2_seconds() {
    let Some((a, b, _db)) = two_hubs(RateLimits::default()).await else {
        return;
    };
    let extra = a.store.create_token("temporary").await.unwrap();
    let secret = secrecy::ExposeSecret::expose_secret(&extra.secret).to_owned();
    // Used on both first, so each hub holds it as verified.
    assert_eq!(admitted_one(&a, &secret).await, 200);
    assert_eq!(admitted_one(&b, &secret).await, 200);

    assert!(a.store.revoke_token(&extra.info.id).await.unwrap());
    let revoked_at = Instant::now();
    for (name, hub) in [("a", &a), ("b", &b)] {
        loop {
            let sent_at = Instant::now();
            match admitted_one(hub, &secret).await {
                401 => break,
                status => assert_eq!(status, 200),
            }
            // A request sent 2 s or more after the revocation must not be let in, by any hub.
            assert!(
                sent_at.duration_since(revoked_at) < Duration::from_secs(2),
                "hub {name} still accepted a request sent {:?} after the revocation",
                sent_at.duration_since(revoked_at)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
