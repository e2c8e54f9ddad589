//! Provider apps: who the hub calls back for a channel, with what credentials and manifest; which
//! channels and tokens belong to which app; and the state the apps' answers put them in.

use pdchannels_model::manifest::Manifest;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::backend::on_pool;
use crate::{Store, StoreError};

/// An app to add.
pub struct NewApp {
    /// Its name in the hub (`app add NAME`).
    pub name: String,
    /// The OAuth client id Pipedrive knew it by: the Basic-auth user of every callback.
    pub client_id: String,
    /// The client secret: the Basic-auth password of every callback. Never shown.
    pub client_secret: SecretString,
    /// Its validated manifest.
    pub manifest: Manifest,
    /// Where the manifest was read from (a file or a URL), for `app show`.
    pub manifest_source: String,
    /// How many pages of conversations a new channel's first sync reads (`--backfill-pages`).
    pub backfill_pages: u32,
}

/// What is known about an app, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppInfo {
    /// Its name in the hub.
    pub name: String,
    /// Its OAuth client id.
    pub client_id: String,
    /// Its manifest.
    pub manifest: serde_json::Value,
    /// Where the manifest was read from.
    pub manifest_source: String,
    /// Pages of conversations a new channel's first sync reads.
    pub backfill_pages: u32,
    /// When it was added (ms since the epoch).
    pub created_at_ms: i64,
    /// Since when the app refuses the hub's credentials (it answered 401 `UNAUTHORIZED`); no
    /// call is made until `app add --replace` gives new ones.
    pub credentials_invalid_at_ms: Option<i64>,
    /// Until when the app asked the hub to wait (429 `retry_by`).
    pub paused_until_ms: Option<i64>,
    /// The app's last refusal, as the hub understood it.
    pub last_error: Option<String>,
    /// The `provider_channel_id`s of the channels that belong to it.
    pub channels: Vec<String>,
}

/// What calling an app takes. `Debug` never shows the secret.
#[derive(Clone)]
pub struct AppCredentials {
    /// Its name in the hub.
    pub name: String,
    /// The Basic-auth user.
    pub client_id: String,
    /// The Basic-auth password.
    pub client_secret: SecretString,
    /// Its manifest.
    pub manifest: Manifest,
    /// Pages of conversations a new channel's first sync reads.
    pub backfill_pages: u32,
    /// See [`AppInfo::credentials_invalid_at_ms`].
    pub credentials_invalid_at_ms: Option<i64>,
    /// See [`AppInfo::paused_until_ms`].
    pub paused_until_ms: Option<i64>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// What linking a channel to an app did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The channel now belongs to the app (or to none, when unlinking).
    Linked,
    /// No channel has this `provider_channel_id`.
    NoChannel,
    /// No app has this name.
    NoApp,
}

/// How an app's answer changes what the hub does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// The app answered normally: clear any refusal.
    Answering,
    /// 401 `UNAUTHORIZED`: stop calling until new credentials are given.
    CredentialsInvalid(String),
    /// 429: no call before this time (ms since the epoch).
    PausedUntil(i64, String),
}

/// Runs one admin statement on either backend: the same SQL text and binds for both drivers.
macro_rules! admin_execute {
    ($store:expr, $sql:expr $(, $bind:expr)* $(,)?) => {
        $store.admin_execute(
            sqlx::query($sql)$(.bind($bind))*,
            sqlx::query($sql)$(.bind($bind))*,
        )
    };
}
pub(crate) use admin_execute;

type AppRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn now_ms() -> i64 {
    pdchannels_model::Timestamp::now().unix_millis()
}

