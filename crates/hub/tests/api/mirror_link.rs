//! The mirror's link in the read API: `GET` before and after a look-up, `PUT` by hand (with a
//! field path for each bad field, and nothing changed), `DELETE`, and 404 for a conversation that
//! is not there.

use serde_json::{Value, json};

use crate::helpers::{body, message};
use pdchannels_testkit::TestHub;

const PATH: &str = "/v1/channels/wa/conversations/c1/mirror";

async fn put(app: &TestHub, path: &str, link: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .header("x-api-token", &app.token)
        .json(link)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_link_is_shown_set_by_hand_refused_with_its_field_and_forgotten() {
    let app = TestHub::start().await;
    app.add_channel("wa").await;
    assert_eq!(
        app.receive(&message("m1", "c1", "sent")).await.status(),
        200
    );

    let before = body(app.get(PATH).await).await;
    assert_eq!(before["data"]["state"], "not_looked_up", "{before}");

    for (link, path) in [
        (json!({}), "person_id"),
        (json!({"person_id": "42"}), "person_id"),
        (json!({"person_id": 0}), "person_id"),
        (
            json!({"person_id": 42, "deal_id": 7, "lead_id": "adf21080-0e10-11eb-879b-05d71fb426ec"}),
            "lead_id",
        ),
        (json!({"person_id": 42, "lead_id": 5}), "lead_id"),
        (json!({"person_id": 42, "lead_id": "not-a-uuid"}), "lead_id"),
        (json!({"person_id": 42, "owner": 1}), "owner"),
        (json!([42]), ""),
    ] {
        let refused = put(&app, PATH, &link).await;
        assert_eq!(refused.status(), 400, "{link}");
        let answer = body(refused).await;
        assert_eq!(answer["success"], false);
        assert!(
            answer.to_string().contains(&format!("`{path}`")),
            "{link}: {answer}"
        );
    }
    assert_eq!(
        body(app.get(PATH).await).await["data"]["state"],
        "not_looked_up",
        "nothing changed"
    );

    let linked = put(
        &app,
        PATH,
        &json!({"person_id": 42, "deal_id": 7, "org_id": 3}),
    )
    .await;
    assert_eq!(linked.status(), 200);
    let linked = body(linked).await;
    assert_eq!(linked["data"]["state"], "linked", "{linked}");
    assert_eq!(linked["data"]["how"], "manual");
    assert_eq!(
        (
            linked["data"]["person_id"].clone(),
            linked["data"]["deal_id"].clone()
        ),
        (json!(42), json!(7))
    );
    assert_eq!(body(app.get(PATH).await).await["data"]["org_id"], 3);
    // A lead's id as typed (upper case, spaces) is kept as Pipedrive writes it.
    let on_lead = put(
        &app,
        PATH,
        &json!({"person_id": 42, "lead_id": " ADF21080-0E10-11EB-879B-05D71FB426EC "}),
    )
    .await;
    assert_eq!(on_lead.status(), 200);
    assert_eq!(
        body(on_lead).await["data"]["lead_id"],
        "adf21080-0e10-11eb-879b-05d71fb426ec"
    );

    let gone = body(app.delete(PATH).await).await;
    assert_eq!(gone["data"]["state"], "not_looked_up", "{gone}");

    let missing = "/v1/channels/wa/conversations/nope/mirror";
    assert_eq!(app.get(missing).await.status(), 404);
    assert_eq!(
        put(&app, missing, &json!({"person_id": 42})).await.status(),
        404
    );
}
