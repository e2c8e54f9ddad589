-- The notes mirror's durable state (issue 13): which Pipedrive person and deal or lead each
-- conversation is written to, one row per note the mirror writes (a *segment*: one
-- conversation's messages of one local day, `seq` 0 and its continuations), and the tokens the
-- mirror spent each day. Everything the mirror must not forget across a restart is here: a note
-- posted twice is the one mistake a user sees.
--
-- Which message belongs to which segment is not stored: it follows from the messages'
-- `created_at_ms` and the company's time zone when a segment is rendered, and a PUT carries the
-- whole note, so nothing needs to remember which messages a flush covered.

-- How each conversation is linked. No row: not looked up yet. `auto` rows are the matcher's and
-- may be replaced by a later look-up; `manual` rows are a person's and never are. A parked
-- conversation (several people matched) keeps its candidates as JSON for `mirror pending`; an
-- unmatched one has none. Deleting the conversation forgets its link.
CREATE TABLE mirror_links (
    -- An integer key, so that `db copy` walks it as it walks the others.
    pk              INTEGER PRIMARY KEY,
    channel_pk      INTEGER NOT NULL,
    conversation_id TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('linked', 'parked', 'unmatched')),
    how             TEXT    NOT NULL CHECK (how IN ('auto', 'manual')),
    person_id       INTEGER,
    org_id          INTEGER,
    deal_id         INTEGER,
    -- Lead ids are UUIDs in Pipedrive.
    lead_id         TEXT,
    candidates      TEXT,
    looked_up_at_ms INTEGER NOT NULL,
    linked_at_ms    INTEGER,
    updated_at_ms   INTEGER NOT NULL,
    UNIQUE (channel_pk, conversation_id),
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE,
    -- A note is on a person, and on a deal or a lead, never both.
    CHECK (state <> 'linked' OR person_id IS NOT NULL),
    CHECK (deal_id IS NULL OR lead_id IS NULL)
) STRICT;

CREATE INDEX mirror_links_pending ON mirror_links (state, updated_at_ms) WHERE state <> 'linked';

-- One row per note. `state`: `open` (no note yet), `creating` (a POST may be under way: written
-- before it is sent, so that a crash leaves a trace that is reconciled by the marker rather than
-- posted again), `uncertain` (a POST whose outcome is unknown), `live` (the note exists:
-- `note_id`, and what we last wrote: `rendered_hash`, and Pipedrive's `update_time` and
-- `last_update_user_id` that answered it, for the edit guard), `sealed` (no longer written: a
-- person edited it, it is full, or its link changed; the day continues in `seq + 1`).
--
-- `dirty_since_ms` is when the first message not yet in the note was seen (NULL: nothing to
-- write), `last_message_ms` the last: a segment is due when it was quiet long enough or waited
-- too long. `lease_owner`/`lease_until_ms` let several hubs on one PostgreSQL database share the
-- work, as the outbox does.
CREATE TABLE mirror_segments (
    pk                  INTEGER PRIMARY KEY,
    channel_pk          INTEGER NOT NULL,
    conversation_id     TEXT    NOT NULL,
    -- The local day, YYYY-MM-DD.
    day                 TEXT    NOT NULL,
    seq                 INTEGER NOT NULL CHECK (seq >= 0),
    -- `channel/conversation/day/seq` and its marker, as the mirror crate makes them.
    segment_key         TEXT    NOT NULL UNIQUE,
    marker              TEXT    NOT NULL,
    state               TEXT    NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'creating', 'uncertain', 'live', 'sealed')),
    note_id             INTEGER,
    rendered_hash       TEXT,
    note_update_time    TEXT,
    note_user_id        INTEGER,
    first_message_ms    INTEGER,
    dirty_since_ms      INTEGER,
    last_message_ms     INTEGER,
    last_flush_ms       INTEGER,
    next_attempt_at_ms  INTEGER NOT NULL DEFAULT 0,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    lease_owner         TEXT,
    lease_until_ms      INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    UNIQUE (channel_pk, conversation_id, day, seq),
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE,
    CHECK (state <> 'live' OR note_id IS NOT NULL)
) STRICT;

-- At most one segment of a conversation-day is written to at a time: the others are sealed.
CREATE UNIQUE INDEX mirror_segments_current
    ON mirror_segments (channel_pk, conversation_id, day) WHERE state <> 'sealed';

-- The flush queue: only segments with something to write.
CREATE INDEX mirror_segments_dirty
    ON mirror_segments (dirty_since_ms) WHERE dirty_since_ms IS NOT NULL;

-- The tokens the mirror spent, per budget day (Pipedrive's, YYYY-MM-DD): a restart resumes the
-- day's ledger instead of spending the mirror's share again.
CREATE TABLE mirror_budget_days (
    day           TEXT    PRIMARY KEY,
    tokens        INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    updated_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
