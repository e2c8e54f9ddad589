//! A hub (the real one) on 127.0.0.1, in the test's process.

use pdchannels_hub::{Application, HubConfig};
use pdchannels_relay::Delivery;
use pdchannels_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Starts a hub storing in `store` on a free port; answers its base URL (`http://127.0.0.1:PORT`).
pub async fn spawn_hub(store: &Store) -> String {
    crate::init_test_log();
    let config = HubConfig {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        ..HubConfig::default()
    };
    let app = Application::build(
        config,
        store.clone(),
        Delivery::Local(store.clone()),
        CancellationToken::new(),
    )
    .await
    .expect("the hub starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

/// Creates channel `id` on the hub at `hub_url` over HTTP, as a client would.
pub async fn create_channel(hub_url: &str, token: &str, id: &str) {
    let created = reqwest::Client::new()
        .post(format!("{hub_url}/v1/channels"))
        .header("x-api-token", token)
        .json(&json!({"name": id.to_uppercase(), "provider_channel_id": id}))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(created.status(), 200, "creating channel {id} on the hub");
}
