//! The outbox's order rules, leases, settlements and repairs, on a real SQLite file and a real
//! PostgreSQL database (each test on both).

use std::time::Duration;

use pdchannels_model::{Operation, Timestamp};
use pdchannels_store::{NewOutboxEntry, Outbox, OutboxState, Settlement, Store};
use pdchannels_testkit::{TestDatabase, on_both_backends};
use serde_json::json;

/// A lease long enough that no test sees it lapse.
const LEASE: Duration = Duration::from_secs(60);

async fn open(db: TestDatabase) -> (Outbox, TestDatabase) {
    (db.open().await.outbox(), db)
}

fn entry(channel: &str, conversation: Option<&str>, n: u32) -> NewOutboxEntry {
    NewOutboxEntry {
        operation: if conversation.is_some() {
            Operation::ReceiveMessage
        } else {
            Operation::AddChannel
        },
        channel_key: channel.to_owned(),
        conversation_key: conversation.map(str::to_owned),
        request: json!({"method": "POST", "path": "/x", "body": {"n": n, "c": conversation}}),
        idempotency_key: None,
    }
}

fn now() -> i64 {
    Timestamp::now().unix_millis()
}

on_both_backends! {
    async fn every_call_is_a_row_of_its_own_however_alike(db) {
    let (outbox, _db) = open(db).await;
    let a = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let b = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_ne!(a, b, "the same bytes again are a new call");
    assert_eq!(outbox.stats().await.unwrap().pending, 2);
}
}

on_both_backends! {
    async fn only_a_call_with_an_idempotency_key_already_queued_is_collapsed(db) {
    let (outbox, _db) = open(db).await;
    let keyed = |key: &str| NewOutboxEntry {
        idempotency_key: Some(key.to_owned()),
        ..entry("wa", Some("c1"), 1)
    };
    let a = outbox.enqueue(keyed("import:1:abc")).await.unwrap();
    outbox
        .settle(a, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    assert_eq!(outbox.enqueue(keyed("import:1:abc")).await.unwrap(), a);
    let other = outbox.enqueue(keyed("import:2:def")).await.unwrap();
    assert_ne!(other, a);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.delivered, stats.pending), (1, 1));
}
}

on_both_backends! {
    async fn one_call_per_conversation_at_a_time_in_acceptance_order(db) {
    let (outbox, _db) = open(db).await;
    let c1a = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let c1b = outbox.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    let c2a = outbox.enqueue(entry("wa", Some("c2"), 3)).await.unwrap();
    let claimed: Vec<_> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [c1a, c2a], "c1's second call waits for its first");
    assert!(
        outbox.claim(10, LEASE).await.unwrap().is_empty(),
        "leased calls are not claimed twice"
    );
    outbox
        .settle(c1a, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let claimed: Vec<_> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [c1b]);
}
}

on_both_backends! {
    async fn channel_wide_calls_wait_for_and_hold_back_the_channels_conversations(db) {
    let (outbox, _db) = open(db).await;
    let create = outbox.enqueue(entry("wa", None, 0)).await.unwrap();
    let m1 = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let other = outbox.enqueue(entry("fb", Some("c1"), 2)).await.unwrap();
    let claimed: Vec<_> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [create, other]);
    outbox
        .settle(create, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let claimed: Vec<_> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed, [m1]);
}
}

on_both_backends! {
    async fn a_retry_waits_until_due_and_keeps_its_conversation_waiting(db) {
    let (outbox, _db) = open(db).await;
    let first = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    outbox.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    outbox.claim(10, LEASE).await.unwrap();
    let later = now() + 60_000;
    outbox
        .settle(
            first,
            Settlement::RetryAt {
                at: later,
                error: "upstream 503".into(),
                in_doubt: false,
            },
        )
        .await
        .unwrap();
    assert!(outbox.claim(10, LEASE).await.unwrap().is_empty());
    let shown = outbox.entry(first).await.unwrap().unwrap();
    assert_eq!(shown.last_error.as_deref(), Some("upstream 503"));
    assert_eq!(shown.attempts, 1);
    assert!(outbox.retry(first).await.unwrap());
    assert_eq!(outbox.claim(10, LEASE).await.unwrap()[0].id, first);
}
}

