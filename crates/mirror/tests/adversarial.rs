//! An outside tester's attacks on the notes mirror (issue 13): lost answers when the company
//! refuses `add_time`, lost answers of a rewrite, huge days and huge messages, relinking to
//! another person, two mirrors on one database, far-off dates, odd time zones (Kathmandu, Samoa's
//! skipped day, a changed `--time-zone`), a message moved to another day, a replay after a
//! restart, a proxy's 502 and 404, injection, and the token in errors and `Debug`. Each test
//! asserts what should hold. Ten of them found defects, all fixed since (a duplicate note after a
//! lost POST without `add_time` or across a relink, a lost PUT taken for a person's edit, another
//! time zone moving messages between notes, a message in two notes after its `created_at` moved,
//! Samoa's lost hours, an HTML 404 sealing a note, attachments lost when a message is cut).

#![warn(clippy::pedantic)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDate;
use pdchannels_mirror::matching::SearchQuery;
use pdchannels_mirror::render::{
    self, Attachment, ConversationInfo, Message, RenderOptions, Sender,
};
use pdchannels_mirror::worker::Mirror;
use pdchannels_model::{Channels, Limits, ReceiveMessage};
use pdchannels_store::{MirrorTarget, SegmentState};
use pdchannels_testkit::pipedrive_api::{API_TOKEN, Fault, PipedriveApi, Route};
use serde_json::json;

mod common;

use common::{CUSTOMER, Running, channel, client, config, receive};

/// How many of the notes hold `needle`, and how often in all.
fn occurrences(api: &PipedriveApi, needle: &str) -> usize {
    api.notes()
        .iter()
        .map(|n| n.content.matches(needle).count())
        .sum()
}

fn link(person_id: i64) -> MirrorTarget {
    MirrorTarget {
        person_id,
        ..MirrorTarget::default()
    }
}

/// `on_both_backends!` with attributes (`#[ignore = "defect: ..."]`) passed to both tests.
macro_rules! both_backends {
    ($($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: pdchannels_testkit::TestDatabase) $body

            #[tokio::test]
            $(#[$attr])*
            async fn sqlite() {
                run(pdchannels_testkit::TestDatabase::sqlite()).await;
            }

            #[tokio::test]
            $(#[$attr])*
            async fn postgres() {
                if let Some(db) = pdchannels_testkit::TestDatabase::postgres().await {
                    run(db).await;
                }
            }
        }
    )*};
}

