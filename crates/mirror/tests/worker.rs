//! The mirror end to end on both store backends, against the Pipedrive fixture over real HTTP:
//! messages received by the store become one note per conversation-day on the linked person and
//! deal; a new message rewrites it, a status change or a replayed receive costs nothing; a lost
//! answer after the POST, a process that stopped during a POST, and a person's edit each end with
//! exactly the notes they should; an ambiguous customer is parked and backfilled once linked by
//! hand; a budget at its floor stops every call while the messages wait.

use std::time::Duration;

use pdchannels_mirror::worker::MirrorConfig;
use pdchannels_store::{MirrorTarget, SegmentState};
use pdchannels_testkit::on_both_backends;
use pdchannels_testkit::pipedrive_api::{Fault, PipedriveApi, Route, TOKEN_USER_ID};

mod common;

use common::{CUSTOMER, Running, SALES, channel, receive, receive_status};

on_both_backends! {
    async fn a_conversation_becomes_one_note_rewritten_as_it_grows_and_status_costs_nothing(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        let deal = api.add_deal(ana, "Ana's order", "open");
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "Olá <b>preciso</b> de ajuda", "2026-11-23T12:14:00Z").await;
        receive(&store, "m2", "c1", "wa", "Claro!", "2026-11-23T12:16:00Z").await;

        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        let link = store.mirror_link("wa", "c1").await.unwrap().unwrap();
        assert_eq!(link.target, Some(MirrorTarget { person_id: ana, deal_id: Some(deal), ..MirrorTarget::default() }));
        let notes = api.notes();
        assert_eq!(notes.len(), 1, "{notes:#?}");
        let note = &notes[0];
        assert_eq!((note.person_id, note.deal_id), (Some(ana), Some(deal)));
        assert!(note.content.contains("Olá &lt;b&gt;preciso&lt;/b&gt; de ajuda"), "{}", note.content);
        assert!(note.content.contains("09:14"), "local time: {}", note.content);
        assert!(note.content.contains("<b>WhatsApp: Sales (you)</b> 09:16 — Claro!"), "{}", note.content);
        assert_eq!(note.add_time, "2026-11-23 12:14:00");
        let spent_first = api.tokens_spent();
        assert_eq!(spent_first, 20 + 10 + 10, "search, deals, one POST");
        assert_eq!(store.mirror_spent(&chrono::Utc::now().date_naive().format("%Y-%m-%d").to_string()).await.unwrap(), 40);

        // A replayed receive and a status change: the note would not change, so no call.
        receive(&store, "m1", "c1", CUSTOMER, "Olá <b>preciso</b> de ajuda", "2026-11-23T12:14:00Z").await;
        receive_status(&store, "m2", "c1", "wa", "Claro!", "2026-11-23T12:16:00Z", "read").await;
        mirror.settle().await;
        assert_eq!(api.tokens_spent(), spent_first);

        // A new message: the edit guard's read, then one PUT of the whole note.
        receive(&store, "m3", "c1", CUSTOMER, "Obrigada", "2026-11-23T12:20:00Z").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);
        assert_eq!(api.tokens_spent(), spent_first + 2 + 10);
        let note = api.note(note.id).unwrap();
        assert!(note.content.contains("Obrigada"));
        assert_eq!(note.last_update_user_id, TOKEN_USER_ID);

        // The next local day is another note.
        receive(&store, "m4", "c1", CUSTOMER, "Bom dia", "2026-11-24T11:00:00Z").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 2);
        let segments = store.mirror_segments("wa", "c1").await.unwrap();
        let days: Vec<&str> = segments.iter().map(|s| s.day.as_str()).collect();
        assert_eq!(days, ["2026-11-23", "2026-11-24"]);
        assert!(segments.iter().all(|s| s.state == SegmentState::Live && s.dirty_since_ms.is_none()));
        store.close().await;
    }

    async fn a_lost_answer_or_a_stopped_process_never_makes_a_second_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "one", "2026-11-23T12:14:00Z").await;

        // The POST creates the note and its answer is lost: uncertain, then found by its marker.
        api.arm(Route::NotesAdd, Fault::LoseAnswer);
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);
        assert!(api.calls(Route::NotesList) >= 1, "reconciled by the marker");
        let segment = &store.mirror_segments("wa", "c1").await.unwrap()[0];
        assert_eq!(segment.state, SegmentState::Live);
        assert_eq!(segment.note_id, Some(api.notes()[0].id));
        assert_eq!(api.notes()[0].person_id, Some(ana));

        // A process killed during a POST that Pipedrive carried out: its segment is left
        // `creating` under its lease; once the lease runs out another process finds the note by
        // its marker instead of posting again.
        receive(&store, "m2", "c2", CUSTOMER, "two", "2026-11-23T12:30:00Z").await;
        store.mirror_record_match("wa", "c2", pdchannels_store::MirrorMatch::Linked(MirrorTarget {
            person_id: ana, ..MirrorTarget::default()
        })).await.unwrap();
        let before = api.notes_created();
        api.arm(Route::NotesAdd, Fault::Delay(Duration::from_secs(3)));
        let mut dead = Running::new(&store, &api, "dead-hub").await;
        let killed = tokio::spawn(async move { dead.settle().await });
        tokio::time::sleep(Duration::from_millis(250)).await;
        killed.abort();
        assert_eq!(api.notes_created(), before + 1, "the dead hub's POST made the note");
        let c2 = &store.mirror_segments("wa", "c2").await.unwrap()[0];
        assert_eq!(c2.state, SegmentState::Creating);
        tokio::time::sleep(Duration::from_millis(400)).await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), before + 1, "no second POST");
        let c2 = &store.mirror_segments("wa", "c2").await.unwrap()[0];
        assert_eq!(c2.state, SegmentState::Live);
        assert_eq!(api.notes().iter().filter(|n| n.content.contains("two")).count(), 1);
        store.close().await;
    }

    async fn a_persons_edit_is_never_overwritten_the_day_continues_in_a_new_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "first", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        let first = api.notes()[0].id;
        api.edit_note_as_person(first, "<p>Called her back, all fine</p>");

        receive(&store, "m2", "c1", CUSTOMER, "second", "2026-11-23T13:00:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        let edited = api.note(first).unwrap();
        assert_eq!(edited.content, "<p>Called her back, all fine</p>", "never overwritten");
        let notes = api.notes();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        let continuation = notes.iter().find(|n| n.id != first).unwrap();
        assert!(continuation.content.contains("second"));
        assert!(!continuation.content.contains("first"), "what the sealed note held stays there");
        let states: Vec<(i64, SegmentState)> = store
            .mirror_segments("wa", "c1").await.unwrap().iter().map(|s| (s.seq, s.state)).collect();
        assert_eq!(states, [(0, SegmentState::Sealed), (1, SegmentState::Live)]);
        store.close().await;
    }

    async fn an_ambiguous_customer_is_parked_then_backfilled_once_linked_by_hand(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        api.add_person("Ana S. (old)", &["0055 44 99999 0001"], &[]);
        let lead = api.add_lead(ana, "WhatsApp: Ana");
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        receive(&store, "m2", "c2", "no-number", "who am I", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 0);
        let pending = store.mirror_pending(10).await.unwrap();
        let mut states: Vec<(&str, &str)> = pending.iter()
            .map(|l| (l.conversation_id.as_str(), l.state.as_str())).collect();
        states.sort_unstable();
        assert_eq!(states, [("c1", "parked"), ("c2", "unmatched")]);
        let candidates = pending.iter().find(|l| l.conversation_id == "c1").unwrap().candidates.clone().unwrap();
        assert_eq!(candidates.as_array().unwrap().len(), 2);
        let spent = api.tokens_spent();
        assert_eq!(spent, 20, "one search; an id that is no number costs nothing");

        store.mirror_link_manually("wa", "c1", MirrorTarget {
            person_id: ana, lead_id: Some(lead.clone()), ..MirrorTarget::default()
        }).await.unwrap();
        mirror.settle().await;
        let notes = api.notes();
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].person_id, notes[0].lead_id.as_deref()), (Some(ana), Some(lead.as_str())));
        assert_eq!(notes[0].add_time, "2026-11-23 12:14:00", "backfilled at its own time");
        store.close().await;
    }

    async fn a_customer_added_to_pipedrive_later_is_linked_when_they_write_again(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "Olá", "2026-11-23T12:14:00Z").await;
        let config = MirrorConfig {
            relook_after: Duration::ZERO,
            ..common::config(chrono_tz::America::Sao_Paulo, Duration::from_millis(300))
        };
        let mut mirror = Running::with(&store, &api, "hub-a", config).await;
        mirror.settle().await;
        let state = |store: pdchannels_store::Store| async move {
            store.mirror_link("wa", "c1").await.unwrap().unwrap().state
        };
        assert_eq!(state(store.clone()).await, "unmatched");
        assert_eq!(api.tokens_spent(), 20, "one search");

        // Added to Pipedrive: nothing happens while the conversation is quiet.
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        mirror.settle().await;
        assert_eq!(state(store.clone()).await, "unmatched");
        assert_eq!(api.tokens_spent(), 20, "no search while nobody writes");

        // The customer writes again: looked up again, linked, and the whole day backfilled.
        tokio::time::sleep(Duration::from_millis(5)).await;
        receive(&store, "m2", "c1", CUSTOMER, "Alguém aí?", "2026-11-23T12:20:00Z").await;
        mirror.settle().await;
        let link = store.mirror_link("wa", "c1").await.unwrap().unwrap();
        assert_eq!((link.state.as_str(), link.target.map(|t| t.person_id)), ("linked", Some(ana)));
        let notes = api.notes();
        assert_eq!(notes.len(), 1, "{notes:#?}");
        assert!(notes[0].content.contains("Olá") && notes[0].content.contains("Alguém aí?"), "{}", notes[0].content);
        store.close().await;
    }

    async fn a_look_up_pipedrive_refuses_waits_as_unmatched_and_the_others_go_on(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        api.add_person("Bia Souza", &["+55 44 99999-0002"], &[]);
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "Olá", "2026-11-23T12:14:00Z").await;
        receive(&store, "m2", "c2", "5544999990002@s.whatsapp.net", "Oi", "2026-11-23T12:15:00Z").await;
        // The first search is refused (a 400, as for a term Pipedrive rejects).
        api.arm(Route::PersonsSearch, Fault::Status(400));
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        let mut states = Vec::new();
        for conversation in ["c1", "c2"] {
            states.push(store.mirror_link("wa", conversation).await.unwrap().unwrap().state);
        }
        states.sort();
        assert_eq!(states, ["linked", "unmatched"], "one refused, the other linked");
        assert_eq!(api.notes_created(), 1);
        store.close().await;
    }

    async fn a_budget_at_the_floor_stops_every_call_and_the_messages_wait(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);

        // Others spent the company's day down to the floor (25% of 300,000 left).
        api.spend_elsewhere(300_000 - 75_000 - api.tokens_spent());
        receive(&store, "m2", "c1", CUSTOMER, "again", "2026-11-23T12:20:00Z").await;
        mirror.settle().await; // learns the remaining budget from an answer
        let calls = api.tokens_spent();
        receive(&store, "m3", "c1", CUSTOMER, "and again", "2026-11-23T12:25:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(api.tokens_spent(), calls, "stopped at the floor: no call");
        let segment = &store.mirror_segments("wa", "c1").await.unwrap()[0];
        assert!(segment.dirty_since_ms.is_some(), "the messages wait, safe");
        store.close().await;
    }

    async fn a_429_waits_for_its_reset_and_a_spent_day_stops_every_call(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, SALES).await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;

        // Another client spent the burst window: the POST is refused (nothing made) and tried
        // again after the reset, once.
        api.arm(Route::NotesAdd, Fault::TooManyRequests { reset_seconds: 1 });
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 0);
        let waiting = &store.mirror_segments("wa", "c1").await.unwrap()[0];
        assert_eq!(waiting.state, SegmentState::Open, "a 429 made nothing: no reconciliation needed");
        assert!(waiting.last_error.as_deref().unwrap_or_default().contains("rate limit"), "{waiting:?}");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);
        assert_eq!(api.calls(Route::NotesAdd), 2);
        assert_eq!(api.calls(Route::NotesList), 0);

        // The company's day is spent (Pipedrive answers 429 for the budget): nothing more is
        // called today; the messages wait.
        api.set_daily_token_limit(api.tokens_spent() + 1);
        receive(&store, "m2", "c1", CUSTOMER, "again", "2026-11-23T12:20:00Z").await;
        mirror.settle().await;
        let calls = api.tokens_spent();
        receive(&store, "m3", "c1", CUSTOMER, "and again", "2026-11-23T12:30:00Z").await;
        receive(&store, "m4", "c2", CUSTOMER, "a new one", "2026-11-23T12:30:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(api.tokens_spent(), calls, "no call after the budget's 429");
        assert!(store.mirror_link("wa", "c2").await.unwrap().is_none(), "not even a look-up");
        assert!(!api.note(api.notes()[0].id).unwrap().content.contains("and again"));
        store.close().await;
    }
}
