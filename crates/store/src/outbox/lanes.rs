//! The order rules, as SQL over the lanes: which calls may go now, and what holds one back.
//!
//! Each conversation is a lane, and so are a channel's channel-wide calls (the `outbox_lanes`
//! table, kept by triggers: see migration 0005; a channel-wide lane's `conversation_key` is '').
//! A lane's head is its oldest pending call, one seek in `outbox_pending_by_lane`.

/// The deliverable heads: the first call of each conversation, unless a channel-wide call of
/// its channel comes before it; a channel-wide call only when it is the first of its channel.
/// Only the lanes' heads are read, so the backlog behind them costs nothing.
const HEADS: &str = "WITH lane_heads AS MATERIALIZED (
         SELECT l.channel_key, l.conversation_key,
                (SELECT min(o.pk) FROM outbox o
                  WHERE o.state = 'pending' AND o.channel_key = l.channel_key
                    AND {same_lane_as_l}) AS pk
           FROM outbox_lanes l),
     ranked AS (
         SELECT pk, conversation_key,
                min(pk) OVER (PARTITION BY channel_key) AS first_in_channel,
                min(CASE WHEN conversation_key = '' THEN pk END)
                    OVER (PARTITION BY channel_key) AS first_channel_wide
           FROM lane_heads WHERE pk IS NOT NULL),
     heads AS (
         SELECT pk FROM ranked
          WHERE (conversation_key = '' AND pk = first_in_channel)
             OR (conversation_key <> ''
                 AND (first_channel_wide IS NULL OR first_channel_wide > pk)))";

/// What holds pending call `$1` back, if anything: the head of its own lane when it is not the
/// head itself; else, for a call within a conversation, its channel's first channel-wide call
/// accepted before it; else, for a channel-wide call, its channel's first call accepted before
/// it (the least of its channel's lane heads). No row when `$1` is not pending; NULL when it is
/// a head nothing is before. Each step is a seek per lane, whatever the backlog.
const HELD_BEHIND: &str = "WITH me AS (
         SELECT pk, channel_key, conversation_key FROM outbox WHERE pk = $1 AND state = 'pending')
     SELECT coalesce(
         (SELECT min(o.pk) FROM outbox o
           WHERE o.state = 'pending' AND o.channel_key = me.channel_key
             AND {same_lane_as_me} AND o.pk < me.pk),
         CASE WHEN me.conversation_key IS NOT NULL THEN
             (SELECT min(o.pk) FROM outbox o
               WHERE o.state = 'pending' AND o.channel_key = me.channel_key
                 AND o.conversation_key IS NULL AND o.pk < me.pk)
         ELSE
             (SELECT min(head) FROM
                 (SELECT (SELECT min(o.pk) FROM outbox o
                           WHERE o.state = 'pending' AND o.channel_key = l.channel_key
                             AND {same_lane_as_l}) AS head
                    FROM outbox_lanes l WHERE l.channel_key = me.channel_key) AS heads_of_channel
               WHERE head < me.pk)
         END)
     FROM me";

/// [`HEADS`] in the backend's dialect.
pub(crate) fn heads(postgres: bool) -> String {
    in_dialect(HEADS, postgres)
}

/// [`HELD_BEHIND`] in the backend's dialect.
pub(crate) fn held_behind(postgres: bool) -> String {
    in_dialect(HELD_BEHIND, postgres)
}

/// "Call `o` is in lane `l`" (or "in the lane of call `me`"), said so that each backend finds
/// the lane's calls with one index seek. SQLite's `IS` compares NULLs and uses the index;
/// PostgreSQL's `IS NOT DISTINCT FROM` cannot use an index, so there the lane key is an
/// expression (`coalesce(conversation_key, '')`) with an index of its own (its migration 0001).
fn in_dialect(sql: &str, postgres: bool) -> String {
    let (as_l, as_me) = if postgres {
        (
            "coalesce(o.conversation_key, '') = l.conversation_key",
            "coalesce(o.conversation_key, '') = coalesce(me.conversation_key, '')",
        )
    } else {
        (
            "o.conversation_key IS nullif(l.conversation_key, '')",
            "o.conversation_key IS me.conversation_key",
        )
    };
    sql.replace("{same_lane_as_l}", as_l)
        .replace("{same_lane_as_me}", as_me)
}