both_backends! {
    // A company that refuses `add_time` (non-admin token, research §7) gets notes stamped with
    // the time they are written. A backfilled day's note then has an `add_time` far from its
    // day, and the reconciliation after a lost answer looks only at day±1: it must still find
    // the note rather than post a second one.
    async fn a_lost_answer_is_reconciled_when_the_company_refuses_add_time(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        api.refuse_add_time(true);
        channel(&store, "WhatsApp: Sales").await;
        // A first note teaches the mirror that add_time is refused.
        receive(&store, "m0", "c0", CUSTOMER, "zero", "2026-10-01T12:00:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);

        // A conversation of an older day: its POST is carried out, the answer lost.
        api.arm(Route::NotesAdd, Fault::LoseAnswer);
        receive(&store, "m1", "c1", CUSTOMER, "an old day", "2026-10-02T12:00:00Z").await;
        mirror.settle().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(occurrences(&api, "an old day"), 1, "{:#?}", api.notes());
        assert_eq!(api.notes_created(), 2, "no second POST for the lost answer");
        store.close().await;
    }

    // A PUT whose answer is lost after Pipedrive applied it: our own write changed the note's
    // update_time, so the next edit guard must not take it for a person's edit (sealing it and
    // writing its messages a second time in a continuation).
    async fn a_lost_answer_to_a_rewrite_neither_seals_nor_duplicates(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "first words", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);

        api.advance_clock(5); // the rewrite lands in a later second
        receive(&store, "m2", "c1", CUSTOMER, "second words", "2026-11-23T12:20:00Z").await;
        api.arm(Route::NoteUpdate, Fault::LoseAnswer);
        mirror.settle().await;
        // The failed PUT is tried again after 5 s.
        tokio::time::sleep(Duration::from_millis(5_300)).await;
        receive(&store, "m3", "c1", CUSTOMER, "third words", "2026-11-23T12:25:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        for text in ["first words", "second words", "third words"] {
            assert_eq!(occurrences(&api, text), 1, "{text}: {:#?}", api.notes());
        }
        assert_eq!(api.notes_created(), 1, "our own PUT is no person's edit: {:#?}", api.notes());
        let states: Vec<SegmentState> = store
            .mirror_segments("wa", "c1").await.unwrap().iter().map(|s| s.state).collect();
        assert_eq!(states, [SegmentState::Live]);
        store.close().await;
    }

    // The same with a PUT that times out after Pipedrive applied it (Delay past the client's
    // timeout).
    async fn a_rewrite_that_timed_out_after_it_was_applied_neither_seals_nor_duplicates(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "first words", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        api.advance_clock(5);
        receive(&store, "m2", "c1", CUSTOMER, "second words", "2026-11-23T12:20:00Z").await;
        api.arm(Route::NoteUpdate, Fault::Delay(Duration::from_secs(2)));
        mirror.settle().await;
        // The failed PUT is tried again after 5 s.
        tokio::time::sleep(Duration::from_millis(5_300)).await;
        receive(&store, "m3", "c1", CUSTOMER, "third words", "2026-11-23T12:25:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        for text in ["first words", "second words", "third words"] {
            assert_eq!(occurrences(&api, text), 1, "{text}: {:#?}", api.notes());
        }
        assert_eq!(api.notes_created(), 1, "{:#?}", api.notes());
        store.close().await;
    }

    // Hundreds of kilobytes in one day: continuation notes, no message lost or written twice,
    // no note over the size limit; a message sent later with an early time goes in once too.
    async fn a_day_that_rolls_over_holds_every_message_exactly_once(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        let filler = "x".repeat(3_000);
        for i in 0..60 {
            let at = format!("2026-11-23T{:02}:{:02}:00Z", 10 + i / 60, i % 60);
            receive(&store, &format!("m{i}"), "c1", CUSTOMER, &format!("<msg-{i:03}> {filler}"), &at).await;
        }
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        for _ in 0..6 {
            mirror.settle().await;
        }
        receive(&store, "late", "c1", CUSTOMER, &format!("<msg-late> {filler}"), "2026-11-23T10:00:30Z").await;
        for i in 60..80 {
            let at = format!("2026-11-23T11:{:02}:00Z", i - 60);
            receive(&store, &format!("m{i}"), "c1", CUSTOMER, &format!("<msg-{i:03}> {filler}"), &at).await;
        }
        for _ in 0..6 {
            mirror.settle().await;
        }
        let notes = api.notes();
        assert!(notes.len() >= 4, "{}", notes.len());
        for note in &notes {
            assert!(note.content.len() <= 65_000, "a note of {} bytes", note.content.len());
        }
        let mut missing = Vec::new();
        let mut twice = Vec::new();
        for tag in (0..80).map(|i| format!("&lt;msg-{i:03}&gt;")).chain(["&lt;msg-late&gt;".to_owned()]) {
            match occurrences(&api, &tag) {
                1 => {}
                0 => missing.push(tag),
                _ => twice.push(tag),
            }
        }
        assert!(missing.is_empty() && twice.is_empty(), "missing {missing:?}, twice {twice:?}");
        let segments = store.mirror_segments("wa", "c1").await.unwrap();
        assert!(segments.iter().all(|s| s.dirty_since_ms.is_none()), "{segments:#?}");
        store.close().await;
    }

    // A message alone larger than a note (64 KB of `&`, escaped five-fold) with an attachment,
    // under a channel name of 1,024 quotes: one note, under the size limit, and the rounds go on.
    async fn one_message_larger_than_a_note_is_cut_not_stuck(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, &"\"".repeat(1_024)).await;
        let message = ReceiveMessage::parse(
            &json!({"id": "big", "channel_id": "wa", "conversation_id": "c1",
                    "sender_id": CUSTOMER, "message": "&".repeat(64 * 1024), "status": "sent",
                    "created_at": "2026-11-23T12:14:00Z",
                    "attachments": [{"id": "a1", "type": "application/pdf", "name": "invoice.pdf",
                                     "url": "https://example.com/invoice.pdf", "size": 1000}]}),
            &Limits::default(),
        )
        .unwrap();
        store.receive_message(message).await.unwrap();
        receive(&store, "small", "c1", CUSTOMER, "after the big one", "2026-11-23T12:15:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        for _ in 0..4 {
            mirror.settle().await;
        }
        let notes = api.notes();
        assert!(!notes.is_empty());
        for note in &notes {
            assert!(note.content.len() <= 65_000, "a note of {} bytes", note.content.len());
        }
        assert_eq!(occurrences(&api, "after the big one"), 1, "{notes:#?}");
        let segments = store.mirror_segments("wa", "c1").await.unwrap();
        assert!(segments.iter().all(|s| s.dirty_since_ms.is_none()), "{segments:#?}");
        store.close().await;
    }

    // Relinked by hand to another person: the old person's note is never written again; what
    // follows goes to the new person.
    async fn relinking_to_another_person_never_writes_to_the_old_persons_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        let bea = api.add_person("Bea Souza", &[], &["bea@example.com"]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "for ana", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        let first = api.notes()[0].clone();
        assert_eq!(first.person_id, Some(ana));

        store.mirror_link_manually("wa", "c1", link(bea)).await.unwrap();
        receive(&store, "m2", "c1", CUSTOMER, "for bea", "2026-11-23T13:00:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        let old = api.note(first.id).unwrap();
        assert_eq!(old.content, first.content, "the old person's note is left alone");
        assert_eq!(old.person_id, Some(ana));
        let beas: Vec<_> = api.notes().into_iter().filter(|n| n.person_id == Some(bea)).collect();
        assert_eq!(beas.len(), 1, "{:#?}", api.notes());
        assert!(beas[0].content.contains("for bea"));

        // Unlinked, then linked to Ana again: Bea's note is not touched either.
        store.mirror_unlink("wa", "c1").await.unwrap();
        store.mirror_link_manually("wa", "c1", link(ana)).await.unwrap();
        let beas_note = api.note(beas[0].id).unwrap();
        receive(&store, "m3", "c1", CUSTOMER, "ana again", "2026-11-23T14:00:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(api.note(beas[0].id).unwrap().content, beas_note.content);
        assert_eq!(occurrences(&api, "ana again"), 1);
        assert!(api.notes().iter().any(|n| n.person_id == Some(ana) && n.content.contains("ana again")));
        store.close().await;
    }

    // A conversation already mirrored to Ana and then linked by hand to Bea: the days already
    // written stay on Ana (README), and what comes after goes to Bea, never to Ana's notes.
    async fn a_conversation_relinked_by_hand_goes_on_on_the_new_person(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        let bea = api.add_person("Bea Souza", &[], &["bea@example.com"]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "monday", "2026-11-23T12:14:00Z").await;
        receive(&store, "m2", "c1", CUSTOMER, "tuesday", "2026-11-24T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 2);

        store.mirror_link_manually("wa", "c1", link(bea)).await.unwrap();
        receive(&store, "m3", "c1", CUSTOMER, "tuesday later", "2026-11-24T15:00:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        let notes = api.notes();
        assert!(notes.iter().filter(|n| n.person_id == Some(ana)).all(|n| !n.content.contains("tuesday later")), "{notes:#?}");
        assert!(notes.iter().any(|n| n.person_id == Some(bea) && n.content.contains("tuesday later")), "{notes:#?}");
        for text in ["monday", "tuesday later"] {
            assert_eq!(occurrences(&api, text), 1, "{text}: {notes:#?}");
        }
        store.close().await;
    }

    // A POST to Ana whose answer is lost, then the conversation is relinked by hand to Bea
    // before the reconciliation: the note Ana got is the segment's note (its marker is in it).
    // The segment must not be posted a second time (to Bea) while that note exists: one note per
    // marker.
    async fn a_relink_while_a_post_is_uncertain_makes_no_second_note_for_the_segment(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        let bea = api.add_person("Bea Souza", &[], &["bea@example.com"]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        api.arm(Route::NotesAdd, Fault::LoseAnswer);
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        for _ in 0..5 {
            if api.notes_created() > 0 {
                break;
            }
            mirror.mirror.round(&mut mirror.intake, &mut mirror.ledger).await.unwrap();
        }
        assert_eq!(api.notes_created(), 1);
        assert_eq!(api.notes()[0].person_id, Some(ana));
        let segment = store.mirror_segments("wa", "c1").await.unwrap()[0].clone();
        assert_eq!(segment.state, SegmentState::Uncertain);

        store.mirror_link_manually("wa", "c1", link(bea)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        mirror.settle().await;
        mirror.settle().await;
        let needle = format!("seg {}", segment.marker);
        let carrying: Vec<_> = api.notes().into_iter().filter(|n| n.content.contains(&needle)).collect();
        assert_eq!(carrying.len(), 1, "one note per segment: {carrying:#?}");
        assert_eq!(occurrences(&api, "hello"), 1, "{:#?}", api.notes());
        store.close().await;
    }

    // A careless restart with another --time-zone (or two mirrors with different zones on one
    // database) would write the days already written again under the new zone's day bounds: it
    // is refused, with the zone the database's notes use, and nothing is written.
    async fn a_restart_with_another_time_zone_is_refused_and_writes_nothing(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        // 01:00 UTC on the 23rd is the 22nd in São Paulo.
        receive(&store, "m1", "c1", CUSTOMER, "late on the 22nd", "2026-11-23T01:00:00Z").await;
        receive(&store, "m2", "c1", CUSTOMER, "noon on the 23rd", "2026-11-23T12:00:00Z").await;
        let mut sao_paulo = Running::new(&store, &api, "hub-a").await;
        sao_paulo.settle().await;
        assert_eq!(api.notes_created(), 2);
        drop(sao_paulo);

        let mut utc = Mirror::new(store.clone(), client(&api), config(chrono_tz::UTC, Duration::from_millis(300)))
            .with_owner("hub-a");
        let refused = utc.start().await.expect_err("another time zone is refused");
        assert!(refused.to_string().contains("--time-zone America/Sao_Paulo"), "{refused}");
        let spent = api.tokens_spent();
        receive(&store, "m3", "c1", CUSTOMER, "evening on the 23rd", "2026-11-23T20:00:00Z").await;
        utc.run(tokio_util::sync::CancellationToken::new()).await; // returns at once
        assert_eq!(api.tokens_spent(), spent);
        for text in ["late on the 22nd", "noon on the 23rd"] {
            assert_eq!(occurrences(&api, text), 1, "{text}: {:#?}", api.notes());
        }
        store.close().await;
    }

    // Two mirrors on one database, at once, with slow answers and a lost one: exactly one note
    // per conversation-day.
    async fn two_mirrors_at_once_make_exactly_one_note_per_segment(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        for c in 0..12 {
            let conversation = format!("c{c}");
            receive(&store, &format!("m{c}a"), &conversation, CUSTOMER, &format!("<conv-{c:02}-a>"), "2026-11-23T12:14:00Z").await;
            receive(&store, &format!("m{c}b"), &conversation, CUSTOMER, &format!("<conv-{c:02}-b>"), "2026-11-24T12:14:00Z").await;
            store.mirror_record_match("wa", &conversation, pdchannels_store::MirrorMatch::Linked(link(ana))).await.unwrap();
        }
        api.set_answer_latency(Duration::from_millis(30));
        api.arm(Route::NotesAdd, Fault::LoseAnswer);
        let cfg = config(chrono_tz::America::Sao_Paulo, Duration::from_secs(3));
        let mut a = Running::with(&store, &api, "hub-a", cfg.clone()).await;
        let mut b = Running::with(&store, &api, "hub-b", cfg).await;
        for _ in 0..3 {
            tokio::join!(a.settle(), b.settle());
        }
        for c in 0..12 {
            for part in ["a", "b"] {
                let tag = format!("&lt;conv-{c:02}-{part}&gt;");
                assert_eq!(occurrences(&api, &tag), 1, "{tag}");
            }
        }
        assert_eq!(api.notes_created(), 24);
        store.close().await;
    }

    // The last instant the store takes, in a zone that pushes it into year 10000: written (or
    // at least never stopping the others), and the rounds succeed.
    async fn the_last_instant_in_kiritimati_is_written(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "late", CUSTOMER, "year ten thousand", "9999-12-31T23:30:00Z").await;
        receive(&store, "m3", "now", CUSTOMER, "today", "2026-11-23T12:00:00Z").await;
        for c in ["late", "now"] {
            store.mirror_record_match("wa", c, pdchannels_store::MirrorMatch::Linked(link(ana))).await.unwrap();
        }
        let zone = chrono_tz::Pacific::Kiritimati;
        let mut mirror = Running::with(&store, &api, "hub-a", config(zone, Duration::from_millis(300))).await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(occurrences(&api, "today"), 1);
        assert_eq!(occurrences(&api, "year ten thousand"), 1, "{:#?} {:#?}", api.notes(), store.mirror_segments("wa", "late").await.unwrap());
        store.close().await;
    }

    // The first instant the store takes, in a zone that puts it on local day 0000-12-31.
    async fn the_first_instant_in_pago_pago_is_written(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        let ana = api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m2", "early", CUSTOMER, "year zero", "0001-01-01T00:30:00Z").await;
        receive(&store, "m3", "now", CUSTOMER, "today", "2026-11-23T12:00:00Z").await;
        for c in ["early", "now"] {
            store.mirror_record_match("wa", c, pdchannels_store::MirrorMatch::Linked(link(ana))).await.unwrap();
        }
        let zone = chrono_tz::Pacific::Pago_Pago;
        let mut mirror = Running::with(&store, &api, "hub-a", config(zone, Duration::from_millis(300))).await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(occurrences(&api, "today"), 1);
        assert_eq!(occurrences(&api, "year zero"), 1, "{:#?} {:#?}", api.notes(), store.mirror_segments("wa", "early").await.unwrap());
        store.close().await;
    }

    // Samoa skipped 2011-12-30 (from UTC-10 to UTC+14): the last ten hours of its 29th
    // (2011-12-30T00:00Z to 10:00Z) must still be in the 29th's note (an imported history).
    async fn the_day_before_samoas_skipped_day_holds_all_its_hours(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "morning of the 29th", "2011-12-29T20:00:00Z").await;
        receive(&store, "m2", "c1", CUSTOMER, "evening of the 29th", "2011-12-30T05:00:00Z").await;
        let mut mirror = Running::with(&store, &api, "hub-a", config(chrono_tz::Pacific::Apia, Duration::from_millis(300))).await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(occurrences(&api, "morning of the 29th"), 1, "{:#?}", api.notes());
        assert_eq!(occurrences(&api, "evening of the 29th"), 1, "{:#?}", api.notes());
        store.close().await;
    }

    // The same message id received again with another created_at (a provider's correction, a
    // careless import): wherever the store keeps it, it is in exactly one note.
    async fn a_message_received_again_on_another_day_is_in_one_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m0", "c1", CUSTOMER, "stays on the 23rd", "2026-11-23T12:00:00Z").await;
        receive(&store, "m1", "c1", CUSTOMER, "moving message", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        receive(&store, "m1", "c1", CUSTOMER, "moving message", "2026-11-25T12:14:00Z").await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(occurrences(&api, "moving message"), 1, "{:#?}", api.notes());
        store.close().await;
    }

    // A restart (a new process: a fresh intake from the stored cursor), then a replayed receive
    // and a status change of written messages: no call, no token.
    async fn a_replay_after_a_restart_costs_nothing(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        receive(&store, "m2", "c1", "wa", "hi!", "2026-11-23T12:15:00Z").await;
        let mut first = Running::new(&store, &api, "hub-a").await;
        first.settle().await;
        let spent = api.tokens_spent();
        drop(first);

        let mut second = Running::new(&store, &api, "hub-b").await;
        second.settle().await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        let read = ReceiveMessage::parse(
            &json!({"id": "m2", "channel_id": "wa", "conversation_id": "c1",
                    "sender_id": "wa", "message": "hi!", "status": "read",
                    "created_at": "2026-11-23T12:15:00Z"}),
            &Limits::default(),
        )
        .unwrap();
        store.receive_message(read).await.unwrap();
        second.settle().await;
        second.settle().await;
        assert_eq!(api.tokens_spent(), spent, "a replay and a status change cost nothing");
        assert_eq!(api.notes_created(), 1);
        store.close().await;
    }

    // A proxy's HTML 404 page in front of Pipedrive (not Pipedrive's JSON answer for a deleted
    // note) on the edit guard's read: the note is not known to be gone, so it must not be sealed;
    // the day stays in one note.
    async fn a_proxys_html_404_does_not_seal_a_live_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "first words", "2026-11-23T12:14:00Z").await;
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        api.arm(Route::NoteGet, Fault::Status(404));
        receive(&store, "m2", "c1", CUSTOMER, "second words", "2026-11-23T12:20:00Z").await;
        mirror.settle().await;
        // A failed read is tried again after 5 s.
        tokio::time::sleep(Duration::from_millis(5_300)).await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1, "{:#?}", api.notes());
        assert!(api.notes()[0].content.contains("second words"));
        let states: Vec<SegmentState> = store
            .mirror_segments("wa", "c1").await.unwrap().iter().map(|s| s.state).collect();
        assert_eq!(states, [SegmentState::Live]);
        store.close().await;
    }

    // Local midnight in a zone 5:45 ahead of UTC: the last and first millisecond of two days go
    // to two notes, with the local times shown.
    async fn a_day_boundary_in_kathmandu_splits_exactly_at_local_midnight(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "before midnight", "2026-11-23T18:14:59.999Z").await;
        receive(&store, "m2", "c1", CUSTOMER, "after midnight", "2026-11-23T18:15:00Z").await;
        let mut mirror = Running::with(&store, &api, "hub-a", config(chrono_tz::Asia::Kathmandu, Duration::from_millis(300))).await;
        mirror.settle().await;
        let notes = api.notes();
        assert_eq!(notes.len(), 2, "{notes:#?}");
        let before = notes.iter().find(|n| n.content.contains("before midnight")).unwrap();
        let after = notes.iter().find(|n| n.content.contains("after midnight")).unwrap();
        assert!(before.content.contains("2026-11-23") && before.content.contains("23:59"), "{}", before.content);
        assert!(after.content.contains("2026-11-24") && after.content.contains("00:00"), "{}", after.content);
        assert!(!before.content.contains("after midnight"));
        store.close().await;
    }

    // Pipedrive (or a proxy in front of it) answers an HTML 502 to the POST without doing it:
    // the outcome is unknown, so the next attempt looks for the marker first, finds none, and
    // posts once. Exactly one note, nothing lost.
    async fn a_502_to_the_post_ends_in_exactly_one_note(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        api.arm(Route::NotesAdd, Fault::Status(502));
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        mirror.settle().await;
        assert_eq!(api.notes_created(), 1);
        assert_eq!(api.calls(Route::NotesList), 1, "reconciled before the second POST");
        assert_eq!(occurrences(&api, "hello"), 1);
        let segment = &store.mirror_segments("wa", "c1").await.unwrap()[0];
        assert_eq!(segment.state, SegmentState::Live);
        store.close().await;
    }

    // 401 and an HTML 403: the token is in no error, no stored error, no Debug.
    async fn the_token_is_in_no_error_stored_error_or_debug(db) {
        let store = db.open().await;
        let api = PipedriveApi::start().await;
        api.add_person("Ana Silva", &["+55 44 99999-0001"], &[]);
        channel(&store, "WhatsApp: Sales").await;
        receive(&store, "m1", "c1", CUSTOMER, "hello", "2026-11-23T12:14:00Z").await;
        let client = client(&api);
        assert!(!format!("{client:?}").contains(API_TOKEN));
        let mut texts = Vec::new();
        for status in [401, 403, 500, 302] {
            api.arm(Route::PersonsSearch, Fault::Status(status));
            let query = SearchQuery {
                term: "44999990001".to_owned(),
                field: "phone",
                exact_match: false,
            };
            let error = client.search_persons(&query, 10).await.unwrap_err();
            texts.push(format!("{error} {error:?}"));
        }
        let mut mirror = Running::new(&store, &api, "hub-a").await;
        mirror.settle().await;
        api.arm(Route::NotesAdd, Fault::Status(401));
        receive(&store, "m2", "c2", CUSTOMER, "again", "2026-11-23T12:15:00Z").await;
        mirror.settle().await;
        texts.push(format!("{:?}", mirror.mirror));
        for c in ["c1", "c2"] {
            for s in store.mirror_segments("wa", c).await.unwrap() {
                texts.push(format!("{s:?}"));
            }
        }
        for text in texts {
            assert!(!text.contains(API_TOKEN), "{text}");
        }
        store.close().await;
    }
}

