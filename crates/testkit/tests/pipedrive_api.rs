//! The Pipedrive API fixture keeps to the contract it claims: each endpoint's request and
//! answer, auth, rate-limit and budget headers and their 429s, sanitising, faults, counters.

use std::time::Duration;

use pdchannels_testkit::pipedrive_api::{
    API_TOKEN, Fault, OAUTH_TOKEN, PERSON_USER_ID, PipedriveApi, Route, TOKEN_USER_ID, sanitize,
};
use serde_json::{Value, json};

struct Call {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(api: &PipedriveApi, method: &str, path: &str, body: Option<Value>) -> Call {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method.parse().unwrap(), format!("{}{path}", api.url))
        .header("x-api-token", API_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Call {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn auth_by_api_token_or_bearer_and_401_otherwise() {
    let api = PipedriveApi::start().await;
    let person = api.add_person("Ana", &[], &[]);
    let client = reqwest::Client::new();
    let url = format!("{}/api/v2/persons/{person}", api.url);
    let bearer = client
        .get(&url)
        .bearer_auth(OAUTH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let token = client
        .get(&url)
        .header("x-api-token", API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = client
        .get(&url)
        .header("x-api-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn person_search_by_phone_email_and_name() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana Silva", &["+44 7700 900123"], &["ana@example.com"]);
    let bob = api.add_person("Bob", &["07700 900123", "020 7946 0000"], &[]);
    let search = |query: &str| {
        let api = api.clone();
        let query = query.to_owned();
        async move {
            call(
                &api,
                "GET",
                &format!("/api/v2/persons/search?{query}"),
                None,
            )
            .await
        }
    };
    let wide = search("term=7700900123&fields=phone&exact_match=false").await;
    assert_eq!(wide.status, 200);
    let ids: Vec<i64> = wide.body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [ana, bob]);
    assert_eq!(
        wide.body["data"]["items"][0]["item"]["phones"],
        json!(["+44 7700 900123"]),
        "phones are the stored strings"
    );
    let exact = search("term=447700900123&fields=phone&exact_match=true").await;
    assert_eq!(exact.body["data"]["items"].as_array().unwrap().len(), 1);
    let email = search("term=ANA%40example.com&fields=email&exact_match=true").await;
    assert_eq!(email.body["data"]["items"][0]["item"]["id"], ana);
    let name = search("term=silv&fields=name").await;
    assert_eq!(name.body["data"]["items"][0]["item"]["id"], ana);
    // v2 rules: booleans are true/false, the term at least 2 characters.
    assert_eq!(search("term=ana&exact_match=1").await.status, 400);
    assert_eq!(search("term=a").await.status, 400);
    assert_eq!(search("term=a&exact_match=true").await.status, 200);
    assert_eq!(search("term=ana&fields=phones").await.status, 400);
    assert_eq!(api.tokens_spent_on(Route::PersonsSearch), 8 * 20);
}

#[tokio::test]
async fn person_deals_and_leads() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana", &["+44 7700 900123"], &[]);
    let other = api.add_person("Other", &[], &[]);
    let won = api.add_deal(ana, "Old", "won");
    let open = api.add_deal(ana, "Blue sofa", "open");
    api.add_deal(other, "Theirs", "open");
    let lead = api.add_lead(ana, "WhatsApp: Ana");
    let person = call(&api, "GET", &format!("/api/v2/persons/{ana}"), None).await;
    assert_eq!(person.body["data"]["phones"][0]["value"], "+44 7700 900123");
    assert_eq!(
        call(&api, "GET", "/api/v2/persons/999", None).await.status,
        404
    );
    let deals = call(
        &api,
        "GET",
        &format!("/api/v2/deals?person_id={ana}&status=open"),
        None,
    )
    .await;
    let ids: Vec<&Value> = deals.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&json!(open)]);
    let all = call(&api, "GET", &format!("/api/v2/deals?person_id={ana}"), None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2, "{won} too");
    let leads = call(&api, "GET", &format!("/v1/leads?person_id={ana}"), None).await;
    assert_eq!(leads.body["data"][0]["id"], lead);
    assert_eq!(
        leads.body["additional_data"]["pagination"]["more_items_in_collection"],
        false
    );
    assert_eq!(api.tokens_spent_on(Route::PersonGet), 2);
    assert_eq!(api.tokens_spent_on(Route::Deals), 20);
    assert_eq!(api.tokens_spent_on(Route::Leads), 20);
}

#[tokio::test]
async fn notes_add_get_list_and_update() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana", &[], &[]);
    let deal = api.add_deal(ana, "Sofa", "open");
    let created = call(
        &api,
        "POST",
        "/v1/notes",
        Some(
            json!({"content": "<p>hello <b>seg abc</b></p>", "person_id": ana, "deal_id": deal,
                    "add_time": "2026-11-23 09:14:00"}),
        ),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let note = &created.body["data"];
    let id = note["id"].as_i64().unwrap();
    assert_eq!(note["person_id"], ana);
    assert_eq!(note["deal_id"], deal);
    assert_eq!(note["add_time"], "2026-11-23 09:14:00");
    assert_eq!(note["user_id"], TOKEN_USER_ID);
    assert_eq!(created.header("x-daily-requests-left"), Some("9999"));
    // The OAuth path form answers too.
    let got = call(&api, "GET", &format!("/api/v1/notes/{id}"), None).await;
    assert_eq!(got.body["data"]["content"], "<p>hello <b>seg abc</b></p>");
    assert_eq!(
        call(&api, "GET", "/v1/notes/424242", None).await.status,
        404
    );
    let updated = call(
        &api,
        "PUT",
        &format!("/v1/notes/{id}"),
        Some(json!({"content": "<p>rewritten</p>"})),
    )
    .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["data"]["content"], "<p>rewritten</p>");
    assert_eq!(
        updated.body["data"]["deal_id"], deal,
        "a partial update keeps the links"
    );
    // Refused: no content, no link, a bad add_time, too long.
    for body in [
        json!({"person_id": ana}),
        json!({"content": "x"}),
        json!({"content": "x", "person_id": ana, "add_time": "2026-11-23T09:14:00Z"}),
        json!({"content": "x".repeat(100_001), "person_id": ana}),
        json!({"content": "x", "person_id": 999_999}),
    ] {
        assert_eq!(
            call(&api, "POST", "/v1/notes", Some(body)).await.status,
            400
        );
    }
    assert_eq!(api.notes_created(), 1);
    assert_eq!(
        api.tokens_spent_on(Route::NotesAdd),
        6 * 10,
        "a refused POST still costs"
    );
}

