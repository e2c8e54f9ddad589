//! A standalone Pipedrive fixture for the notes mirror's benchmarks (`bench/mirror.sh`): the
//! testkit's `PipedriveApi`, with N persons (person `i` has the phone number `+55 11 9xxxxxxxx`
//! made from `i`, and one open deal), so that WhatsApp ids `55119xxxxxxxx@s.whatsapp.net` are
//! linked. It prints its address on stdout, then the address of its statistics
//! (`GET /stats`: notes created, notes whose marker is on more than one note, tokens spent per
//! endpoint), and runs until killed. It outlives the mirror processes a benchmark kills.
//!
//! ```sh
//! cargo run --release -p pdchannels-testkit --example pipedrive_api -- \
//!     --persons 1000 --burst-limit 1000 --latency-ms 30
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use pdchannels_testkit::pipedrive_api::{PipedriveApi, Route};
use serde_json::{Value, json};

const USAGE: &str = "usage: pipedrive_api --persons N [--burst-limit N] [--latency-ms MS] \
                     [--daily-token-limit N]";

/// The phone number of person `index`: `+55 11 9` and 8 digits.
fn phone(index: u64) -> String {
    format!("+55 11 9{index:08}")
}

fn options() -> Result<HashMap<String, u64>, String> {
    let mut options = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = value
            .parse::<u64>()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--persons" | "--burst-limit" | "--latency-ms" | "--daily-token-limit" => {
                options.insert(flag.trim_start_matches("--").to_owned(), number);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The markers (`seg` and 12 hex digits) a note's content carries.
fn markers(content: &str) -> Vec<String> {
    content
        .match_indices("seg ")
        .filter_map(|(at, _)| content.get(at + 4..at + 16))
        .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

fn stats(api: &PipedriveApi) -> Value {
    let notes = api.notes();
    let mut by_marker: HashMap<String, usize> = HashMap::new();
    for note in &notes {
        for marker in markers(&note.content) {
            *by_marker.entry(marker).or_default() += 1;
        }
    }
    let routes = [
        ("persons_search", Route::PersonsSearch),
        ("person_get", Route::PersonGet),
        ("deals_list", Route::Deals),
        ("leads_list", Route::Leads),
        ("note_add", Route::NotesAdd),
        ("note_get", Route::NoteGet),
        ("notes_list", Route::NotesList),
        ("note_update", Route::NoteUpdate),
    ];
    json!({
        "notes_created": api.notes_created(),
        "notes": notes.len(),
        "duplicate_markers": by_marker.values().filter(|n| **n > 1).count(),
        "tokens_spent": api.tokens_spent(),
        "calls": routes.iter().map(|(name, r)| ((*name).to_owned(), json!(api.calls(*r)))).collect::<serde_json::Map<_, _>>(),
        "tokens": routes.iter().map(|(name, r)| ((*name).to_owned(), json!(api.tokens_spent_on(*r)))).collect::<serde_json::Map<_, _>>(),
    })
}

#[tokio::main]
async fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(2);
        }
    };
    let api = PipedriveApi::start().await;
    for index in 0..options.get("persons").copied().unwrap_or(0) {
        let person = api.add_person(&format!("Customer {index}"), &[&phone(index)], &[]);
        api.add_deal(person, &format!("Order {index}"), "open");
    }
    if let Some(limit) = options.get("burst-limit") {
        api.set_burst_limit(u32::try_from(*limit).unwrap_or(u32::MAX));
    }
    if let Some(ms) = options.get("latency-ms") {
        api.set_answer_latency(Duration::from_millis(*ms));
    }
    if let Some(tokens) = options.get("daily-token-limit") {
        api.set_daily_token_limit(*tokens);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let stats_url = format!(
        "http://{}/stats",
        listener.local_addr().expect("a bound listener's address")
    );
    let app = api.clone();
    let router = axum::Router::new().route("/stats", get(move || async move { Json(stats(&app)) }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}\n{stats_url}", api.url);
    let _ = stdout.flush();
    drop(stdout);
    let _ = tokio::signal::ctrl_c().await;
}
