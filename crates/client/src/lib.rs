//! A typed async client for any Channels API: Pipedrive's (while it answers) or a pdchannels hub.
//!
//! # Layout
//!
//! - [`ChannelsClient`]: `builder(base_url)`, credentials, `execute(&UpstreamRequest)`.
//! - [`UpstreamRequest`]: one call as data, so the outbox can store it and the relay send it.
//! - [`Error`], [`ApiError`], [`Retry`]: what went wrong and whether retrying can help.
//! - [`oauth`]: Pipedrive's OAuth 2.0 flow, the token file, and a self-refreshing session.
//! - `pacing`: stays under the upstream's rate limit from its `x-ratelimit-*` headers.

#![warn(missing_docs)]

mod client;
mod error;
pub mod oauth;
mod pacing;

pub use client::{
    ChannelsClient, ClientBuilder, Credentials, UpstreamRequest, error_chain, is_dot_segment,
};
pub use error::{ApiError, Error, Retry};
