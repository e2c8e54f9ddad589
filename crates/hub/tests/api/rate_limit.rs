//! Pipedrive-like rate limiting, when asked for.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pdchannels_hub::RateLimits;
use serde_json::json;

use crate::helpers::{body, message};
use pdchannels_testkit::TestHub;

/// Today's number in UTC days since the epoch.
fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
}

/// Runs `scenario` against a fresh hub with `daily_budget`; if the run crossed midnight UTC (the
/// budget resets then, and the scenario's arithmetic with it), runs it again: two crossings
/// cannot happen within one short run. The reset itself is tested in `rate_limit.rs`'s unit
/// tests with an injected clock.
async fn within_one_utc_day<F, Fut>(daily_budget: u64, scenario: F)
where
    F: Fn(TestHub) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    for _ in 0..2 {
        let day = utc_day();
        let app = TestHub::start_with(|c| {
            c.rate_limits = RateLimits {
                per_window: None,
                daily_budget: Some(daily_budget),
            }
        })
        .await;
        let outcome = scenario(app).await;
        if utc_day() == day {
            return outcome.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    panic!("midnight UTC was crossed twice in two runs");
}

/// `Err` instead of a panic, so that a run crossing midnight can be told apart and repeated.
macro_rules! check {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            return Err(format!($($what)+));
        }
    };
}

#[tokio::test]
async fn without_limits_there_are_no_rate_limit_headers() {
    let app = TestHub::start().await;
    let response = app.get("/v1/channels").await;
    assert!(response.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn the_burst_window_counts_down_then_answers_429() {
    let app = TestHub::start_with(|c| {
        c.rate_limits = RateLimits {
            per_window: Some(3),
            daily_budget: None,
        }
    })
    .await;
    let first_admitted = Instant::now();
    for remaining in ["2", "1", "0"] {
        let response = app.get("/v1/channels").await;
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["x-ratelimit-limit"], "3");
        assert_eq!(h["x-ratelimit-remaining"], remaining);
        let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&reset));
    }
    let response = app.get("/v1/channels").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    assert!(response.headers().get("retry-after").is_some());
    let b = body(response).await;
    assert_eq!(b["error"], json!("Request over limit"));
    assert_eq!(b["additional_data"]["code"], json!("RATE_LIMIT_EXCEEDED"));

    // The window is 2 seconds: the limit frees up again after it, not before. Polled, not
    // slept: a refused request is not counted, so polling does not push the reset back.
    let deadline = first_admitted + Duration::from_secs(10);
    loop {
        let sent_at = Instant::now();
        let status = app.get("/v1/channels").await.status();
        if status == 200 {
            assert!(
                sent_at.duration_since(first_admitted) >= Duration::from_millis(1900),
                "admitted again {:?} after the first request of a 2 s window",
                sent_at.duration_since(first_admitted)
            );
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "the window never freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_daily_budget_uses_the_contract_costs() {
    within_one_utc_day(26, |app| async move {
        app.add_channel("wa").await; // 10
        let first = app.receive(&message("m1", "c1", "sent")).await; // 20
        check!(
            first.status() == 200,
            "the first receive fits: {}",
            first.status()
        );
        let left = &first.headers()["x-daily-ratelimit-token-remaining"];
        check!(left == "6", "after 20 of 26, 6 are left, not {left:?}");
        let over = app.receive(&message("m2", "c1", "sent")).await;
        check!(
            over.status() == 429,
            "a receive costs 10 > 6: {}",
            over.status()
        );
        let b = body(over).await;
        let info = b["error_info"].as_str().unwrap_or_default();
        check!(info.contains("daily token budget"), "the 429 says why: {b}");
        // A delete costs 6: it still fits.
        let deleted = app.delete("/v1/channels/wa/conversations/c1").await;
        check!(
            deleted.status() == 200,
            "a delete costs 6: {}",
            deleted.status()
        );
        let left = &deleted.headers()["x-daily-ratelimit-token-remaining"];
        check!(left == "0", "the budget is spent, not {left:?}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn reads_cost_20_for_a_list_and_2_for_a_conversation() {
    within_one_utc_day(100, |app| async move {
        app.add_channel("wa").await; // 10
        let received = app.receive(&message("m1", "c1", "sent")).await; // 10
        check!(received.status() == 200, "receive: {}", received.status());
        let mut expected = 80;
        for (path, cost) in [
            ("/v1/channels", 20),
            ("/v1/channels/wa/conversations", 20),
            ("/v1/channels/wa/conversations/c1", 2),
        ] {
            let read = app.get(path).await;
            check!(read.status() == 200, "GET {path}: {}", read.status());
            expected -= cost;
            let left = &read.headers()["x-daily-ratelimit-token-remaining"];
            check!(
                left == expected.to_string().as_str(),
                "GET {path} costs {cost}: {expected} left, not {left:?}"
            );
        }
        Ok(())
    })
    .await;
}