fn sender(name: &str, is_company: bool) -> Sender {
    Sender {
        name: name.to_owned(),
        is_company,
    }
}

/// Script in every field a customer or an app controls: nothing comes out as markup.
#[test]
fn nothing_a_customer_controls_becomes_markup() {
    let evil = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let conversation = ConversationInfo {
        channel_id: evil.to_owned(),
        channel_name: evil.to_owned(),
        provider: evil.to_owned(),
        conversation_id: evil.to_owned(),
        participant_name: Some(evil.to_owned()),
        participant_id: evil.to_owned(),
    };
    let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
        .unwrap()
        .to_utc();
    let urls = [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "https://x.example/\"onmouseover=\"alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://x.example/<script>",
    ];
    let messages: Vec<Message> = (0..2)
        .map(|i| Message {
            id: format!("{evil}{i}"),
            sender: sender(evil, i == 1),
            created_at: at,
            text: format!("{evil}\n{evil}\r\n&amp;"),
            attachments: urls
                .iter()
                .map(|url| Attachment {
                    name: Some(evil.to_owned()),
                    url: (*url).to_owned(),
                    mime_type: evil.to_owned(),
                    size: Some(10),
                })
                .collect(),
            edited: false,
            deleted: false,
        })
        .collect();
    let mut options = RenderOptions::new(chrono_tz::Europe::London);
    for max in [60_000, 900] {
        options.max_note_bytes = max;
        for note in render::render_day(&conversation, day, 0, &messages, &options) {
            let html = note.html.to_ascii_lowercase();
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("href=\"javascript"), "{html}");
            assert!(!html.contains("href=\" javascript"), "{html}");
            assert!(!html.contains("href=\"data"), "{html}");
            assert!(!html.contains("\"onmouseover"), "{html}");
            // Only the tags the renderer itself uses.
            let mut tags: HashMap<String, usize> = HashMap::new();
            for piece in html.split('<').skip(1) {
                let name: String = piece
                    .trim_start_matches('/')
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                *tags.entry(name).or_default() += 1;
            }
            for tag in tags.keys() {
                assert!(
                    ["p", "b", "i", "ul", "li", "br", "a", "small"].contains(&tag.as_str()),
                    "tag {tag:?} in {html}"
                );
            }
        }
    }
}

