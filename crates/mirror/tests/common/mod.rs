//! What the mirror's end-to-end tests share: a client of the Pipedrive fixture, a mirror that
//! writes at once, rounds until it settles, a channel, and messages received into the store.

// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::time::Duration;

use pdchannels_client::Credentials;
use pdchannels_mirror::budget::BudgetConfig;
use pdchannels_mirror::intake::Intake;
use pdchannels_mirror::ledger::Ledger;
use pdchannels_mirror::pipedrive::PipedriveClient;
use pdchannels_mirror::worker::{Mirror, MirrorConfig};
use pdchannels_model::{AddChannel, Channels, Limits, ReceiveMessage};
use pdchannels_store::Store;
use pdchannels_testkit::pipedrive_api::{API_TOKEN, PipedriveApi};
use secrecy::SecretString;
use serde_json::json;

/// A `WhatsApp` customer whose number the fixture's persons can match.
pub const CUSTOMER: &str = "5544999990001@s.whatsapp.net";

/// The channel's name in most tests.
pub const SALES: &str = "WhatsApp: Sales";

/// A client of the fixture with the API token, giving up on an answer after `timeout`.
pub fn client_with_timeout(api: &PipedriveApi, timeout: Duration) -> PipedriveClient {
    PipedriveClient::builder(
        &api.url,
        Credentials::ApiToken(SecretString::from(API_TOKEN.to_owned())),
    )
    .timeout(timeout)
    .build()
    .unwrap()
}

/// A client of the fixture that gives up on an answer after 700 ms (the lost-answer tests).
pub fn client(api: &PipedriveApi) -> PipedriveClient {
    client_with_timeout(api, Duration::from_millis(700))
}

/// Writes at once (no quiet period, every message marks its day at once), in `time_zone`, with
/// leases of `lease`.
pub fn config(time_zone: chrono_tz::Tz, lease: Duration) -> MirrorConfig {
    MirrorConfig {
        budget: BudgetConfig {
            quiet: Duration::ZERO,
            max_wait: Duration::ZERO,
            ..BudgetConfig::default()
        },
        lease,
        mark_every: Duration::ZERO,
        ..MirrorConfig::new(time_zone)
    }
}

/// A started mirror, driven round by round.
pub struct Running {
    pub mirror: Mirror,
    pub intake: Intake,
    pub ledger: Ledger,
}

impl Running {
    /// In São Paulo's time zone, with 300 ms leases.
    pub async fn new(store: &Store, api: &PipedriveApi, owner: &str) -> Self {
        Self::with(
            store,
            api,
            owner,
            config(chrono_tz::America::Sao_Paulo, Duration::from_millis(300)),
        )
        .await
    }

    pub async fn with(
        store: &Store,
        api: &PipedriveApi,
        owner: &str,
        config: MirrorConfig,
    ) -> Self {
        let mut mirror = Mirror::new(store.clone(), client(api), config).with_owner(owner);
        let (intake, ledger) = mirror.start().await.unwrap();
        Self {
            mirror,
            intake,
            ledger,
        }
    }

    /// Rounds until one has nothing more to do, then one more; every round must succeed.
    pub async fn settle(&mut self) {
        for _ in 0..50 {
            if !self
                .mirror
                .round(&mut self.intake, &mut self.ledger)
                .await
                .unwrap()
            {
                break;
            }
        }
        self.mirror
            .round(&mut self.intake, &mut self.ledger)
            .await
            .unwrap();
    }
}

/// Adds the `WhatsApp` channel `wa`, named `name`.
pub async fn channel(store: &Store, name: &str) {
    store
        .add_channel(
            AddChannel::parse(
                &json!({"name": name, "provider_channel_id": "wa",
                        "provider_type": "whatsapp"}),
                &Limits::default(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Receives a message on `wa` with status `sent`.
pub async fn receive(
    store: &Store,
    id: &str,
    conversation: &str,
    sender: &str,
    text: &str,
    at: &str,
) {
    receive_status(store, id, conversation, sender, text, at, "sent").await;
}

/// Receives a message on `wa`.
pub async fn receive_status(
    store: &Store,
    id: &str,
    conversation: &str,
    sender: &str,
    text: &str,
    at: &str,
    status: &str,
) {
    let message = ReceiveMessage::parse(
        &json!({"id": id, "channel_id": "wa", "conversation_id": conversation,
                "sender_id": sender, "message": text, "status": status, "created_at": at}),
        &Limits::default(),
    )
    .unwrap();
    store.receive_message(message).await.unwrap();
}
