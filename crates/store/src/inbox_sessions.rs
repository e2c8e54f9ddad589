//! The web inbox's logins: sessions held by a browser cookie (the hub keeps only its SHA-256)
//! with the form token its POSTs must carry, and one-time login links. Each acts as the API
//! token it was opened with, and ends when that token is revoked.

use secrecy::SecretString;

use crate::apps::admin_execute;
use crate::backend::{on_conn, on_pool};
use crate::tokens::{digest, random_hex};
use crate::{Store, StoreError};

/// How long a one-time login link works.
pub const LOGIN_LINK_MS: i64 = 10 * 60 * 1000;

/// A session just opened: the only moment its secret exists outside the browser.
#[derive(Debug)]
pub struct NewInboxSession {
    /// The cookie's value. `Debug` prints `[REDACTED]`.
    pub secret: SecretString,
    /// The form token its POSTs carry.
    pub csrf: String,
    /// When it ends (ms since the epoch).
    pub expires_at_ms: i64,
}

/// An open session, as a request's cookie finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxSession {
    /// The API token it acts as.
    pub token_id: String,
    /// The form token its POSTs must carry.
    pub csrf: String,
    /// When it ends (ms since the epoch).
    pub expires_at_ms: i64,
}

fn now_ms() -> i64 {
    pdchannels_model::Timestamp::now().unix_millis()
}

impl Store {
    /// A one-time login link's secret for the active token `token_id` (`None` if there is no
    /// such token): it works once, within 10 minutes. Made by the CLI, possibly while a hub runs.
    pub async fn create_login_link(
        &self,
        token_id: &str,
    ) -> Result<Option<SecretString>, StoreError> {
        let secret = format!("pdl_{}", random_hex(24));
        let now = now_ms();
        let made = admin_execute!(
            self,
            "INSERT INTO inbox_login_links (sha256, token_id, expires_at_ms)
             SELECT $1, id, $2 FROM api_tokens WHERE id = $3 AND revoked_at_ms IS NULL",
            digest(&secret),
            now + LOGIN_LINK_MS,
            token_id
        )
        .await
        .map_err(self.query_failed("make a login link"))?;
        Ok((made == 1).then(|| secret.into()))
    }

    /// Spends a login link: the token it logs in as, if it is one, unused, not expired, and its
    /// token is active. A link works once, even when two browsers open it at once.
    pub async fn use_login_link(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let hash = digest(presented);
        self.run_write("use a login link", move |conn, now| {
            Box::pin(async move {
                let token: Option<String> = on_conn!(conn, c => sqlx::query_scalar(
                    "UPDATE inbox_login_links SET used_at_ms = $2
                      WHERE sha256 = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
                        AND token_id IN (SELECT id FROM api_tokens WHERE revoked_at_ms IS NULL)
                      RETURNING token_id",
                )
                .bind(&hash)
                .bind(now)
                .fetch_optional(c)
                .await)?;
                Ok((token, Vec::new()))
            })
        })
        .await
    }

    /// Opens a session for `token_id`, lasting `ttl_ms`.
    pub async fn open_inbox_session(
        &self,
        token_id: &str,
        ttl_ms: i64,
    ) -> Result<NewInboxSession, StoreError> {
        let secret = format!("pds_{}", random_hex(32));
        let csrf = random_hex(16);
        let (hash, token_id, form) = (digest(&secret), token_id.to_owned(), csrf.clone());
        let expires_at_ms = self
            .run_write("open an inbox session", move |conn, now| {
                Box::pin(async move {
                    // Sessions that ended are cleared as new ones open: the table stays small.
                    on_conn!(conn, c => sqlx::query("DELETE FROM inbox_sessions WHERE expires_at_ms <= $1")
                        .bind(now)
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected()))?;
                    on_conn!(conn, c => sqlx::query(
                        "INSERT INTO inbox_sessions (sha256, token_id, csrf, created_at_ms, expires_at_ms)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&hash)
                    .bind(&token_id)
                    .bind(&form)
                    .bind(now)
                    .bind(now + ttl_ms)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))?;
                    Ok((now + ttl_ms, Vec::new()))
                })
            })
            .await?;
        Ok(NewInboxSession {
            secret: secret.into(),
            csrf,
            expires_at_ms,
        })
    }

    /// The open session a cookie holds: not expired, its token active.
    pub async fn inbox_session(&self, presented: &str) -> Result<Option<InboxSession>, StoreError> {
        let row: Option<(String, String, i64)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT s.token_id, s.csrf, s.expires_at_ms
               FROM inbox_sessions s JOIN api_tokens t ON t.id = s.token_id
              WHERE s.sha256 = $1 AND s.expires_at_ms > $2 AND t.revoked_at_ms IS NULL",
        )
        .bind(digest(presented))
        .bind(now_ms())
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read an inbox session"))?;
        Ok(row.map(|(token_id, csrf, expires_at_ms)| InboxSession {
            token_id,
            csrf,
            expires_at_ms,
        }))
    }

    /// Ends the session a cookie holds (logging out).
    pub async fn end_inbox_session(&self, presented: &str) -> Result<(), StoreError> {
        let hash = digest(presented);
        self.run_write("end an inbox session", move |conn, _| {
            Box::pin(async move {
                on_conn!(conn, c => sqlx::query("DELETE FROM inbox_sessions WHERE sha256 = $1")
                    .bind(&hash)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))?;
                Ok(((), Vec::new()))
            })
        })
        .await
    }
}
