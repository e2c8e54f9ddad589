-- Provider apps: the apps whose messaging-manifest URLs the hub calls back (Pipedrive's side of
-- the contract), the channels and tokens that belong to them, what the apps told about
-- conversations and participants, the durable queue of calls to the apps, and the replies
-- people send through them.

CREATE TABLE apps (
    pk                        INTEGER PRIMARY KEY,
    name                      TEXT    NOT NULL UNIQUE,
    client_id                 TEXT    NOT NULL,
    client_secret             TEXT    NOT NULL,  -- sent as Basic auth to the app; never shown
    manifest                  TEXT    NOT NULL,  -- the validated manifest, JSON
    manifest_source           TEXT    NOT NULL,  -- the file or URL it was read from
    backfill_pages            INTEGER NOT NULL DEFAULT 1,
    created_at_ms             INTEGER NOT NULL,
    updated_at_ms             INTEGER NOT NULL,
    credentials_invalid_at_ms INTEGER,  -- the app answered 401 UNAUTHORIZED: calls stop
    paused_until_ms           INTEGER,  -- the app answered 429: no call before then
    last_error                TEXT      -- the app's last refusal, for `app show`
) STRICT;

ALTER TABLE channels ADD COLUMN app_name TEXT REFERENCES apps (name) ON DELETE SET NULL;
-- The app answered 401 ACCOUNT_SUSPENDED for this channel.
ALTER TABLE channels ADD COLUMN suspended_at_ms INTEGER;
ALTER TABLE api_tokens ADD COLUMN app_name TEXT REFERENCES apps (name) ON DELETE SET NULL;

-- What getConversations / getConversationById said about a conversation.
ALTER TABLE conversations ADD COLUMN link TEXT;
ALTER TABLE conversations ADD COLUMN state TEXT CHECK (state IN ('open', 'closed'));
ALTER TABLE conversations ADD COLUMN seen INTEGER CHECK (seen IN (0, 1));
ALTER TABLE conversations ADD COLUMN next_messages_cursor TEXT;
ALTER TABLE conversations ADD COLUMN details_at_ms INTEGER;  -- when the app last described it
-- The conversations of apps' channels the hub has yet to ask about (getConversationById).
CREATE INDEX conversations_to_describe ON conversations (channel_pk) WHERE details_at_ms IS NULL;

-- Who a participant is, as the app said.
ALTER TABLE participants ADD COLUMN name TEXT;
ALTER TABLE participants ADD COLUMN role TEXT CHECK (role IN ('end_user', 'source_user'));
ALTER TABLE participants ADD COLUMN avatar_url TEXT;
ALTER TABLE participants ADD COLUMN fetch_avatar INTEGER NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN avatar_expires INTEGER NOT NULL DEFAULT 0;

-- Calls to apps that read (getConversations, getConversationById, getSenderById, ...): durable,
-- retried with backoff, dead after their attempts, retryable by hand; the app's last answer kept.
CREATE TABLE app_calls (
    pk                 INTEGER PRIMARY KEY,
    app_name           TEXT    NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    endpoint           TEXT    NOT NULL,
    channel_id         TEXT    NOT NULL,  -- provider_channel_id
    subject            TEXT    NOT NULL DEFAULT '',  -- the conversation, sender or message id
    params             TEXT    NOT NULL DEFAULT '{}',  -- JSON: cursor, pages
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_owner        TEXT,
    lease_until_ms     INTEGER,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    last_status        INTEGER,  -- the app's HTTP status
    last_error         TEXT,
    last_answer        TEXT      -- the start of the app's answer, for whoever debugs it
) STRICT;

-- One pending call per thing to learn: a burst of receives asks once.
CREATE UNIQUE INDEX app_calls_once
    ON app_calls (app_name, endpoint, channel_id, subject) WHERE state = 'pending';
CREATE INDEX app_calls_due ON app_calls (next_attempt_at_ms) WHERE state = 'pending';

-- Replies sent through an app's postMessage. The message itself joins `messages` under the id the
-- app answered; until then (or when sending failed) only this row shows it.
CREATE TABLE outgoing_messages (
    pk              INTEGER PRIMARY KEY,
    local_id        TEXT    NOT NULL UNIQUE,  -- ours, also the Idempotency-Key sent
    channel_pk      INTEGER NOT NULL REFERENCES channels (pk) ON DELETE CASCADE,
    conversation_id TEXT    NOT NULL,
    sender_id       TEXT    NOT NULL,  -- the conversation's source_user
    recipient_ids   TEXT    NOT NULL,  -- JSON array of the end_user ids
    message         TEXT    NOT NULL,
    template_id     TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('sending', 'sent', 'failed')),
    message_id      TEXT,              -- the app's data.id, once it answered
    failure         TEXT,              -- why sending failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX outgoing_by_conversation ON outgoing_messages (channel_pk, conversation_id, pk);