on_both_backends! {
    async fn dead_calls_release_their_conversation_and_can_be_retried_or_dropped(db) {
    let (outbox, _db) = open(db).await;
    let first = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let second = outbox.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    outbox.claim(10, LEASE).await.unwrap();
    outbox
        .settle(first, Settlement::Dead("400 INVALID".into()))
        .await
        .unwrap();
    assert_eq!(outbox.claim(10, LEASE).await.unwrap()[0].id, second);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (1, 1));
    assert_eq!(
        outbox.list(Some(OutboxState::Dead), 0, 10).await.unwrap()[0].id,
        first
    );
    assert!(outbox.drop(first).await.unwrap());
    assert!(!outbox.drop(first).await.unwrap());
}
}

on_both_backends! {
    async fn an_expired_lease_is_claimed_again(db) {
    let (outbox, _db) = open(db).await;
    let id = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_eq!(outbox.claim(10, Duration::ZERO).await.unwrap()[0].id, id);
    let again = outbox.claim(10, LEASE).await.unwrap();
    assert_eq!(
        again[0].id, id,
        "a relay that died mid-send gives its calls back"
    );
    assert_eq!(again[0].attempts, 2);
}
}

#[tokio::test]
async fn calls_of_a_relay_whose_process_is_gone_are_taken_back_and_a_live_ones_are_not() {
    use sqlx::Connection;
    let (outbox, db) = open(TestDatabase::sqlite()).await;
    let mine = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let crashed = outbox.enqueue(entry("wa", Some("c2"), 2)).await.unwrap();
    assert_eq!(outbox.claim(10, LEASE).await.unwrap().len(), 2);
    // A relay that was killed leased `crashed`: its owner names a process that does not run.
    let mut conn = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        db.database().sqlite_path().unwrap().display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE outbox SET lease_owner = '4194303:1' WHERE pk = ?1")
        .bind(crashed)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(!outbox.retry(crashed).await.unwrap(), "leased: refused");

    assert!(outbox.release_leases_of_stopped_relays().await.unwrap());
    assert!(outbox.retry(crashed).await.unwrap(), "taken back: retried");
    assert!(
        !outbox.retry(mine).await.unwrap(),
        "this process runs: its lease holds"
    );
    assert!(!outbox.release_leases_of_stopped_relays().await.unwrap());
}

