//! Pipedrive's side of the messaging-manifest contract: the hub calls provider apps back.
//!
//! # Layout
//!
//! - [`call`]: one call to an app as Pipedrive made it (Basic auth, encoded ids, no redirect to
//!   another host, a capped answer), and what the answer means, read leniently.
//! - [`conversation`]: an app's conversation object, read leniently; its messages validated as
//!   receives.
//! - [`delete`]: deleteChannelById, when a person deletes a channel.
//! - [`fresh_links`]: getMessageById, for attachments whose links expire, when asked for.
//! - [`older`]: a conversation's older messages, asked of its app when a reader wants them.
//! - [`send`]: a reply through the channel's app (postMessage), stored first, never sent twice
//!   on its own.
//! - [`sender`]: getSenderById, when the app flagged a participant, read leniently.
//! - [`templates`]: getTemplates, kept 10 minutes per channel.
//! - [`worker`]: the background reads (a new channel's sync, a new conversation's details),
//!   through the store's durable queue of app calls.

pub mod call;
pub mod conversation;
pub mod delete;
pub mod fresh_links;
pub mod older;
pub mod send;
pub mod sender;
pub mod templates;
mod turns;
pub mod worker;

pub use call::{Answer, AppClient, Called, Refusal};
pub use delete::{AppDeletion, tell_app_channel_deleted};
pub use fresh_links::{FreshLinks, Refreshed};
pub use older::{Older, fetch_older};
pub use send::{Reply, SendError, Sent, send_reply};
pub use templates::{Template, Templates, TemplatesError};
pub use worker::{Worker, start_sync};