/// A message alone bigger than the note: cut, but its attachments' links must not be lost
/// without a word (the note says what was cut).
#[test]
fn a_cut_message_keeps_its_attachments() {
    let conversation = ConversationInfo {
        channel_id: "wa".to_owned(),
        channel_name: "WhatsApp: Sales".to_owned(),
        provider: "whatsapp".to_owned(),
        conversation_id: "c1".to_owned(),
        participant_name: None,
        participant_id: CUSTOMER.to_owned(),
    };
    let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let message = Message {
        id: "big".to_owned(),
        sender: sender("Ana", false),
        created_at: chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .to_utc(),
        text: "y".repeat(70_000),
        attachments: vec![Attachment {
            name: Some("invoice.pdf".to_owned()),
            url: "https://example.com/invoice.pdf".to_owned(),
            mime_type: "application/pdf".to_owned(),
            size: Some(1000),
        }],
        edited: false,
        deleted: false,
    };
    let notes = render::render_day(
        &conversation,
        day,
        0,
        &[message],
        &RenderOptions::new(chrono_tz::UTC),
    );
    assert_eq!(notes.len(), 1);
    assert!(notes[0].html.len() <= render::DEFAULT_MAX_NOTE_BYTES);
    assert!(
        notes[0].html.contains("invoice.pdf"),
        "the attachment vanished from a cut message"
    );
}
