//! Metric labels come from a closed set, whatever methods and paths clients send.

use std::collections::BTreeSet;

use pdchannels_testkit::TestHub;
use reqwest::Method;

/// A small xorshift: varied methods and paths without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const STANDARD: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

#[tokio::test]
async fn random_methods_and_paths_add_a_bounded_number_of_series() {
    let app = TestHub::start().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut methods = BTreeSet::new();
    let mut segments = BTreeSet::new();
    for i in 0..1000 {
        let method = loop {
            let len = 3 + (random.next() % 8) as usize;
            let name = random.word(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", len);
            if !STANDARD.contains(&name.as_str()) {
                break name;
            }
        };
        methods.insert(method.clone());
        let segment = random.word(b"abcdefghijklmnopqrstuvwxyz0123456789", 12);
        segments.insert(segment.clone());
        let request = if i % 2 == 0 {
            // Unknown paths, no token: 404.
            client.request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&format!("/random-{segment}")),
            )
        } else {
            // A known route template with a method it does not take: 405.
            client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&format!("/v1/channels/{segment}")),
                )
                .header("x-api-token", &app.token)
        };
        let status = request.send().await.unwrap().status();
        assert!(status == 404 || status == 405, "{method}: {status}");
    }
    assert!(methods.len() > 900, "the methods vary");

    let text = app.get("/metrics").await.text().await.unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pdchannels_http_requests_total{"))
        .collect();
    for line in &series {
        let method = label(line, "method");
        assert!(
            method == "other" || STANDARD.contains(&method),
            "method label {method:?} is outside the closed set"
        );
        let route = label(line, "route");
        assert!(
            !segments.iter().any(|s| route.contains(s.as_str())),
            "route label {route:?} is a path, not a template"
        );
    }
    // Exactly two series for the 1,000 requests (no other test sends a non-standard method).
    let other: BTreeSet<(&str, &str)> = series
        .iter()
        .filter(|l| label(l, "method") == "other")
        .map(|l| (label(l, "route"), label(l, "status")))
        .collect();
    assert_eq!(
        other,
        BTreeSet::from([("unmatched", "404"), ("/v1/channels/{id}", "405")]),
        "{text}"
    );
}

/// The value of `name` in a Prometheus series line.
fn label<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    let len = line[start..].find('"').unwrap();
    &line[start..start + len]
}
