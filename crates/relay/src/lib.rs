//! The relay: delivers to a remote Channels API (Pipedrive's, or another hub's) through the
//! durable outbox, losing nothing.
//!
//! # Layout
//!
//! - [`Relay`]: the worker. Claims the oldest pending call of each conversation, sends it with
//!   the client, then records delivered, retry at, or dead; `run(shutdown)` loops until
//!   cancelled (every command, one-shot or not, runs it).
//! - [`RelayedChannels`]: the Channels operations over the outbox; each call is durable before
//!   it is sent, and its caller waits for the real answer up to the delivery timeout.
//! - [`Delivery`]: local store or upstream, for the MCP tools and HTTP routes.
//! - [`CommandLine`]: the commands the relay suggests, ready to paste (`--db` when needed).
//! - `queued_reason`: why a call is not delivered yet, for its caller.
//! - `backoff`: jittered exponential delays.

#![warn(missing_docs)]

mod backoff;
mod command_line;
mod delivery;
mod queued_reason;
mod relay;
mod relayed;

pub use command_line::CommandLine;
pub use delivery::Delivery;
pub use relay::{GIVE_UP_AFTER, Progress, Relay, RelayConfig};
pub use relayed::RelayedChannels;
