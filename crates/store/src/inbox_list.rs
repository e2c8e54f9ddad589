//! The web inbox's list: every channel's conversations together (or one channel's), newest
//! activity first, each with what a row shows: the customer, the channel, the last message,
//! whether the person looking has read it and whether the customer waits for an answer.
//! Filtered by channel, open or closed, unread, awaiting reply, and a search over message text
//! and participants' names and ids (full-text indexes on both backends).

use serde::Serialize;

use crate::backend::on_pool;
use crate::inbox_reads::{AWAITING, UNREAD};
use crate::{Store, StoreError};

/// How many of the newest matching messages (and participants) a search looks at on SQLite: a
/// word found in a million messages costs the same as one found in ten (the list shows 50
/// conversations).
pub const SEARCH_MESSAGES: i64 = 2_000;

/// One row of the inbox's list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxRow {
    /// The channel's `provider_channel_id`.
    pub channel_id: String,
    /// The channel's name.
    pub channel_name: String,
    /// The conversation's id.
    pub conversation_id: String,
    /// The customer: the first `end_user` participant's name, or its id (or the first
    /// participant's, before the app said who is who).
    pub customer: Option<String>,
    /// `open` or `closed`, if the app (or a person in the inbox) said.
    pub state: Option<String>,
    /// When a message of it was last stored or changed (ms since the epoch).
    pub last_activity_ms: i64,
    /// Its last message as stored (the receive payload), if any.
    pub last_message: Option<serde_json::Value>,
    /// The customer wrote since the person looking last opened it (or they marked it unread).
    pub unread: bool,
    /// The customer wrote last: nobody answered yet.
    pub awaiting_reply: bool,
    /// Where the list goes on after this row: `(last_activity_ms, channel row, conversation)`.
    #[serde(skip)]
    pub position: (i64, i64, String),
}

/// Which conversations the list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    /// One channel's (`provider_channel_id`), or every channel's.
    pub channel_id: Option<String>,
    /// `Some(true)`: closed only; `Some(false)`: open only (and those no one closed).
    pub closed: Option<bool>,
    /// Unread only (for the person looking).
    pub unread_only: bool,
    /// Those whose customer wrote last only.
    pub awaiting_only: bool,
    /// Words that one message's text, or one participant's name and id, must all hold (the
    /// last as a prefix).
    pub search: Option<String>,
}

type Row = (
    String,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

/// The words of a search: letters and digits, everything else separates them (as both
/// backends' tokenizers do), at most 8.
pub fn search_words(search: &str) -> Vec<String> {
    search
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_lowercase)
        .collect()
}

/// FTS5's query: every word, the last as a prefix (`"blue" "sto"*`). Quoted, so no word is
/// read as an operator.
fn fts5_query(words: &[String]) -> String {
    let mut query = words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ");
    query.push('*');
    query
}

/// PostgreSQL's `to_tsquery`: every word, the last as a prefix (`blue & sto:*`). The words are
/// letters and digits only, so none is an operator.
fn tsquery(words: &[String]) -> String {
    let mut query = words.join(" & ");
    query.push_str(":*");
    query
}

