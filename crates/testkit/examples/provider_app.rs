//! A standalone fixture provider app for benchmarks (`bench/provider_apps.sh`): the testkit's
//! `ProviderApp`, serving N conversations of M messages each on one channel, every read answered
//! after a delay. It writes its manifest to a file (for `pdchannels app add --manifest FILE`,
//! client id `fixture-client`, secret `fixture-secret`), prints its address on stdout, and runs
//! until killed.
//!
//! ```sh
//! cargo run --release -p pdchannels-testkit --example provider_app -- \
//!     --channel bench --conversations 1000 --messages 2 --delay-ms 2000 --manifest-out app.json
//! ```
//!
//! Conversation `c{i}` (i from 0) has the agent `agent-1` (`source_user`) and the customer
//! `cust-{i}` (`end_user`); its messages are `c{i}-m{j}`, sent by the customer. With `--older K`
//! it also holds K older messages (`c{i}-old{k}`, "earlier {k}", a day before), which it gives
//! only when asked for the page after its `next_messages_cursor`.

use std::io::Write;
use std::time::Duration;

use pdchannels_testkit::{Misbehaviour, ProviderApp};
use serde_json::{Value, json};

const USAGE: &str = "usage: provider_app --channel ID --conversations N --messages M \
                     [--older K] --delay-ms D --manifest-out FILE";

struct Options {
    channel: String,
    conversations: usize,
    messages: usize,
    older: usize,
    delay_ms: u64,
    manifest_out: String,
}

fn options() -> Result<Options, String> {
    let mut channel = None;
    let mut conversations = None;
    let mut messages = None;
    let mut older = None;
    let mut delay_ms = None;
    let mut manifest_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what}: not a number: {value}"))
        };
        match flag.as_str() {
            "--channel" => channel = Some(value.clone()),
            "--conversations" => conversations = Some(number("--conversations")?),
            "--messages" => messages = Some(number("--messages")?),
            "--older" => older = Some(number("--older")?),
            "--delay-ms" => delay_ms = Some(number("--delay-ms")?),
            "--manifest-out" => manifest_out = Some(value.clone()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let missing = |what: &str| format!("{what} is required\n{USAGE}");
    Ok(Options {
        channel: channel.ok_or_else(|| missing("--channel"))?,
        conversations: usize::try_from(conversations.unwrap_or(1)).map_err(|e| e.to_string())?,
        messages: usize::try_from(messages.unwrap_or(0)).map_err(|e| e.to_string())?,
        older: usize::try_from(older.unwrap_or(0)).map_err(|e| e.to_string())?,
        delay_ms: delay_ms.unwrap_or(0),
        manifest_out: manifest_out.ok_or_else(|| missing("--manifest-out"))?,
    })
}

/// The cursor of a conversation's older messages.
const OLDER_CURSOR: &str = "older-1";

/// Conversation `c{index}`'s `older` older messages, the page after [`OLDER_CURSOR`].
fn older_messages(index: usize, older: usize) -> Value {
    json!(
        (0..older)
            .map(|k| json!({
                "id": format!("c{index}-old{k}"), "status": "read",
                "created_at": format!("2022-03-28T06:{:02}:00.000Z", k % 60),
                "message": format!("earlier {k}"), "sender_id": format!("cust-{index}"),
            }))
            .collect::<Vec<_>>()
    )
}

/// Conversation `c{index}` as the hub's provider-app tests describe one: an agent and a
/// customer, `messages` messages from the customer, and a cursor to older ones if it has some.
fn conversation(index: usize, messages: usize, has_older: bool) -> Value {
    let id = format!("c{index}");
    let customer = format!("cust-{index}");
    json!({
        "id": id, "link": format!("https://wa.example/{id}"), "status": "open", "seen": false,
        "next_messages_cursor": has_older.then_some(OLDER_CURSOR),
        "participants": [
            {"id": "agent-1", "name": "Agent Smith", "role": "source_user"},
            {"id": customer, "name": format!("Customer {customer}"), "role": "end_user",
             "avatar_url": "https://avatars.example/c.png"},
        ],
        "messages": (0..messages).map(|j| json!({
            "id": format!("{id}-m{j}"), "status": "sent", "created_at": "2022-03-29T06:38:06.913Z",
            "message": format!("hello {j}"), "sender_id": customer,
        })).collect::<Vec<_>>(),
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
    let app = ProviderApp::start().await;
    for index in 0..options.conversations {
        app.add_conversation(
            &options.channel,
            conversation(index, options.messages, options.older > 0),
        );
        if options.older > 0 {
            app.add_older_page(
                &options.channel,
                &format!("c{index}"),
                OLDER_CURSOR,
                older_messages(index, options.older),
                None,
            );
        }
    }
    app.misbehave(Misbehaviour {
        delay: Duration::from_millis(options.delay_ms),
        ..Default::default()
    });
    let manifest = serde_json::to_string_pretty(&app.manifest()).expect("a manifest is JSON");
    if let Err(e) = std::fs::write(&options.manifest_out, manifest) {
        eprintln!("cannot write {}: {e}", options.manifest_out);
        std::process::exit(1);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", app.address);
    let _ = stdout.flush();
    drop(stdout);
    let _ = tokio::signal::ctrl_c().await;
}
