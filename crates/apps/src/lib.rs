//! Pipedrive's side of the messaging-manifest contract: the hub calls provider apps back.
//!
//! # Layout
//!
//! - [`call`]: one call to an app as Pipedrive made it (Basic auth, encoded ids, no redirect to
//!   another host, a capped answer), and what the answer means, read leniently.
//! - [`conversation`]: an app's conversation object, read leniently; its messages validated as
//!   receives.
//! - [`send`]: a reply through the channel's app (postMessage), stored first, never sent twice
//!   on its own.
//! - [`worker`]: the background reads (a new channel's sync, a new conversation's details),
//!   through the store's durable queue of app calls.

pub mod call;
pub mod conversation;
pub mod send;
pub mod worker;

pub use call::{Answer, AppClient, Called, Refusal};
pub use send::{Reply, SendError, Sent, send_reply};
pub use worker::{Worker, start_sync};
