//! Provider apps in the store, on both backends: adding, replacing, listing without the secret,
//! removing, and which channels and tokens belong to which app.

use pdchannels_model::manifest::Manifest;
use pdchannels_model::{AddChannel, Channels, Limits};
use pdchannels_store::{
    AppState, ConversationDetails, Link, NewApp, ParticipantDetails, SenderDetails,
};
use pdchannels_testkit::on_both_backends;
use secrecy::ExposeSecret;
use serde_json::json;

fn manifest(host: &str) -> Manifest {
    Manifest::parse(&json!({"version": "v202101", "endpoints": {
        "getConversations": format!("http://{host}/channels/:providerChannelId/conversations"),
        "getConversationById": format!("http://{host}/channels/:providerChannelId/conversations/:sourceConversationId"),
        "postMessage": format!("http://{host}/channels/:providerChannelId/messages"),
    }}))
    .unwrap()
}

fn app(name: &str, secret: &str) -> NewApp {
    NewApp {
        name: name.into(),
        client_id: format!("{name}-client"),
        client_secret: secret.to_owned().into(),
        manifest: manifest("a.example"),
        manifest_source: "manifest.json".into(),
        backfill_pages: 1,
    }
}

fn channel(id: &str) -> AddChannel {
    AddChannel::parse(
        &json!({"name": id, "provider_channel_id": id}),
        &Limits::default(),
    )
    .unwrap()
}

on_both_backends! {
    async fn an_app_is_added_once_listed_without_its_secret_and_replaced_on_request(db) {
        let store = db.open().await;
        assert!(store.add_app(&app("wa", "s3cret-1"), false).await.unwrap());
        assert!(!store.add_app(&app("wa", "other"), false).await.unwrap(), "the name is taken");

        let listed = store.apps().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id, "wa-client");
        assert_eq!(listed[0].manifest, manifest("a.example").to_json());
        let shown = format!("{listed:?} {}", serde_json::to_string(&listed).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");

        let credentials = store.app_credentials("wa").await.unwrap().unwrap();
        assert_eq!(credentials.client_secret.expose_secret(), "s3cret-1");
        assert!(!format!("{credentials:?}").contains("s3cret"));

        store.set_app_state("wa", &AppState::CredentialsInvalid("401 UNAUTHORIZED".into())).await.unwrap();
        let refused = store.app("wa").await.unwrap().unwrap();
        assert!(refused.credentials_invalid_at_ms.is_some());
        assert_eq!(refused.last_error.as_deref(), Some("401 UNAUTHORIZED"));

        // Replacing gives new credentials and clears the refusal.
        let mut replacement = app("wa", "s3cret-2");
        replacement.manifest = manifest("b.example");
        assert!(store.add_app(&replacement, true).await.unwrap());
        let replaced = store.app_credentials("wa").await.unwrap().unwrap();
        assert_eq!(replaced.client_secret.expose_secret(), "s3cret-2");
        assert_eq!(replaced.manifest, manifest("b.example"));
        assert_eq!(replaced.credentials_invalid_at_ms, None);
        store.close().await;
    }

    async fn channels_and_tokens_belong_to_at_most_one_app(db) {
        let store = db.open().await;
        store.add_app(&app("wa", "x"), false).await.unwrap();
        store.add_app(&app("fb", "y"), false).await.unwrap();
        store.add_channel(channel("c1")).await.unwrap();
        store.add_channel(channel("c2")).await.unwrap();

        assert_eq!(store.link_channel("c1", Some("wa")).await.unwrap(), Link::Linked);
        assert_eq!(store.link_channel("nope", Some("wa")).await.unwrap(), Link::NoChannel);
        assert_eq!(store.link_channel("c1", Some("nope")).await.unwrap(), Link::NoApp);
        assert_eq!(store.channel_app("c1").await.unwrap().as_deref(), Some("wa"));
        // A channel already an app's is not taken by another app's token.
        assert!(!store.claim_channel("c1", "fb").await.unwrap());
        assert!(store.claim_channel("c2", "fb").await.unwrap());
        assert_eq!(store.app("fb").await.unwrap().unwrap().channels, ["c2"]);

        let token = store.create_app_token("wa bot", Some("wa")).await.unwrap();
        let user = store.token_user(&token.info.id).await.unwrap().unwrap();
        assert_eq!(user.app.as_deref(), Some("wa"));
        assert_eq!(user.name, "wa bot");
        let plain = store.create_token("plain").await.unwrap();
        let other = store.token_user(&plain.info.id).await.unwrap().unwrap();
        assert_eq!(other.app, None);
        assert_ne!(other.user_id, user.user_id);

        // Removing an app leaves its channels and tokens, belonging to none.
        assert!(store.remove_app("wa").await.unwrap());
        assert!(!store.remove_app("wa").await.unwrap());
        assert_eq!(store.channel_app("c1").await.unwrap(), None);
        assert_eq!(store.token_user(&token.info.id).await.unwrap().unwrap().app, None);
        assert_eq!(store.link_channel("c1", None).await.unwrap(), Link::Linked);
        store.close().await;
    }

    async fn what_an_app_says_of_a_sender_reaches_every_conversation_it_is_in(db) {
        let store = db.open().await;
        store.add_channel(channel("c1")).await.unwrap();
        for conversation in ["v1", "v2"] {
            let details = ConversationDetails {
                channel_id: "c1".into(),
                conversation_id: conversation.into(),
                participants: vec![ParticipantDetails {
                    id: "cust".into(),
                    name: Some("Old name".into()),
                    fetch_avatar: true,
                    ..ParticipantDetails::default()
                }],
                ..ConversationDetails::default()
            };
            assert!(store.describe_conversation(details, true).await.unwrap());
        }
        assert_eq!(store.sender_fetched_at("c1", "cust").await.unwrap(), None);

        let said = SenderDetails { name: None, avatar_url: Some("https://a.example/p.png".into()) };
        store.record_sender("c1", "cust", said).await.unwrap();
        assert!(store.sender_fetched_at("c1", "cust").await.unwrap().is_some());
        for conversation in ["v1", "v2"] {
            let people = store.participant_details("c1", conversation).await.unwrap();
            assert_eq!(people[0].name.as_deref(), Some("Old name"), "nothing said keeps the name");
            assert_eq!(people[0].avatar_url.as_deref(), Some("https://a.example/p.png"));
        }
        // Another channel's participant of the same id is not touched.
        assert_eq!(store.sender_fetched_at("c2", "cust").await.unwrap(), None);
        store.close().await;
    }
}
