//! OAuth 2.0 as Pipedrive documents it: the authorization-code grant, refresh, revoke, all with
//! Basic client auth at a configurable token endpoint; tokens kept in an owner-only file.
//!
//! - [`OAuthApp`]: the app's client id and secret, and the endpoints; the three form POSTs.
//! - [`TokenSet`], [`TokenFile`]: what the token endpoint answers, and where it is kept.
//! - [`OAuthSession`]: the current tokens for a client; refreshes before expiry and after a 401,
//!   one refresh at a time however many requests wait.
//! - [`OAuthError`]: what the token endpoint or the way to it said.

mod app;
mod error;
pub(crate) mod session;
mod tokens;

pub use app::{
    OAuthApp, OAuthEndpoints, PIPEDRIVE_AUTHORIZE_URL, PIPEDRIVE_REVOKE_URL, PIPEDRIVE_TOKEN_URL,
};
pub use error::OAuthError;
pub use session::OAuthSession;
pub use tokens::{TokenFile, TokenSet};
