//! Every log line of a delivery carries its outbox id, operation and attempt (the `delivery`
//! span), and no token appears in any log line or span, at any level.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pdchannels_model::{Channels, ReceiveOutcome};
use pdchannels_relay::RelayedChannels;

use super::{local_relay, message, spawn_upstream};

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread: the subscriber set below is this thread's, and so every task's of the test.
#[tokio::test(flavor = "current_thread")]
async fn each_delivery_logs_in_a_span_naming_its_call_and_never_a_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run at once on other threads with no subscriber: a callsite
    // one of them reached first is cached as "never" (the span went missing from a line under
    // load). Asked again, now that this thread's subscriber exists.
    tracing::callsite::rebuild_interest_cache();

    let upstream = spawn_upstream().await;
    // Delivered with the right token (logged at debug), rejected with a wrong one (warn).
    let good = local_relay(&upstream.address, &upstream.token, Duration::from_secs(5)).await;
    let delivered = RelayedChannels::new(good.relay.clone())
        .receive_message(message("m1", "c1", "2024-05-01 10:00"))
        .await
        .unwrap();
    assert!(matches!(
        delivered.outcome,
        ReceiveOutcome::Delivered { .. }
    ));
    let wrong_token = "pdc_wrong_token_that_must_not_be_logged";
    let bad = local_relay(&upstream.address, wrong_token, Duration::from_secs(5)).await;
    RelayedChannels::new(bad.relay.clone())
        .receive_message(message("m2", "c2", "2024-05-01 10:00"))
        .await
        .unwrap_err();
    good.stop.cancel();
    bad.stop.cancel();

    let text = captured.text();
    for (what, outbox_id) in [("delivered", 1), ("upstream rejected a call for good", 1)] {
        // The relay's own line: sqlx logs its statements at debug too, and on PostgreSQL the
        // outbox's settle statement says 'delivered'.
        let line = text
            .lines()
            .find(|line| line.contains(what) && !line.contains("sqlx::"))
            .unwrap_or_else(|| panic!("no line saying {what:?} in:\n{text}"));
        assert!(
            line.contains(&format!(
                "delivery{{outbox_id={outbox_id} operation=receive_message attempt=1}}"
            )),
            "{line}"
        );
    }
    for token in [upstream.token.as_str(), wrong_token] {
        assert!(!text.contains(token), "a token was logged:\n{text}");
    }
}