impl Store {
    /// Up to `limit` conversations after `after` (a row's `position`) that pass `filter`,
    /// newest activity first, read state as `token_id` sees it.
    pub async fn inbox_rows(
        &self,
        token_id: &str,
        filter: &InboxFilter,
        after: Option<(i64, i64, String)>,
        limit: u32,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let (after_ms, after_pk, after_id) = after.unwrap_or((i64::MAX, i64::MAX, String::new()));
        let words = filter
            .search
            .as_deref()
            .map(search_words)
            .unwrap_or_default();
        let search_text = filter.search.as_deref().map(str::trim).unwrap_or_default();
        let searching = !search_text.is_empty();
        let mut conditions = vec![
            "($1 IS NULL OR c.provider_channel_id = $1)".to_owned(),
            "(v.last_activity_ms < $2 OR (v.last_activity_ms = $2 AND (v.channel_pk < $3 \
             OR (v.channel_pk = $3 AND v.conversation_id < $4))))"
                .to_owned(),
        ];
        match filter.closed {
            Some(true) => conditions.push("v.state = 'closed'".to_owned()),
            Some(false) => conditions.push("v.state IS DISTINCT FROM 'closed'".to_owned()),
            None => {}
        }
        if filter.unread_only {
            conditions.push(format!("{UNREAD} = 1"));
        }
        if filter.awaiting_only {
            conditions.push(format!("{AWAITING} = 1"));
        }
        // A search starts from what its indexes found (bounded), then looks up those
        // conversations: it never walks the whole list checking each.
        let source = if searching && !words.is_empty() {
            let (messages, participants, join) = if self.is_postgres() {
                (
                    "SELECT m.channel_pk, m.conversation_id FROM messages m
                      WHERE to_tsvector('simple'::regconfig, (m.payload::jsonb) ->> 'message')
                            @@ to_tsquery('simple'::regconfig, $7)",
                    "SELECT p.channel_pk, p.conversation_id FROM participants p
                      WHERE to_tsvector('simple'::regconfig,
                                        coalesce(p.name, '') || ' ' || p.participant_id)
                            @@ to_tsquery('simple'::regconfig, $7)",
                    "JOIN",
                )
            } else {
                (
                    "SELECT m.channel_pk, m.conversation_id FROM messages m
                      WHERE m.pk IN (SELECT rowid FROM message_search
                                      WHERE message_search MATCH $7
                                      ORDER BY rowid DESC LIMIT $8)",
                    "SELECT p.channel_pk, p.conversation_id FROM participants p
                      WHERE p.rowid IN (SELECT rowid FROM participant_search
                                         WHERE participant_search MATCH $7
                                         ORDER BY rowid DESC LIMIT $8)",
                    // SQLite joins in the order written: the hits first.
                    "CROSS JOIN",
                )
            };
            format!(
                "({messages} UNION {participants}) h
                 {join} conversations v
                   ON v.channel_pk = h.channel_pk AND v.conversation_id = h.conversation_id"
            )
        } else {
            if searching {
                // Nothing but punctuation: no word to look for, nothing found.
                conditions.push("1 = 0".to_owned());
            }
            "conversations v".to_owned()
        };
        // The page's rows are chosen first (inner query), and only they get their customer and
        // last message (outer query): computed in the inner query, SQLite would look both up
        // for every conversation a search found (up to 2,000) before sorting and keeping 50.
        let sql = format!(
            "SELECT l.provider_channel_id, l.channel_name, l.channel_pk, l.conversation_id,
                    l.last_activity_ms, l.state,
                    (SELECT coalesce(p.name, p.participant_id) FROM participants p
                      WHERE p.channel_pk = l.channel_pk AND p.conversation_id = l.conversation_id
                      ORDER BY CASE WHEN p.role = 'end_user' THEN 0
                                    WHEN p.role IS NULL THEN 1 ELSE 2 END, p.joined_at_ms
                      LIMIT 1),
                    (SELECT m.payload FROM messages m
                      WHERE m.channel_pk = l.channel_pk AND m.conversation_id = l.conversation_id
                      ORDER BY m.created_at_ms DESC, m.pk DESC LIMIT 1),
                    l.unread, l.awaiting
               FROM (SELECT c.provider_channel_id, c.name AS channel_name, v.channel_pk,
                            v.conversation_id, v.last_activity_ms, v.state,
                            {UNREAD} AS unread, {AWAITING} AS awaiting
                       FROM {source} JOIN channels c ON c.pk = v.channel_pk
                       LEFT JOIN inbox_reads r
                         ON r.token_id = $6 AND r.channel_pk = v.channel_pk
                        AND r.conversation_id = v.conversation_id
                      WHERE {}
                      ORDER BY v.last_activity_ms DESC, v.channel_pk DESC, v.conversation_id DESC
                      LIMIT $5) l
              ORDER BY l.last_activity_ms DESC, l.channel_pk DESC, l.conversation_id DESC",
            conditions.join(" AND ")
        );
        let searched = searching && !words.is_empty();
        let text_query = if self.is_postgres() {
            tsquery(&words)
        } else {
            fts5_query(&words)
        };
        let rows: Vec<Row> = on_pool!(self.reads(), p => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(filter.channel_id.as_deref())
                .bind(after_ms)
                .bind(after_pk)
                .bind(&after_id)
                .bind(i64::from(limit))
                .bind(token_id);
            if searched {
                query = query.bind(&text_query);
                if !self.is_postgres() {
                    query = query.bind(SEARCH_MESSAGES);
                }
            }
            query.fetch_all(p).await
        })
        .map_err(self.query_failed("list the inbox's conversations"))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    channel_id,
                    channel_name,
                    channel_pk,
                    conversation_id,
                    last_activity_ms,
                    state,
                    customer,
                    payload,
                    unread,
                    awaiting,
                )| {
                    InboxRow {
                        position: (last_activity_ms, channel_pk, conversation_id.clone()),
                        channel_id,
                        channel_name,
                        conversation_id,
                        customer,
                        state,
                        last_activity_ms,
                        last_message: payload.and_then(|p| serde_json::from_str(&p).ok()),
                        unread: unread == 1,
                        awaiting_reply: awaiting == 1,
                    }
                },
            )
            .collect())
    }
}

impl Store {
    /// The conversations whose activity is at or after `since_ms`, newest first, at most
    /// `limit`: what a live stream missed while it was away (deletions aside: a stream that
    /// was away long gets told to reload instead).
    pub async fn inbox_changes_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self.reads(), p => sqlx::query_as(
            "SELECT c.provider_channel_id, v.conversation_id
               FROM conversations v JOIN channels c ON c.pk = v.channel_pk
              WHERE v.last_activity_ms >= $1
              ORDER BY v.last_activity_ms DESC, v.channel_pk DESC, v.conversation_id DESC
              LIMIT $2",
        )
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(self.query_failed("find what changed in the inbox"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_words_that_no_backend_reads_as_operators() {
        let words = search_words("  Blue-ONE \"stock\" OR NEAR(x) *");
        assert_eq!(words, ["blue", "one", "stock", "or", "near", "x"]);
        assert_eq!(
            fts5_query(&words[..2]),
            "\"blue\" \"one\"*",
            "quoted words, the last a prefix"
        );
        assert_eq!(tsquery(&words[..2]), "blue & one:*");
        assert!(search_words("!!! ***").is_empty());
        assert_eq!(search_words("a b c d e f g h i j").len(), 8);
    }
}
