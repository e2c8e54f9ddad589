//! The notes mirror: every conversation the hub holds, written into live Pipedrive as notes on
//! the person and the deal or lead it belongs to, through supported endpoints only, with no
//! duplicate note, within the company's token budget (issue 13).
//!
//! Design (research `notes-mirror.md` §6): one HTML note per conversation per local day (a
//! *segment*), created by `POST /v1/notes` and rewritten whole by `PUT /v1/notes/{id}` after
//! quiet spells, rolled over into a continuation before Pipedrive's size limit, and carrying a
//! visible marker so that an unknown outcome is reconciled by looking for it before any second
//! POST.
//!
//! # What exists
//!
//! - [`render`]: a conversation-day's messages → the note's HTML (escaped, the company's time
//!   zone, attachments as links, the marker in the footer, rollover).
//! - [`marker`]: segment keys (`channel/conversation/day/seq`) and their markers.
//! - [`matching`]: participant id → phone number or e-mail → person search → linked, ambiguous
//!   or unmatched.
//! - [`pipedrive`]: a typed client for the eight endpoints, with pacing from the rate-limit
//!   headers and errors that say whether a call may have taken effect.
//! - [`budget`]: the token cost of each call, the mirror's share of the daily budget
//!   (`--mirror-budget`), quiet periods that grow under pressure, and the floor where it stops.
//!
//! Tests run the client against `pdchannels_testkit::pipedrive_api`, a fixture of the same
//! endpoints that keeps to Pipedrive's documented contract (limits, budgets, sanitising, faults).
//!
//! # Still to build
//!
//! - Store tables in both backends (research §6.2): `mirror_link` (conversation → person, deal
//!   or lead; parked with candidates), `mirror_segment` (segment key, note id, state
//!   `open|creating|uncertain|live|sealed`, rendered hash, `update_time`/`last_update_user_id`
//!   as last written), `mirror_msg` (which message is in which segment), and the day's ledger of
//!   tokens spent.
//! - The worker: durable flush jobs in the outbox (never inline with a receive); the write
//!   protocol of §6.4 (`creating` persisted before the POST; an [`pipedrive::Outcome::Unknown`]
//!   goes `uncertain` and is reconciled with [`pipedrive::PipedriveClient::find_note_by_marker`]);
//!   the edit guard of §6.5 (a note whose `update_time` or `last_update_user_id` is not the
//!   mirror's is sealed and the mirror continues in `seq + 1`); backfill of parked days once
//!   linked; the budget's pace applied to flush timing; metrics.
//! - The CLI: `pdchannels mirror` and `serve --mirror` (credentials as the relay takes them, the
//!   company's time zone and calling code, `--mirror-budget`), `mirror link`, `mirror pending`,
//!   `mirror status`, and the read-API route for linking.

#![warn(missing_docs)]

pub mod budget;
pub mod marker;
pub mod matching;
pub mod pipedrive;
pub mod render;
