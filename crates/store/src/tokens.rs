//! API tokens: created at random, shown once, stored as a SHA-256 only.

use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Connection, SqliteConnection};

use crate::apps::admin_execute;
use crate::backend::{Pool, on_pool};
use crate::{Store, StoreError};

/// What is known about a token without the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Public handle, e.g. `tok_3f9a1c2e`.
    pub id: String,
    /// What the token is for.
    pub name: String,
    /// When it was created, in milliseconds since the epoch.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// The provider app it belongs to (`token create --app`): channels it creates are the app's.
    pub app: Option<String>,
}

/// Who a token acts as, for `GET /v1/users/me`: each token is one user of the hub's company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    /// A number that stays the token's (Pipedrive's user ids are integers).
    pub user_id: i64,
    /// The token's name.
    pub name: String,
    /// The app it belongs to.
    pub app: Option<String>,
}

/// A token just created: the only moment its secret exists outside its holder.
#[derive(Debug)]
pub struct NewToken {
    /// Its public handle and name.
    pub info: TokenInfo,
    /// The token to hand to the client. `Debug` prints `[REDACTED]`.
    pub secret: SecretString,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    hex::encode(buf)
}

pub(crate) fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    /// Runs one token-management statement. Token management is rare and may run in another
    /// process than the server: on SQLite it uses its own short-lived connection rather than
    /// the writer queue (the readers' pool is read-only); on PostgreSQL a pooled connection.
    pub(crate) async fn admin_execute<'q>(
        &self,
        sqlite: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        postgres: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, sqlx::Error> {
        match self.reads() {
            Pool::Sqlite(_) => {
                let path = self.path().expect("a SQLite store has a file");
                let mut conn =
                    SqliteConnection::connect_with(&crate::open::connect_options(path)).await?;
                let changed = sqlite.execute(&mut conn).await?.rows_affected();
                conn.close().await?;
                Ok(changed)
            }
            Pool::Postgres(pool) => Ok(postgres.execute(pool).await?.rows_affected()),
        }
    }

    /// Creates a token named `name`; its secret is returned once and never stored.
    pub async fn create_token(&self, name: &str) -> Result<NewToken, StoreError> {
        self.create_app_token(name, None).await
    }

    /// Creates a token named `name` that belongs to `app` (which must exist), if given.
    pub async fn create_app_token(
        &self,
        name: &str,
        app: Option<&str>,
    ) -> Result<NewToken, StoreError> {
        let failed = self.query_failed("create an API token");
        let secret = format!("pdc_{}", random_hex(24));
        let info = TokenInfo {
            id: format!("tok_{}", random_hex(4)),
            name: name.to_owned(),
            created_at_ms: pdchannels_model::Timestamp::now().unix_millis(),
            revoked_at_ms: None,
            app: app.map(str::to_owned),
        };
        admin_execute!(
            self,
            "INSERT INTO api_tokens (id, name, sha256, created_at_ms, app_name)
             VALUES ($1, $2, $3, $4, $5)",
            &info.id,
            &info.name,
            digest(&secret),
            info.created_at_ms,
            app
        )
        .await
        .map_err(failed)?;
        Ok(NewToken {
            info,
            secret: secret.into(),
        })
    }

    /// Creates a token named `name` only if the database has never had one (the first start of
    /// a hub), and answers it; `None` if there is a token already. Atomic: several hubs starting
    /// at once on a new PostgreSQL database create one token between them.
    pub async fn create_first_token(&self, name: &str) -> Result<Option<NewToken>, StoreError> {
        let failed = self.query_failed("create the first API token");
        let secret = format!("pdc_{}", random_hex(24));
        let info = TokenInfo {
            id: format!("tok_{}", random_hex(4)),
            name: name.to_owned(),
            created_at_ms: pdchannels_model::Timestamp::now().unix_millis(),
            revoked_at_ms: None,
            app: None,
        };
        let insert = "INSERT INTO api_tokens (id, name, sha256, created_at_ms)
                      SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM api_tokens)";
        let created = match self.reads() {
            // One statement is atomic on SQLite: it holds the file's write lock throughout.
            Pool::Sqlite(_) => admin_execute!(
                self,
                insert,
                &info.id,
                &info.name,
                digest(&secret),
                info.created_at_ms
            )
            .await
            .map_err(failed)?,
            // On PostgreSQL two such statements can both see no token: they take turns.
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(&failed)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pdchannels first token'))")
                    .execute(&mut *tx)
                    .await
                    .map_err(&failed)?;
                let created = sqlx::query(insert)
                    .bind(&info.id)
                    .bind(&info.name)
                    .bind(digest(&secret))
                    .bind(info.created_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(&failed)?
                    .rows_affected();
                tx.commit().await.map_err(&failed)?;
                created
            }
        };
        Ok((created == 1).then(|| NewToken {
            info,
            secret: secret.into(),
        }))
    }

    /// Every token, oldest first, revoked ones included.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let failed = self.query_failed("list the API tokens");
        type Row = (String, String, i64, Option<i64>, Option<String>);
        let rows: Vec<Row> = on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT id, name, created_at_ms, revoked_at_ms, app_name FROM api_tokens ORDER BY pk",
        )
        .fetch_all(p).await)
        .map_err(failed)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at_ms, revoked_at_ms, app)| TokenInfo {
                id,
                name,
                created_at_ms,
                revoked_at_ms,
                app,
            })
            .collect())
    }

    /// Who the token with this id acts as.
    pub async fn token_user(&self, id: &str) -> Result<Option<TokenUser>, StoreError> {
        let row: Option<(i64, String, Option<String>)> =
            on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT pk, name, app_name FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await)
            .map_err(self.query_failed("read an API token's user"))?;
        Ok(row.map(|(user_id, name, app)| TokenUser { user_id, name, app }))
    }

    /// Revokes the token with this id; `false` if there is no such active token.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let failed = self.query_failed("revoke an API token");
        let now = pdchannels_model::Timestamp::now().unix_millis();
        let revoked = admin_execute!(
            self,
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
            now,
            id
        )
        .await
        .map_err(failed)?;
        Ok(revoked == 1)
    }

    /// The id of the active token `presented` is, if it is one.
    pub async fn verify_token(&self, presented: &str) -> Result<Option<String>, StoreError> {
        let failed = self.query_failed("check an API token");
        on_pool!(self.reads(), p => sqlx::query_scalar("SELECT id FROM api_tokens WHERE sha256 = $1 AND revoked_at_ms IS NULL")
            .bind(digest(presented))
            .fetch_optional(p).await)
            .map_err(failed)
    }

    /// When the token `presented` was revoked (milliseconds since the epoch), if it is one this
    /// store issued and revoked; `None` for an active token or one it never issued. Lets a 401
    /// say "revoked" rather than "not recognised".
    pub async fn revoked_at(&self, presented: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_scalar(
            "SELECT revoked_at_ms FROM api_tokens WHERE sha256 = $1 AND revoked_at_ms IS NOT NULL",
        )
        .bind(digest(presented))
        .fetch_optional(p).await)
        .map_err(self.query_failed("check whether an API token was revoked"))
    }
}
