//! What provider apps see of the hub besides the Channels API: `GET /v1/users/me` and the
//! add-channel answer's Pipedrive fields; a channel created with an app's token is that app's.

use pdchannels_model::manifest::Manifest;
use pdchannels_store::NewApp;
use pdchannels_testkit::TestHub;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::body;

async fn add_app(hub: &TestHub, name: &str, client_id: &str) {
    let manifest = Manifest::parse(&json!({"version": "v202101", "endpoints": {
        "getConversations": "http://127.0.0.1:9/c/:providerChannelId/conversations",
        "getConversationById": "http://127.0.0.1:9/c/:providerChannelId/conversations/:sourceConversationId",
        "postMessage": "http://127.0.0.1:9/c/:providerChannelId/messages",
    }}))
    .unwrap();
    let app = NewApp {
        name: name.into(),
        client_id: client_id.into(),
        client_secret: "secret".to_owned().into(),
        manifest,
        manifest_source: "test".into(),
        backfill_pages: 1,
    };
    assert!(hub.store.add_app(&app, false).await.unwrap());
}

#[tokio::test]
async fn users_me_answers_the_tokens_user_of_the_hubs_company() {
    let hub = TestHub::start_with(|c| {
        c.company = pdchannels_hub::Company {
            id: 4242,
            name: "Acme".into(),
            domain: "acme".into(),
        }
    })
    .await;
    let answer = hub
        .client
        .get(hub.url("/v1/users/me"))
        .bearer_auth(&hub.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let me = body(answer).await;
    assert_eq!(me["success"], true);
    assert!(me["data"]["id"].is_i64(), "{me}");
    assert_eq!(me["data"]["name"], "tests");
    assert_eq!(me["data"]["company_id"], 4242);
    assert_eq!(me["data"]["company_domain"], "acme");
    assert_eq!(me["data"]["company_name"], "Acme");

    // Two tokens are two users.
    let other = hub.store.create_token("second").await.unwrap();
    let second = body(
        hub.client
            .get(hub.url("/api/v1/users/me"))
            .header("x-api-token", other.secret.expose_secret())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(second["data"]["id"], me["data"]["id"]);
    assert_eq!(second["data"]["name"], "second");

    // Without a token: the usual 401.
    let refused = hub
        .client
        .get(hub.url("/v1/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn a_channel_added_with_an_apps_token_is_the_apps_and_answers_pipedrives_fields() {
    let hub = TestHub::start().await;
    add_app(&hub, "wa", "57da5c3c55a82bb4").await;
    let token = hub
        .store
        .create_app_token("wa", Some("wa"))
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_owned();
    let add = |token: String, id: &'static str| {
        let hub = &hub;
        async move {
            body(
                hub.client
                    .post(hub.url("/v1/channels"))
                    .bearer_auth(token)
                    .json(&json!({"name": "WhatsApp", "provider_channel_id": id}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let added = add(token.clone(), "wa-1").await;
    let data = &added["data"];
    assert_eq!(data["marketplace_client_id"], "57da5c3c55a82bb4", "{added}");
    assert_eq!(data["pd_company_id"], 1);
    assert!(data["pd_user_id"].is_i64());
    assert!(data["created_at"].is_string());
    assert_eq!(
        hub.store.channel_app("wa-1").await.unwrap().as_deref(),
        Some("wa")
    );
    // Added again (Pipedrive answered the same channel): the same id.
    let again = add(token, "wa-1").await;
    assert_eq!(again["data"]["id"], data["id"]);

    // A token of no app: the channel is no app's, `marketplace_client_id` null.
    let plain = add(hub.token.clone(), "plain").await;
    assert_eq!(
        plain["data"]["marketplace_client_id"],
        serde_json::Value::Null
    );
    assert!(plain["data"]["pd_user_id"].is_i64());
    assert_eq!(hub.store.channel_app("plain").await.unwrap(), None);
}