/// On PostgreSQL relays on other machines lease calls: a relay whose heartbeat stopped loses its
/// leases to the next heartbeat of another, one still beating keeps them.
#[tokio::test]
async fn on_postgres_the_leases_of_a_relay_silent_too_long_are_taken_back() {
    use sqlx::Connection;
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let (outbox, db) = open(db).await;
    let silent = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let beating = outbox.enqueue(entry("wa", Some("c2"), 2)).await.unwrap();
    assert_eq!(outbox.claim(10, LEASE).await.unwrap().len(), 2);
    let mut conn = sqlx::PgConnection::connect(&db.flag_value()).await.unwrap();
    for (id, owner) in [(silent, "elsewhere/1/aaaa"), (beating, "elsewhere/2/bbbb")] {
        sqlx::query("UPDATE outbox SET lease_owner = $1 WHERE pk = $2")
            .bind(owner)
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO relay_instances (owner, seen_at_ms) VALUES ($1, $2), ($3, $4)")
        .bind("elsewhere/1/aaaa")
        .bind(now() - 60_000)
        .bind("elsewhere/2/bbbb")
        .bind(now())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(!outbox.retry(silent).await.unwrap(), "leased: refused");

    assert!(outbox.heartbeat(Duration::from_secs(15)).await.unwrap());
    let taken = outbox.entry(silent).await.unwrap().unwrap();
    assert!(taken.in_doubt, "its send may have reached the upstream");
    assert!(outbox.retry(silent).await.unwrap(), "taken back: retried");
    assert!(
        !outbox.retry(beating).await.unwrap(),
        "a relay still beating keeps its lease"
    );
    // A settle by the relay that lost the call changes nothing once another claimed it.
    let claimed = outbox.claim(10, LEASE).await.unwrap();
    assert!(claimed.iter().any(|e| e.id == silent));
}

on_both_backends! {
    async fn leases_are_released_only_for_the_owners_named(db) {
    let postgres = db.database().is_postgres();
    let (outbox, _db) = open(db).await;
    let id = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    assert_eq!(outbox.claim(10, LEASE).await.unwrap()[0].id, id);
    let me = if postgres {
        pdchannels_store::lease_owner::this_instance()
    } else {
        pdchannels_store::lease_owner::this_process()
    }
    .to_owned();
    assert_eq!(outbox.lease_owners().await.unwrap(), vec![me.clone()]);

    assert!(!outbox.release_leases_of(&["1:1".to_owned()]).await.unwrap());
    assert!(
        outbox.claim(10, LEASE).await.unwrap().is_empty(),
        "another owner's lease holds"
    );
    assert!(outbox.release_leases_of(&[me]).await.unwrap());
    assert_eq!(outbox.claim(10, LEASE).await.unwrap()[0].id, id);
}
}

/// Claims `id` (which must be due) and settles it so.
async fn fail_once(outbox: &Outbox, id: i64, retry_at: i64) {
    let claimed = outbox.claim(100, LEASE).await.unwrap();
    assert!(claimed.iter().any(|e| e.id == id), "{id} was not claimable");
    let settlement = Settlement::RetryAt {
        at: retry_at,
        error: "upstream 503".into(),
        in_doubt: false,
    };
    assert!(outbox.settle(id, settlement).await.unwrap());
}

on_both_backends! {
    async fn entries_carry_their_state_and_operation_typed_and_as_the_same_text_in_json(db) {
    let (outbox, _db) = open(db).await;
    let id = outbox.enqueue(entry("wa", None, 0)).await.unwrap();
    let stored = outbox.entry(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.operation, stored.state),
        (Operation::AddChannel, OutboxState::Pending)
    );
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(
        (json["operation"].as_str(), json["state"].as_str()),
        (Some("add_channel"), Some("pending"))
    );
    assert_eq!(
        outbox
            .list(Some(OutboxState::Pending), 0, 10)
            .await
            .unwrap()[0]
            .id,
        id
    );
    assert!(
        outbox
            .list(Some(OutboxState::Dead), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let statuses = outbox.statuses(&[id, id + 1000]).await.unwrap();
    assert_eq!(statuses.len(), 1, "ids not in the outbox are left out");
    assert_eq!(statuses[0].state, OutboxState::Pending);
}
}

on_both_backends! {
    async fn retry_all_puts_back_dead_and_waiting_calls_but_never_a_leased_or_delivered_one(db) {
    let (outbox, _db) = open(db).await;
    let dead = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let waiting = outbox.enqueue(entry("wa", Some("c2"), 2)).await.unwrap();
    let sending = outbox.enqueue(entry("wa", Some("c3"), 3)).await.unwrap();
    let delivered = outbox.enqueue(entry("wa", Some("c4"), 4)).await.unwrap();
    let claimed = outbox.claim(10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 4);
    outbox
        .settle(dead, Settlement::Dead("400 INVALID".into()))
        .await
        .unwrap();
    let in_a_minute = now() + 60_000;
    let retry_at = |at| Settlement::RetryAt {
        at,
        error: "upstream 503".into(),
        in_doubt: false,
    };
    outbox.settle(waiting, retry_at(in_a_minute)).await.unwrap();
    // Failed once, due again at once, and being sent again right now.
    outbox.settle(sending, retry_at(now())).await.unwrap();
    assert_eq!(outbox.claim(10, LEASE).await.unwrap()[0].id, sending);
    outbox
        .settle(delivered, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let never_tried = outbox.enqueue(entry("wa", Some("c5"), 5)).await.unwrap();

    assert_eq!(
        outbox
            .retry_all(Some(OutboxState::Delivered))
            .await
            .unwrap(),
        0,
        "a delivered call never goes again"
    );
    assert_eq!(
        outbox.retry_all(Some(OutboxState::Dead)).await.unwrap(),
        1,
        "only the dead call"
    );
    let revived = outbox.entry(dead).await.unwrap().unwrap();
    assert_eq!((revived.state, revived.attempts), (OutboxState::Pending, 0));
    assert_eq!(
        outbox
            .entry(waiting)
            .await
            .unwrap()
            .unwrap()
            .next_attempt_at_ms,
        in_a_minute,
        "`--state dead` leaves the waiting calls waiting"
    );

    assert_eq!(
        outbox.retry_all(None).await.unwrap(),
        1,
        "the waiting call; not the one being sent, not the ones already due"
    );
    let waiting_now = outbox.entry(waiting).await.unwrap().unwrap();
    assert!(waiting_now.next_attempt_at_ms <= now());
    assert_eq!(
        waiting_now.first_failed_at_ms, None,
        "the give-up clock restarts"
    );
    assert!(
        outbox
            .entry(sending)
            .await
            .unwrap()
            .unwrap()
            .first_failed_at_ms
            .is_some(),
        "the call being sent is left alone"
    );
    let mut claimed: Vec<i64> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    claimed.sort_unstable();
    assert_eq!(claimed, [dead, waiting, never_tried]);
}
}

on_both_backends! {
    async fn release_backoff_makes_due_only_the_calls_waiting_out_a_backoff(db) {
    let (outbox, _db) = open(db).await;
    let failed = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let behind = outbox.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    let other = outbox.enqueue(entry("wa", Some("c2"), 3)).await.unwrap();
    let in_a_minute = now() + 60_000;
    fail_once(&outbox, failed, in_a_minute).await;
    outbox
        .settle(other, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    let fresh = outbox.enqueue(entry("wa", Some("c3"), 4)).await.unwrap();
    let before = outbox.entry(failed).await.unwrap().unwrap();

    let at = now();
    assert_eq!(outbox.release_backoff(at).await.unwrap(), 1);
    let after = outbox.entry(failed).await.unwrap().unwrap();
    assert_eq!(after.next_attempt_at_ms, at);
    assert_eq!(
        (after.attempts, after.first_failed_at_ms),
        (before.attempts, before.first_failed_at_ms),
        "the attempts and the give-up clock are kept"
    );
    for untouched in [behind, fresh] {
        let e = outbox.entry(untouched).await.unwrap().unwrap();
        assert_eq!(e.updated_at_ms, e.created_at_ms, "{untouched} was changed");
    }
    assert_eq!(
        outbox.release_backoff(at).await.unwrap(),
        0,
        "nothing waits any more"
    );
    let mut claimed: Vec<i64> = outbox
        .claim(10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    claimed.sort_unstable();
    assert_eq!(claimed, [failed, fresh]);
}
}

on_both_backends! {
    async fn release_backoff_moves_only_the_calls_in_backoff_among_50_000_pending(db) {
    const PENDING: u32 = 50_000;
    const IN_BACKOFF: u32 = 100;
    let (outbox, _db) = open(db).await;
    let mut enqueues = tokio::task::JoinSet::new();
    for n in 0..PENDING {
        let outbox = outbox.clone();
        // One conversation per call: every call is a head, so the first IN_BACKOFF can fail.
        let conversation = format!("c{n}");
        enqueues.spawn(async move {
            outbox
                .enqueue(entry("wa", Some(&conversation), n))
                .await
                .unwrap()
        });
    }
    while enqueues.join_next().await.is_some() {}
    let claimed = outbox.claim(IN_BACKOFF as usize, LEASE).await.unwrap();
    assert_eq!(claimed.len(), IN_BACKOFF as usize);
    let in_a_minute = now() + 60_000;
    for e in &claimed {
        let settlement = Settlement::RetryAt {
            at: in_a_minute,
            error: "upstream 503".into(),
            in_doubt: false,
        };
        outbox.settle(e.id, settlement).await.unwrap();
    }

    let started = std::time::Instant::now();
    let released = outbox.release_backoff(now()).await.unwrap();
    let took = started.elapsed();
    eprintln!("release_backoff: {released} of {PENDING} pending calls in {took:?}");
    assert_eq!(released, u64::from(IN_BACKOFF));
    assert_eq!(outbox.stats().await.unwrap().pending, i64::from(PENDING));
    let started = std::time::Instant::now();
    assert_eq!(outbox.release_backoff(now()).await.unwrap(), 0);
    eprintln!(
        "release_backoff with nothing in backoff among {PENDING} pending: {:?}",
        started.elapsed()
    );
}
}

on_both_backends! {
    async fn held_behind_names_the_call_that_holds_a_pending_call_back(db) {
    let (outbox, _db) = open(db).await;
    let create = outbox.enqueue(entry("wa", None, 0)).await.unwrap();
    let c1_first = outbox.enqueue(entry("wa", Some("c1"), 1)).await.unwrap();
    let c1_second = outbox.enqueue(entry("wa", Some("c1"), 2)).await.unwrap();
    let c2 = outbox.enqueue(entry("wa", Some("c2"), 3)).await.unwrap();
    let delete = outbox.enqueue(entry("wa", None, 4)).await.unwrap();
    let c1_third = outbox.enqueue(entry("wa", Some("c1"), 5)).await.unwrap();
    let elsewhere = outbox.enqueue(entry("fb", Some("c1"), 6)).await.unwrap();
    let held = |id| {
        let outbox = outbox.clone();
        async move { outbox.held_behind(id).await.unwrap() }
    };

    assert_eq!(held(create).await, None, "the channel's first call");
    assert_eq!(
        held(c1_first).await,
        Some(create),
        "the channel-wide call before it"
    );
    assert_eq!(
        held(c1_second).await,
        Some(c1_first),
        "its conversation's head"
    );
    assert_eq!(held(c2).await, Some(create));
    assert_eq!(held(delete).await, Some(create), "its lane's head");
    assert_eq!(held(c1_third).await, Some(c1_first));
    assert_eq!(held(elsewhere).await, None, "another channel is not held");

    let claimed = outbox.claim(10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2, "create and elsewhere go");
    outbox
        .settle(create, Settlement::Delivered("{}".into()))
        .await
        .unwrap();
    assert_eq!(held(c1_first).await, None);
    assert_eq!(held(c2).await, None);
    assert_eq!(
        held(delete).await,
        Some(c1_first),
        "a channel-wide call waits for the calls of the channel before it"
    );

    let claimed = outbox.claim(10, LEASE).await.unwrap();
    assert!(claimed.iter().any(|e| e.id == c1_first));
    outbox
        .settle(c1_first, Settlement::Dead("400 INVALID".into()))
        .await
        .unwrap();
    assert_eq!(held(c1_first).await, None, "a dead call is not held");
    assert_eq!(held(c1_second).await, None, "the next head of c1");
    assert_eq!(held(c1_third).await, Some(c1_second));
    assert_eq!(held(c1_third + 1000).await, None, "no such call");
}
}

#[tokio::test]
async fn a_closed_store_says_so_to_the_outbox_and_to_channels_callers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("outbox.db")).await.unwrap();
    store.close().await;
    let error = store
        .outbox()
        .enqueue(entry("wa", Some("c1"), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, pdchannels_store::StoreError::Closed),
        "{error:?}"
    );
    let unavailable = pdchannels_model::ChannelsError::from(error);
    assert!(
        unavailable.to_string().contains("the database is closed"),
        "{unavailable}"
    );
}