impl Store {
    /// Adds an app; with `replace`, an app of that name has its credentials and manifest replaced
    /// (and its refusals cleared) and keeps its channels. `false`: the name is taken and
    /// `replace` was not asked for.
    pub async fn add_app(&self, app: &NewApp, replace: bool) -> Result<bool, StoreError> {
        let failed = self.query_failed("add a provider app");
        let now = now_ms();
        let manifest = app.manifest.to_json().to_string();
        let secret = app.client_secret.expose_secret();
        let pages = i64::from(app.backfill_pages);
        let sql = if replace {
            "INSERT INTO apps (name, client_id, client_secret, manifest, manifest_source,
                               backfill_pages, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (name) DO UPDATE SET
                 client_id = excluded.client_id, client_secret = excluded.client_secret,
                 manifest = excluded.manifest, manifest_source = excluded.manifest_source,
                 backfill_pages = excluded.backfill_pages, updated_at_ms = excluded.updated_at_ms,
                 credentials_invalid_at_ms = NULL, paused_until_ms = NULL, last_error = NULL"
        } else {
            "INSERT INTO apps (name, client_id, client_secret, manifest, manifest_source,
                               backfill_pages, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (name) DO NOTHING"
        };
        let changed = admin_execute!(
            self,
            sql,
            &app.name,
            &app.client_id,
            secret,
            &manifest,
            &app.manifest_source,
            pages,
            now
        )
        .await
        .map_err(failed)?;
        Ok(changed == 1)
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<AppInfo>, StoreError> {
        self.apps_named(None).await
    }

    /// The app called `name`.
    pub async fn app(&self, name: &str) -> Result<Option<AppInfo>, StoreError> {
        Ok(self.apps_named(Some(name)).await?.pop())
    }

    /// The apps (all, or the one called `name`) with their channels: two reads.
    async fn apps_named(&self, name: Option<&str>) -> Result<Vec<AppInfo>, StoreError> {
        let failed = self.query_failed("list the provider apps");
        let rows: Vec<AppRow> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT name, client_id, manifest, manifest_source, backfill_pages, created_at_ms,
                    credentials_invalid_at_ms, paused_until_ms, last_error
               FROM apps WHERE ($1 IS NULL OR name = $1) ORDER BY name",
        )
        .bind(name)
        .fetch_all(p)
        .await)
        .map_err(&failed)?;
        let links: Vec<(String, String)> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT app_name, provider_channel_id FROM channels
              WHERE app_name IS NOT NULL AND ($1 IS NULL OR app_name = $1)
              ORDER BY provider_channel_id",
        )
        .bind(name)
        .fetch_all(p)
        .await)
        .map_err(&failed)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let channels = links
                    .iter()
                    .filter(|(app, _)| *app == row.0)
                    .map(|(_, channel)| channel.clone())
                    .collect();
                app_info(row, channels)
            })
            .collect())
    }

    /// What calling the app `name` takes.
    pub async fn app_credentials(&self, name: &str) -> Result<Option<AppCredentials>, StoreError> {
        let failed = self.query_failed("read a provider app's credentials");
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Row> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT name, client_id, client_secret, manifest, backfill_pages,
                    credentials_invalid_at_ms, paused_until_ms
               FROM apps WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(failed)?;
        Ok(row.and_then(
            |(name, client_id, secret, manifest, pages, invalid, paused)| {
                // A manifest is validated before it is stored; one that no longer parses
                // (edited by hand) makes the app uncallable rather than the hub crash.
                let manifest = Manifest::parse_str(&manifest).ok()?;
                Some(AppCredentials {
                    name,
                    client_id,
                    client_secret: secret.into(),
                    manifest,
                    backfill_pages: pages.clamp(0, i64::from(u32::MAX)) as u32,
                    credentials_invalid_at_ms: invalid,
                    paused_until_ms: paused,
                })
            },
        ))
    }

    /// Removes the app `name`; its channels and tokens stay, belonging to no app, and its
    /// pending calls are dropped. `false` if there was no such app.
    pub async fn remove_app(&self, name: &str) -> Result<bool, StoreError> {
        let failed = self.query_failed("remove a provider app");
        let removed = admin_execute!(self, "DELETE FROM apps WHERE name = $1", name)
            .await
            .map_err(failed)?;
        Ok(removed == 1)
    }

    /// Makes the channel `provider_channel_id` belong to `app` (or to none).
    pub async fn link_channel(
        &self,
        provider_channel_id: &str,
        app: Option<&str>,
    ) -> Result<Link, StoreError> {
        let failed = self.query_failed("link a channel to a provider app");
        if let Some(app) = app
            && self.app(app).await?.is_none()
        {
            return Ok(Link::NoApp);
        }
        let changed = admin_execute!(
            self,
            "UPDATE channels SET app_name = $1 WHERE provider_channel_id = $2",
            app,
            provider_channel_id
        )
        .await
        .map_err(failed)?;
        Ok(if changed == 1 {
            Link::Linked
        } else {
            Link::NoChannel
        })
    }

    /// Makes a channel just created with a token of `app` belong to it, unless it already
    /// belongs to an app (a channel is one app's; the first one keeps it).
    pub async fn claim_channel(
        &self,
        provider_channel_id: &str,
        app: &str,
    ) -> Result<bool, StoreError> {
        let failed = self.query_failed("link a channel to a provider app");
        let changed = admin_execute!(
            self,
            "UPDATE channels SET app_name = $1 WHERE provider_channel_id = $2 AND app_name IS NULL",
            app,
            provider_channel_id
        )
        .await
        .map_err(failed)?;
        Ok(changed == 1)
    }

    /// The app the channel belongs to, if any.
    pub async fn channel_app(
        &self,
        provider_channel_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let app: Option<Option<String>> = on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT app_name FROM channels WHERE provider_channel_id = $1",
        )
        .bind(provider_channel_id)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read which app a channel belongs to"))?;
        Ok(app.flatten())
    }

    /// Whether the channel was added with `template_support`; `None` if there is no such channel.
    pub async fn channel_template_support(
        &self,
        provider_channel_id: &str,
    ) -> Result<Option<bool>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT template_support FROM channels WHERE provider_channel_id = $1",
        )
        .bind(provider_channel_id)
        .fetch_optional(p)
        .await)
        .map_err(self.query_failed("read whether a channel has templates"))
    }

    /// Marks a channel suspended: its app answered 401 `ACCOUNT_SUSPENDED` for it.
    pub async fn suspend_channel(
        &self,
        provider_channel_id: &str,
        why: &str,
    ) -> Result<(), StoreError> {
        let failed = self.query_failed("mark a channel suspended");
        admin_execute!(
            self,
            "UPDATE channels SET suspended_at_ms = $2 WHERE provider_channel_id = $1",
            provider_channel_id,
            now_ms()
        )
        .await
        .map_err(failed)?;
        tracing::warn!(
            channel = provider_channel_id,
            why,
            "a provider app says the account behind a channel is suspended"
        );
        Ok(())
    }

    /// Records what an app's answer says about it.
    pub async fn set_app_state(&self, name: &str, state: &AppState) -> Result<(), StoreError> {
        let failed = self.query_failed("record a provider app's answer");
        let (invalid, paused, error) = match state {
            AppState::Answering => (None, None, None),
            AppState::CredentialsInvalid(why) => (Some(now_ms()), None, Some(why.as_str())),
            AppState::PausedUntil(until, why) => (None, Some(*until), Some(why.as_str())),
        };
        admin_execute!(
            self,
            "UPDATE apps SET credentials_invalid_at_ms = $2, paused_until_ms = $3,
                             last_error = coalesce($4, last_error), updated_at_ms = $5
              WHERE name = $1",
            name,
            invalid,
            paused,
            error,
            now_ms()
        )
        .await
        .map_err(failed)?;
        Ok(())
    }
}

fn app_info(row: AppRow, channels: Vec<String>) -> AppInfo {
    let (name, client_id, manifest, source, pages, created, invalid, paused, error) = row;
    AppInfo {
        name,
        client_id,
        manifest: serde_json::from_str(&manifest).unwrap_or(serde_json::Value::Null),
        manifest_source: source,
        backfill_pages: pages.clamp(0, i64::from(u32::MAX)) as u32,
        created_at_ms: created,
        credentials_invalid_at_ms: invalid,
        paused_until_ms: paused,
        last_error: error,
        channels,
    }
}
