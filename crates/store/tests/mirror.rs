//! The notes mirror's state in the store, on both backends: links (auto, manual, parked with
//! candidates, unlinked), segments marked dirty and claimed with a lease (never by two owners at
//! once, taken again once the lease ran out), the write's state machine, a deleted conversation
//! taking its link and segments with it, and the daily token ledger.

use pdchannels_model::{AddChannel, Channels, Limits, ReceiveMessage, Timestamp};
use pdchannels_store::{
    CopyOptions, FlushTiming, MirrorMatch, MirrorTarget, NewSegment, NoteWritten, SegmentState,
    Store,
};
use pdchannels_testkit::{TestDatabase, on_both_backends};
use serde_json::json;

const MINUTE: i64 = 60_000;

/// Quiet for a minute, or ten minutes at most.
const TIMING: FlushTiming = FlushTiming {
    quiet_ms: MINUTE,
    max_wait_ms: 10 * MINUTE,
};

fn now() -> i64 {
    Timestamp::now().unix_millis()
}

async fn setup(store: &Store, conversations: &[&str]) {
    store
        .add_channel(
            AddChannel::parse(
                &json!({"name": "wa", "provider_channel_id": "wa"}),
                &Limits::default(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    for (i, conversation) in conversations.iter().enumerate() {
        let message = ReceiveMessage::parse(
            &json!({"id": format!("m{i}"), "channel_id": "wa", "conversation_id": conversation,
                    "sender_id": "cust", "message": "hi", "status": "sent",
                    "created_at": "2024-01-01T10:00:00Z"}),
            &Limits::default(),
        )
        .unwrap();
        store.receive_message(message).await.unwrap();
    }
}

fn person(person_id: i64) -> MirrorTarget {
    MirrorTarget {
        person_id,
        deal_id: Some(7),
        ..MirrorTarget::default()
    }
}

fn segment(conversation: &str, seq: i64) -> NewSegment {
    let key = format!("wa/{conversation}/2024-01-01/{seq}");
    NewSegment {
        channel_id: "wa".into(),
        conversation_id: conversation.into(),
        day: "2024-01-01".into(),
        seq,
        marker: format!("mk-{key}"),
        key,
    }
}

fn written(note_id: i64, through: Option<i64>) -> NoteWritten {
    NoteWritten {
        note_id,
        rendered_hash: format!("hash-{note_id}"),
        update_time: Some("2024-01-01 10:05:00".into()),
        user_id: Some(99),
        rendered_through_ms: through,
        message_ids: vec![format!("m-{note_id}")],
    }
}

/// Links `conversations` and marks each one's segment dirty ten minutes ago, then quiet.
async fn linked_and_dirty(store: &Store, conversations: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for c in conversations {
        assert!(
            store
                .mirror_record_match("wa", c, MirrorMatch::Linked(person(1)))
                .await
                .unwrap()
        );
        ids.push(
            store
                .mirror_touch(segment(c, 0), now() - 5 * MINUTE)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    ids
}

/// The conversations (ids, sorted) the mirror would look up now: at most `limit`, parked and
/// unmatched ones looked up before `relook_before_ms` and active since, whatever their activity.
async fn looked_up(store: &Store, limit: i64, relook_before_ms: i64) -> Vec<String> {
    let mut ids: Vec<String> = store
        .mirror_conversations_to_look_up(limit, relook_before_ms, i64::MIN)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    ids.sort();
    ids
}

on_both_backends! {
    async fn links_auto_manual_parked_and_unlinked(db) {
        let store = db.open().await;
        setup(&store, &["c1", "c2", "c3"]).await;
        let to_look_up = |n| looked_up(&store, n, 0);
        assert_eq!(to_look_up(10).await, ["c1", "c2", "c3"]);
        assert_eq!(to_look_up(1).await.len(), 1);

        assert!(store.mirror_record_match("wa", "c1", MirrorMatch::Linked(person(1))).await.unwrap());
        let candidates = json!([{"id": 1, "name": "Ana"}, {"id": 2, "name": "Ana S."}]);
        assert!(store
            .mirror_record_match("wa", "c2", MirrorMatch::Parked(candidates.clone()))
            .await
            .unwrap());
        assert!(store.mirror_record_match("wa", "c3", MirrorMatch::Unmatched).await.unwrap());
        assert!(!store.mirror_record_match("wa", "nope", MirrorMatch::Unmatched).await.unwrap());
        assert!(to_look_up(10).await.is_empty());

        let c1 = store.mirror_link("wa", "c1").await.unwrap().unwrap();
        assert_eq!((c1.state.as_str(), c1.how.as_str()), ("linked", "auto"));
        assert_eq!(c1.target, Some(person(1)));
        assert_eq!(c1.candidates, None);

        let pending = store.mirror_pending(10).await.unwrap();
        let mut states: Vec<_> = pending
            .iter()
            .map(|l| (l.conversation_id.as_str(), l.state.as_str(), l.candidates.clone()))
            .collect();
        states.sort_by_key(|s| s.0);
        assert_eq!(
            states,
            [("c2", "parked", Some(candidates)), ("c3", "unmatched", None)]
        );

        // A manual link replaces the parked one, and no look-up replaces it.
        let lead = MirrorTarget {
            person_id: 2,
            org_id: Some(3),
            deal_id: None,
            lead_id: Some("3f2a-lead".into()),
        };
        assert!(store.mirror_link_manually("wa", "c2", lead.clone()).await.unwrap());
        assert!(!store.mirror_record_match("wa", "c2", MirrorMatch::Unmatched).await.unwrap());
        let c2 = store.mirror_link("wa", "c2").await.unwrap().unwrap();
        assert_eq!((c2.state.as_str(), c2.how.as_str()), ("linked", "manual"));
        assert_eq!(c2.target, Some(lead));
        assert!(!store.mirror_link_manually("wa", "nope", person(1)).await.unwrap());
        // An auto link is replaced by a later look-up.
        assert!(store.mirror_record_match("wa", "c1", MirrorMatch::Unmatched).await.unwrap());
        assert_eq!(store.mirror_link("wa", "c1").await.unwrap().unwrap().target, None);
        assert_eq!(store.mirror_pending(10).await.unwrap().len(), 2);

        // Unlinked: looked up again.
        assert!(store.mirror_unlink("wa", "c2").await.unwrap());
        assert!(!store.mirror_unlink("wa", "c2").await.unwrap());
        assert_eq!(store.mirror_link("wa", "c2").await.unwrap(), None);
        assert_eq!(to_look_up(10).await, ["c2"]);
        store.close().await;
    }

    async fn parked_and_unmatched_conversations_active_again_are_looked_up_again(db) {
        let store = db.open().await;
        setup(&store, &["c1", "c2", "c3", "c4"]).await;
        let to_look_up = |relook_before_ms| looked_up(&store, 10, relook_before_ms);
        store.mirror_record_match("wa", "c1", MirrorMatch::Linked(person(1))).await.unwrap();
        store.mirror_record_match("wa", "c2", MirrorMatch::Parked(json!([1, 2]))).await.unwrap();
        store.mirror_record_match("wa", "c3", MirrorMatch::Unmatched).await.unwrap();
        store.mirror_link_manually("wa", "c4", person(4)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let later = now() + 1;
        assert!(to_look_up(later).await.is_empty(), "nobody wrote since their look-up");

        // Every one of them is active again.
        for (i, conversation) in ["c1", "c2", "c3", "c4"].iter().enumerate() {
            let message = ReceiveMessage::parse(
                &json!({"id": format!("again{i}"), "channel_id": "wa",
                        "conversation_id": conversation, "sender_id": "cust",
                        "message": "still there?", "status": "sent",
                        "created_at": "2024-01-02T10:00:00Z"}),
                &Limits::default(),
            )
            .unwrap();
            store.receive_message(message).await.unwrap();
        }
        // Looked up too recently: not yet.
        assert!(to_look_up(0).await.is_empty());
        // Long enough ago: the parked and the unmatched one, never a linked or a manual one.
        assert_eq!(to_look_up(later).await, ["c2", "c3"]);
        // Only those active since the time given are looked at.
        let since_later = store.mirror_conversations_to_look_up(10, later, now() + 60_000);
        assert!(since_later.await.unwrap().is_empty());
        // Looked up again (still unmatched): not again until it is active again.
        store.mirror_record_match("wa", "c3", MirrorMatch::Unmatched).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(to_look_up(now() + 1).await, ["c2"]);
        store.close().await;
    }

    async fn touch_makes_and_marks_the_days_segment(db) {
        let store = db.open().await;
        setup(&store, &["c1"]).await;
        let at = now() - 5 * MINUTE;
        let id = store.mirror_touch(segment("c1", 0), at).await.unwrap().unwrap();
        assert_eq!(store.mirror_touch(segment("c1", 0), at + 1_000).await.unwrap(), Some(id));
        // An older message does not move the last one back.
        assert_eq!(store.mirror_touch(segment("c1", 0), at - 1_000).await.unwrap(), Some(id));
        assert_eq!(store.mirror_touch(segment("nope", 0), at).await.unwrap(), None);
        let s = store.mirror_segment(id).await.unwrap().unwrap();
        assert_eq!(s.state, SegmentState::Open);
        assert_eq!((s.dirty_since_ms, s.first_message_ms, s.last_message_ms), (Some(at), Some(at), Some(at + 1_000)));
        assert_eq!((s.key.as_str(), s.marker.as_str()), ("wa/c1/2024-01-01/0", "mk-wa/c1/2024-01-01/0"));
        assert_eq!((s.channel_id.as_str(), s.day.as_str(), s.seq), ("wa", "2024-01-01", 0));
        assert_eq!(store.mirror_segments("wa", "c1").await.unwrap(), [s]);
        store.close().await;
    }

    async fn a_claim_takes_due_segments_of_linked_conversations_once(db) {
        let store = db.open().await;
        setup(&store, &["c1", "c2", "c3", "c4", "c5", "quiet", "new", "parked"]).await;
        let ids = linked_and_dirty(&store, &["c1", "c2", "c3", "c4", "c5"]).await;
        // Linked but nothing to write; linked but written to a moment ago; parked.
        store.mirror_record_match("wa", "quiet", MirrorMatch::Linked(person(1))).await.unwrap();
        store.mirror_record_match("wa", "new", MirrorMatch::Linked(person(1))).await.unwrap();
        store.mirror_touch(segment("new", 0), now()).await.unwrap();
        store.mirror_record_match("wa", "parked", MirrorMatch::Parked(json!([]))).await.unwrap();
        store.mirror_touch(segment("parked", 0), now() - 5 * MINUTE).await.unwrap();

        // Two hubs on one database claiming at once never take the same segment.
        let other = db.open().await;
        let (a, b) = tokio::join!(
            store.mirror_claim_due("hub-a", TIMING, MINUTE, 3),
            other.mirror_claim_due("hub-b", TIMING, MINUTE, 3),
        );
        other.close().await;
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut taken: Vec<i64> = a.iter().chain(&b).map(|s| s.id).collect();
        taken.sort_unstable();
        assert_eq!(taken, ids, "each due segment once, none of the others");
        assert!(a.iter().all(|s| s.lease_owner.as_deref() == Some("hub-a")));
        assert!(b.iter().all(|s| s.lease_owner.as_deref() == Some("hub-b")));
        assert!(store.mirror_claim_due("hub-c", TIMING, MINUTE, 10).await.unwrap().is_empty());

        // Past the longest wait, a segment that is never quiet is due too.
        let eager = FlushTiming { quiet_ms: 10 * MINUTE, max_wait_ms: 0 };
        let new = store.mirror_claim_due("hub-c", eager, MINUTE, 10).await.unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].conversation_id, "new");
        store.close().await;
    }

    async fn an_expired_lease_is_taken_again(db) {
        let store = db.open().await;
        setup(&store, &["c1"]).await;
        let ids = linked_and_dirty(&store, &["c1"]).await;
        // A lease that is over as soon as it is taken (the hub that took it stopped).
        let first = store.mirror_claim_due("hub-a", TIMING, -1, 10).await.unwrap();
        assert_eq!(first.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        let again = store.mirror_claim_due("hub-b", TIMING, MINUTE, 10).await.unwrap();
        assert_eq!(again.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        assert_eq!(again[0].lease_owner.as_deref(), Some("hub-b"));
        // The hub that lost it changes nothing.
        assert!(!store.mirror_mark_creating(ids[0], "hub-a", "h", 1).await.unwrap());
        assert!(store.mirror_claim_due("hub-a", TIMING, MINUTE, 10).await.unwrap().is_empty());
        store.close().await;
    }

    async fn creating_uncertain_live_sealed_and_the_next_seq(db) {
        let store = db.open().await;
        setup(&store, &["c1"]).await;
        let id = linked_and_dirty(&store, &["c1"]).await[0];
        let claimed = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        let through = claimed[0].last_message_ms;

        // Before the POST: creating, durably. Its outcome unknown: uncertain, released, dirty.
        assert!(store.mirror_mark_creating(id, "hub", "hash-1", 1).await.unwrap());
        let s = store.mirror_segment(id).await.unwrap().unwrap();
        assert_eq!((s.state, s.rendered_hash.as_deref()), (SegmentState::Creating, Some("hash-1")));
        assert_eq!(s.posted_person_id, Some(1));
        assert!(store.mirror_mark_uncertain(id, "hub", "timed out").await.unwrap());
        let s = store.mirror_segment(id).await.unwrap().unwrap();
        assert_eq!(s.state, SegmentState::Uncertain);
        assert_eq!((s.attempts, s.last_error.as_deref(), s.lease_owner), (1, Some("timed out"), None));
        assert!(s.dirty_since_ms.is_some());
        assert!(!store.mirror_settle_live(id, "hub", written(41, through)).await.unwrap(), "released");

        // Reconciled: found by its marker, live.
        let again = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        assert_eq!(again[0].state, SegmentState::Uncertain);
        assert!(store.mirror_settle_live(id, "hub", written(41, through)).await.unwrap());
        let s = store.mirror_segment(id).await.unwrap().unwrap();
        assert_eq!((s.state, s.note_id, s.rendered_hash.as_deref()), (SegmentState::Live, Some(41), Some("hash-41")));
        assert_eq!((s.note_update_time.as_deref(), s.note_user_id), (Some("2024-01-01 10:05:00"), Some(99)));
        assert_eq!((s.dirty_since_ms, s.attempts, s.last_error, s.lease_owner), (None, 0, None, None));
        assert!(s.last_flush_ms.is_some());
        assert!(store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap().is_empty());

        // A message seen after the render keeps it dirty.
        store.mirror_touch(segment("c1", 0), now() - 3 * MINUTE).await.unwrap();
        let claimed = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        let late = claimed[0].last_message_ms;
        store.mirror_touch(segment("c1", 0), now() - 2 * MINUTE).await.unwrap();
        assert!(store.mirror_settle_live(id, "hub", written(41, late)).await.unwrap());
        assert!(store.mirror_segment(id).await.unwrap().unwrap().dirty_since_ms.is_some());

        // A write refused: released with a backoff, nothing due before it.
        let claimed = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(store.mirror_failed(id, "hub", "429", now() + MINUTE).await.unwrap());
        let s = store.mirror_segment(id).await.unwrap().unwrap();
        assert_eq!((s.state, s.attempts), (SegmentState::Live, 1));
        assert!(store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap().is_empty());

        // Only the lease's owner settles, fails or seals a segment.
        assert!(!store.mirror_failed(id, "other", "x", 0).await.unwrap());
        let eager = FlushTiming { quiet_ms: 0, max_wait_ms: 0 };
        assert!(store.mirror_claim_due("hub", eager, MINUTE, 10).await.unwrap().is_empty(), "backoff");
        store.close().await;
    }

    async fn sealing_opens_the_next_seq(db) {
        let store = db.open().await;
        setup(&store, &["c1"]).await;
        let id = linked_and_dirty(&store, &["c1"]).await[0];
        store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        assert!(store.mirror_mark_creating(id, "hub", "h", 1).await.unwrap());
        assert!(store.mirror_settle_live(id, "hub", written(41, None)).await.unwrap());
        store.mirror_touch(segment("c1", 0), now() - 2 * MINUTE).await.unwrap();
        let claimed = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        let dirty = claimed[0].dirty_since_ms;
        assert_eq!(store.mirror_seal(id, "other", segment("c1", 1)).await.unwrap(), None);
        let next = store.mirror_seal(id, "hub", segment("c1", 1)).await.unwrap().unwrap();
        assert_ne!(next, id);
        let all = store.mirror_segments("wa", "c1").await.unwrap();
        let states: Vec<_> = all.iter().map(|s| (s.seq, s.state, s.note_id, s.dirty_since_ms)).collect();
        assert_eq!(states, [(0, SegmentState::Sealed, Some(41), None), (1, SegmentState::Open, None, dirty)]);
        // A sealed segment is never changed again, and new messages go to the continuation.
        assert!(!store.mirror_mark_creating(id, "hub", "h", 1).await.unwrap());
        assert_eq!(store.mirror_touch(segment("c1", 1), now() - 2 * MINUTE).await.unwrap(), Some(next));
        let due = store.mirror_claim_due("hub", TIMING, MINUTE, 10).await.unwrap();
        assert_eq!(due.iter().map(|s| s.id).collect::<Vec<_>>(), [next]);
        // A POST refused outright: back to open, for a later try.
        assert!(store.mirror_mark_creating(next, "hub", "h2", 1).await.unwrap());
        assert!(store.mirror_failed(next, "hub", "400", 0).await.unwrap());
        assert_eq!(store.mirror_segment(next).await.unwrap().unwrap().state, SegmentState::Open);
        store.close().await;
    }

    async fn deleting_a_conversation_forgets_its_link_and_segments(db) {
        let store = db.open().await;
        setup(&store, &["c1", "c2"]).await;
        let ids = linked_and_dirty(&store, &["c1", "c2"]).await;
        let gone = pdchannels_model::DeleteConversation::parse(
            &json!({"channel_id": "wa", "conversation_id": "c1"}),
            &Limits::default(),
        )
        .unwrap();
        store.delete_conversation(gone).await.unwrap();
        assert_eq!(store.mirror_link("wa", "c1").await.unwrap(), None);
        assert!(store.mirror_segments("wa", "c1").await.unwrap().is_empty());
        assert_eq!(store.mirror_segment(ids[0]).await.unwrap(), None);
        assert!(store.mirror_link("wa", "c2").await.unwrap().is_some());
        assert_eq!(store.mirror_segments("wa", "c2").await.unwrap().len(), 1);
        store.close().await;
    }

    async fn the_token_ledger_is_per_day_and_the_status_counts(db) {
        let store = db.open().await;
        setup(&store, &["c1", "c2", "c3", "c4"]).await;
        assert_eq!(store.mirror_spent("2024-01-01").await.unwrap(), 0);
        assert_eq!(store.mirror_spend("2024-01-01", 10).await.unwrap(), 10);
        assert_eq!(store.mirror_spend("2024-01-01", 20).await.unwrap(), 30);
        assert_eq!(store.mirror_spend("2024-01-02", 2).await.unwrap(), 2);
        assert_eq!(store.mirror_spent("2024-01-01").await.unwrap(), 30);
        assert_eq!(store.mirror_spent("2024-01-02").await.unwrap(), 2);

        let ids = linked_and_dirty(&store, &["c1", "c2"]).await;
        store.mirror_record_match("wa", "c3", MirrorMatch::Parked(json!([1, 2]))).await.unwrap();
        // A parked conversation's day waits for a link: not counted as waiting to be written.
        store.mirror_touch(segment("c3", 0), now()).await.unwrap();
        store.mirror_claim_due("hub", TIMING, MINUTE, 1).await.unwrap();
        let first = store.mirror_segment(ids[0]).await.unwrap().unwrap();
        let claimed = if first.lease_owner.is_some() { ids[0] } else { ids[1] };
        store.mirror_settle_live(claimed, "hub", written(5, None)).await.unwrap();
        let other = store.mirror_segment(ids[0] + ids[1] - claimed).await.unwrap().unwrap();

        let status = store.mirror_status("2024-01-01", TIMING).await.unwrap();
        assert_eq!(
            (status.to_look_up, status.linked, status.parked, status.unmatched),
            (1, 2, 1, 0)
        );
        assert_eq!((status.notes_live, status.notes_sealed, status.uncertain, status.dirty), (1, 0, 0, 1));
        assert_eq!(status.tokens_today, 30);
        assert_eq!(status.next_flush_ms, other.last_message_ms.map(|t| t + MINUTE));
        store.close().await;
    }

    async fn the_intake_reads_changes_since_its_cursor_and_a_day_by_created_at(db) {
        let store = db.open().await;
        assert_eq!(store.mirror_cursor("intake").await.unwrap(), None);
        let before = now();
        setup(&store, &["c1", "c2", "c2"]).await;
        let changes = store.mirror_changes_since(before, 10).await.unwrap();
        let seen: Vec<(&str, usize)> = changes
            .conversations
            .iter()
            .map(|c| (c.conversation_id.as_str(), c.messages.len()))
            .collect();
        assert_eq!(seen, [("c1", 1), ("c2", 2)]);
        assert_eq!(changes.messages, 3);
        let first = store.mirror_changes_since(before, 1).await.unwrap();
        assert_eq!((first.messages, first.conversations.len()), (1, 1));
        let last = changes.through_ms.unwrap();
        assert!(last >= first.through_ms.unwrap());
        let none = store.mirror_changes_since(last + 1, 10).await.unwrap();
        assert_eq!((none.messages, none.through_ms), (0, None));

        assert_eq!(store.mirror_setting("time_zone").await.unwrap(), None);
        assert_eq!(store.mirror_setting_or_record("time_zone", "Europe/London").await.unwrap(), "Europe/London");
        assert_eq!(store.mirror_setting_or_record("time_zone", "UTC").await.unwrap(), "Europe/London", "the first stays");

        store.mirror_set_cursor("intake", last).await.unwrap();
        store.mirror_set_cursor("intake", last - 5).await.unwrap();
        assert_eq!(store.mirror_cursor("intake").await.unwrap(), Some(last), "never backwards");

        // Every message of setup was created 2024-01-01T10:00:00Z.
        let ten = 1_704_103_200_000;
        let day = store.mirror_day_messages("wa", "c2", ten, ten + 1).await.unwrap();
        let ids: Vec<&str> = day.iter().map(|m| m.payload["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["m1", "m2"]);
        assert!(store.mirror_day_messages("wa", "c2", ten + 1, ten + MINUTE).await.unwrap().is_empty());

        // A segment written holds its message ids; one with nothing to write is released clean.
        let ids = linked_and_dirty(&store, &["c1", "c2"]).await;
        let claimed = store.mirror_claim_due("hub", TIMING, MINUTE, 2).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(store.mirror_settle_live(ids[0], "hub", written(5, None)).await.unwrap());
        let live = store.mirror_segment(ids[0]).await.unwrap().unwrap();
        assert_eq!(live.written_ids(), ["m-5"]);
        assert!(store.mirror_release_clean(ids[1], "hub", None).await.unwrap());
        let clean = store.mirror_segment(ids[1]).await.unwrap().unwrap();
        assert_eq!((clean.state, clean.dirty_since_ms, clean.lease_owner.as_deref()), (SegmentState::Open, None, None));
        assert!(clean.written_ids().is_empty());
        assert!(!store.mirror_release_clean(ids[1], "hub", None).await.unwrap(), "no longer held");
        store.close().await;
    }
}

/// `db copy` takes the links and segments (the notes already written: without them the copied
/// hub would post them again), leases left behind; and the mirror's time zone (a copied hub must
/// not cut days in another), intake cursor and token ledger, and the inbox's read marks.
#[tokio::test]
async fn db_copy_takes_links_segments_settings_and_read_marks() {
    let Some(target) = TestDatabase::postgres().await else {
        return;
    };
    let source = TestDatabase::sqlite();
    let store = source.open().await;
    setup(&store, &["c1", "c2"]).await;
    let ids = linked_and_dirty(&store, &["c1"]).await;
    store
        .mirror_record_match("wa", "c2", MirrorMatch::Parked(json!([{"id": 1}])))
        .await
        .unwrap();
    store
        .mirror_claim_due("hub", TIMING, MINUTE, 10)
        .await
        .unwrap();
    assert!(
        store
            .mirror_mark_creating(ids[0], "hub", "h", 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .mirror_settle_live(ids[0], "hub", written(41, None))
            .await
            .unwrap()
    );
    store.mirror_touch(segment("c1", 0), now()).await.unwrap();
    store
        .mirror_claim_due(
            "hub",
            FlushTiming {
                quiet_ms: 0,
                max_wait_ms: 0,
            },
            MINUTE,
            10,
        )
        .await
        .unwrap();
    let links = (
        store.mirror_link("wa", "c1").await.unwrap(),
        store.mirror_link("wa", "c2").await.unwrap(),
    );
    let mut segments = store.mirror_segments("wa", "c1").await.unwrap();
    assert_eq!(segments[0].lease_owner.as_deref(), Some("hub"));
    store
        .mirror_put_setting("time_zone", Some("Europe/Tallinn"))
        .await
        .unwrap();
    store.mirror_set_cursor("intake", 1_234_567).await.unwrap();
    store.mirror_spend("2024-01-01", 42).await.unwrap();
    let reader = store.create_token("reader").await.unwrap().info.id;
    assert!(store.mark_inbox_read(&reader, "wa", "c1").await.unwrap());
    assert!(store.mark_inbox_unread(&reader, "wa", "c2").await.unwrap());
    let unread = (
        store.inbox_unread(&reader, "wa", "c1").await.unwrap(),
        store.inbox_unread(&reader, "wa", "c2").await.unwrap(),
    );
    assert_eq!(unread, (Some(false), Some(true)));
    store.close().await;

    pdchannels_store::copy_database(
        source.database(),
        target.database(),
        CopyOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let copied = target.open().await;
    assert_eq!(
        (
            copied.mirror_link("wa", "c1").await.unwrap(),
            copied.mirror_link("wa", "c2").await.unwrap(),
        ),
        links
    );
    for s in &mut segments {
        (s.lease_owner, s.lease_until_ms) = (None, None);
    }
    assert_eq!(copied.mirror_segments("wa", "c1").await.unwrap(), segments);
    assert_eq!(
        copied.mirror_setting("time_zone").await.unwrap().as_deref(),
        Some("Europe/Tallinn")
    );
    assert_eq!(
        copied.mirror_cursor("intake").await.unwrap(),
        Some(1_234_567)
    );
    assert_eq!(copied.mirror_spent("2024-01-01").await.unwrap(), 42);
    assert_eq!(
        (
            copied.inbox_unread(&reader, "wa", "c1").await.unwrap(),
            copied.inbox_unread(&reader, "wa", "c2").await.unwrap(),
        ),
        unread
    );
    // New rows get ids past the copied ones.
    segment_after_copy(&copied).await;
    copied.close().await;

    // A source whose read marks changed since (they keep no time of their own) is not taken
    // for the one copied: rows copied already would stay as they were.
    let store = source.open().await;
    assert!(store.mark_inbox_unread(&reader, "wa", "c1").await.unwrap());
    store.close().await;
    let refused = pdchannels_store::copy_database(
        source.database(),
        target.database(),
        CopyOptions { resume: true },
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("changed since"), "{refused}");
}

/// A new segment in the copied database: its id must not collide with a copied one.
async fn segment_after_copy(store: &Store) {
    let message = ReceiveMessage::parse(
        &json!({"id": "m9", "channel_id": "wa", "conversation_id": "c2", "sender_id": "cust",
                "message": "hi", "status": "sent", "created_at": "2024-01-01T10:00:00Z"}),
        &Limits::default(),
    )
    .unwrap();
    store.receive_message(message).await.unwrap();
    assert!(
        store
            .mirror_link_manually("wa", "c2", person(3))
            .await
            .unwrap()
    );
    store
        .mirror_touch(segment("c2", 0), now())
        .await
        .unwrap()
        .unwrap();
}