#[tokio::test]
async fn notes_list_filters_sorts_and_pages() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana", &[], &[]);
    let bob = api.add_person("Bob", &[], &[]);
    for (person, day, text) in [
        (ana, "2026-11-22 10:00:00", "a1"),
        (ana, "2026-11-23 09:00:00", "a2"),
        (bob, "2026-11-23 09:30:00", "b1"),
        (ana, "2026-11-23 11:00:00", "a3"),
    ] {
        let created = call(
            &api,
            "POST",
            "/v1/notes",
            Some(json!({"content": text, "person_id": person, "add_time": day})),
        )
        .await;
        assert_eq!(created.status, 200);
    }
    let contents = |c: &Call| -> Vec<String> {
        c.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let day = call(
        &api,
        "GET",
        &format!("/v1/notes?person_id={ana}&start_date=2026-11-23&end_date=2026-11-24&sort=add_time%20DESC"),
        None,
    )
    .await;
    assert_eq!(contents(&day), ["a3", "a2"]);
    let page = call(&api, "GET", "/v1/notes?start=0&limit=3", None).await;
    assert_eq!(contents(&page), ["a1", "a2", "b1"]);
    let pagination = &page.body["additional_data"]["pagination"];
    assert_eq!(pagination["more_items_in_collection"], true);
    assert_eq!(pagination["next_start"], 3);
    let rest = call(&api, "GET", "/v1/notes?start=3&limit=3", None).await;
    assert_eq!(contents(&rest), ["a3"]);
    assert_eq!(
        call(&api, "GET", "/v1/notes?sort=colour%20ASC", None)
            .await
            .status,
        400
    );
    assert_eq!(api.tokens_spent_on(Route::NotesList), 4 * 20);
}

