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
//! # Parts
//!
//! - [`worker`]: the loop, inside the hub (`serve --mirror`) or alone (`pdchannels mirror`).
//! - [`intake`]: what the hub stored or changed since its cursor → the segments to write.
//! - [`lookup`]: a conversation → the person, and deal or lead, its notes go to.
//! - [`flush`]: the write protocol of one segment (create, reconcile, edit guard, rollover).
//! - [`ledger`]: the day's token budget, kept in the store.
//! - [`source`]: the store's conversations and messages as the renderer takes them.
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
//! The durable state (links, segments, the day's ledger, the intake's cursor) is the store's
//! (`pdchannels_store::Store::mirror_*`), in both backends. Tests run against
//! `pdchannels_testkit::pipedrive_api`, a fixture of the same endpoints that keeps to Pipedrive's
//! documented contract (limits, budgets, sanitising, faults).

#![warn(missing_docs)]

pub mod budget;
pub mod flush;
pub mod intake;
pub mod ledger;
pub mod lookup;
pub mod marker;
pub mod matching;
pub mod pipedrive;
pub mod render;
pub mod source;
pub mod worker;
