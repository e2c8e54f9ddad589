//! A revoked token stops working within 2 seconds, even while the hub's token cache holds it.

use std::time::{Duration, Instant};

use pdchannels_testkit::TestHub;
use secrecy::ExposeSecret;

/// The README's promise: `pdchannels token revoke` takes effect within this.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_token_revoked_after_use_is_refused_within_2_seconds() {
    let app = TestHub::start().await;
    let extra = app.store.create_token("temporary").await.unwrap();
    let secret = extra.secret.expose_secret().to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let get = || {
        client
            .get(app.url("/v1/channels"))
            .header("x-api-token", &secret)
            .send()
    };
    // Used first, so the hub has it cached as valid.
    assert_eq!(get().await.unwrap().status(), 200);

    assert!(app.store.revoke_token(&extra.info.id).await.unwrap());
    let revoked_at = Instant::now();
    loop {
        let sent_at = Instant::now();
        let status = get().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        // A request sent 2 s or more after the revocation must not be let in.
        assert!(
            sent_at.duration_since(revoked_at) < REVOCATION_BOUND,
            "a request sent {:?} after the revocation was still accepted",
            sent_at.duration_since(revoked_at)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