#[tokio::test]
async fn burst_limit_headers_and_429() {
    let api = PipedriveApi::start().await;
    api.set_burst_limit(3);
    let ana = api.add_person("Ana", &[], &[]);
    let path = format!("/api/v2/persons/{ana}");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = call(&api, "GET", &path, None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-ratelimit-limit"), Some("3"));
        remaining.push(answer.header("x-ratelimit-remaining").unwrap().to_owned());
        assert!(answer.header("x-ratelimit-reset").is_some());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let over = call(&api, "GET", &path, None).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));
    assert_ne!(over.header("x-daily-ratelimit-token-remaining"), Some("0"));
    assert_eq!(
        api.tokens_spent_on(Route::PersonGet),
        3,
        "a 429 costs nothing"
    );
    tokio::time::sleep(Duration::from_millis(2_050)).await;
    assert_eq!(call(&api, "GET", &path, None).await.status, 200);
}

#[tokio::test]
async fn search_has_its_own_limit_of_ten() {
    let api = PipedriveApi::start().await;
    for _ in 0..10 {
        let ok = call(&api, "GET", "/api/v2/persons/search?term=ana", None).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit"), Some("10"));
    }
    let over = call(&api, "GET", "/api/v2/persons/search?term=ana", None).await;
    assert_eq!(over.status, 429);
    assert_eq!(
        call(&api, "GET", "/v1/notes", None).await.status,
        200,
        "other endpoints go on"
    );
}

#[tokio::test]
async fn a_spent_daily_budget_answers_429_until_the_reset() {
    let api = PipedriveApi::start().await;
    api.set_daily_token_limit(100);
    api.spend_elsewhere(80);
    let first = call(&api, "GET", "/v1/notes", None).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-daily-ratelimit-token-limit"), Some("100"));
    assert_eq!(first.header("x-daily-ratelimit-token-remaining"), Some("0"));
    let spent = call(&api, "GET", "/v1/notes", None).await;
    assert_eq!(spent.status, 429);
    assert_eq!(spent.header("x-daily-ratelimit-token-remaining"), Some("0"));
    assert_ne!(
        spent.header("x-ratelimit-remaining"),
        Some("0"),
        "not a burst 429"
    );
    api.reset_day();
    assert_eq!(call(&api, "GET", "/v1/notes", None).await.status, 200);
}

#[tokio::test]
async fn daily_requests_left_counts_writes_of_an_api_token() {
    let api = PipedriveApi::start().await;
    api.set_daily_write_limit(2);
    let ana = api.add_person("Ana", &[], &[]);
    let body = json!({"content": "x", "person_id": ana});
    let left: Vec<Option<String>> = futures_util::future::join_all((0..3).map(|_| {
        let (api, body) = (api.clone(), body.clone());
        async move {
            call(&api, "POST", "/v1/notes", Some(body))
                .await
                .header("x-daily-requests-left")
                .map(str::to_owned)
        }
    }))
    .await;
    let mut left: Vec<String> = left.into_iter().map(Option::unwrap).collect();
    left.sort();
    assert_eq!(
        left,
        ["0", "0", "1"],
        "reported, not enforced (research §7 q8)"
    );
    let read = call(&api, "GET", "/v1/notes", None).await;
    assert_eq!(read.header("x-daily-requests-left"), None, "writes only");
}

