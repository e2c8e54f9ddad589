//! Pipedrive-like rate limiting, when asked for.

use pdchannels_hub::RateLimits;
use serde_json::json;

use crate::helpers::{body, message, spawn_app, spawn_app_with};

#[tokio::test]
async fn without_limits_there_are_no_rate_limit_headers() {
    let app = spawn_app().await;
    let response = app.get("/v1/channels").await;
    assert!(response.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn the_burst_window_counts_down_then_answers_429() {
    let app = spawn_app_with(|c| {
        c.rate_limits = RateLimits {
            per_window: Some(3),
            daily_budget: None,
        }
    })
    .await;
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

    // The window is 2 seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.get("/v1/channels").await.status(), 200);
}

#[tokio::test]
async fn the_daily_budget_uses_the_contract_costs() {
    let app = spawn_app_with(|c| {
        c.rate_limits = RateLimits {
            per_window: None,
            daily_budget: Some(26),
        }
    })
    .await;
    app.add_channel("wa").await; // 10
    let first = app.receive(&message("m1", "c1", "sent")).await; // 20
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-daily-ratelimit-token-remaining"], "6");
    let over = app.receive(&message("m2", "c1", "sent")).await;
    assert_eq!(over.status(), 429);
    let b = body(over).await;
    assert!(
        b["error_info"]
            .as_str()
            .unwrap()
            .contains("daily token budget")
    );
    // A delete costs 6: it still fits.
    assert_eq!(
        app.delete("/v1/channels/wa/conversations/c1")
            .await
            .status(),
        200
    );
}