#[tokio::test]
async fn faults_a_test_arms() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana", &[], &[]);
    let body = json!({"content": "seg 0123456789ab", "person_id": ana});
    api.arm(Route::NotesAdd, Fault::Status(503));
    assert_eq!(
        call(&api, "POST", "/v1/notes", Some(body.clone()))
            .await
            .status,
        503
    );
    assert_eq!(api.notes_created(), 0);

    api.arm(Route::NotesAdd, Fault::TooManyRequests { reset_seconds: 7 });
    let limited = call(&api, "POST", "/v1/notes", Some(body.clone())).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("x-ratelimit-reset"), Some("7"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));

    // The note is created, then the connection closes with no answer.
    api.arm(Route::NotesAdd, Fault::LoseAnswer);
    let lost = reqwest::Client::new()
        .post(format!("{}/v1/notes", api.url))
        .header("x-api-token", API_TOKEN)
        .json(&body)
        .send()
        .await;
    assert!(lost.is_err(), "no answer: {lost:?}");
    assert_eq!(api.notes_created(), 1);

    api.arm(Route::NoteGet, Fault::Delay(Duration::from_millis(300)));
    let slow = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .get(format!("{}/v1/notes/1", api.url))
        .header("x-api-token", API_TOKEN)
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());
    assert_eq!(api.calls(Route::NotesAdd), 3);
    assert_eq!(
        api.tokens_spent_on(Route::NotesAdd),
        10,
        "only the applied one cost"
    );
}

#[tokio::test]
async fn a_person_edits_a_note_in_pipedrive() {
    let api = PipedriveApi::start().await;
    let ana = api.add_person("Ana", &[], &[]);
    let created = call(
        &api,
        "POST",
        "/v1/notes",
        Some(json!({"content": "<p>mirror</p>", "person_id": ana})),
    )
    .await;
    let id = created.body["data"]["id"].as_i64().unwrap();
    let before = created.body["data"]["update_time"]
        .as_str()
        .unwrap()
        .to_owned();
    api.edit_note_as_person(id, "<p>mirror</p><p>called her back <script>x</script></p>");
    let got = call(&api, "GET", &format!("/v1/notes/{id}"), None).await;
    assert_eq!(got.body["data"]["last_update_user_id"], PERSON_USER_ID);
    assert_ne!(got.body["data"]["update_time"], before.as_str());
    assert_eq!(
        got.body["data"]["content"],
        "<p>mirror</p><p>called her back </p>"
    );
    assert_eq!(api.note(id).unwrap().last_update_user_id, PERSON_USER_ID);
}

#[test]
fn sanitising_keeps_the_safe_subset() {
    let cases = [
        (
            "<p>a <b>b</b> <strong>c</strong></p>",
            "<p>a <b>b</b> <strong>c</strong></p>",
        ),
        ("<script>alert(1)</script>ok", "ok"),
        ("<STYLE>p{}</STYLE>ok", "ok"),
        ("<img src=x onerror=alert(1)>ok", "ok"),
        ("<p style=\"color:red\" class=x>a</p>", "<p>a</p>"),
        (
            "<a href=\"https://x.example/?a=1&amp;b=2\" onclick=\"y\">l</a>",
            "<a href=\"https://x.example/?a=1&amp;b=2\">l</a>",
        ),
        ("<a href=\"javascript:alert(1)\">l</a>", "<a>l</a>"),
        ("<!-- seg hidden -->visible", "visible"),
        ("1 < 2 &lt; 3", "1 &lt; 2 &lt; 3"),
        ("<blink>t</blink>", "t"),
        ("a<br>b<br/>c<hr/>", "a<br>b<br>c<hr>"),
        (
            "<ul><li><small>x</small></li></ul>",
            "<ul><li><small>x</small></li></ul>",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitize(input), expected, "{input}");
    }
}
