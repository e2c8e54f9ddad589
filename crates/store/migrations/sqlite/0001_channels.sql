-- Channels, conversations, participants and messages of the Channels API contract.
--
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC): they sort correctly and mean
-- the same on every backend. Provider ids are TEXT, exactly as the provider sent them.

CREATE TABLE channels (
    pk                  INTEGER PRIMARY KEY,
    id                  TEXT    NOT NULL UNIQUE,  -- generated (UUID v7), answered as `data.id`
    provider_channel_id TEXT    NOT NULL UNIQUE,  -- the id every later call uses
    name                TEXT    NOT NULL,
    avatar_url          TEXT,
    template_support    INTEGER NOT NULL CHECK (template_support IN (0, 1)),
    provider_type       TEXT    NOT NULL CHECK (provider_type IN ('facebook', 'whatsapp', 'other')),
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

CREATE TABLE conversations (
    channel_pk       INTEGER NOT NULL REFERENCES channels (pk) ON DELETE CASCADE,
    conversation_id  TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,  -- when a message of it was last stored or changed
    message_count    INTEGER NOT NULL DEFAULT 0,  -- kept by the trigger: listing must not count
    PRIMARY KEY (channel_pk, conversation_id)
) STRICT, WITHOUT ROWID;

-- The read API lists a channel's conversations newest activity first.
CREATE INDEX conversations_by_activity
    ON conversations (channel_pk, last_activity_ms DESC, conversation_id DESC);

CREATE TABLE participants (
    channel_pk      INTEGER NOT NULL,
    conversation_id TEXT    NOT NULL,
    participant_id  TEXT    NOT NULL,
    joined_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (channel_pk, conversation_id, participant_id),
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE
) STRICT;  -- with a rowid: it records the order in which participants joined

CREATE TABLE messages (
    pk              INTEGER PRIMARY KEY,
    channel_pk      INTEGER NOT NULL,
    message_id      TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    sender_id       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('sent', 'delivered', 'read', 'failed')),
    created_at_ms   INTEGER NOT NULL,  -- the provider's created_at
    received_at_ms  INTEGER NOT NULL,  -- when we first stored it
    updated_at_ms   INTEGER NOT NULL,  -- when we last changed it
    payload         TEXT    NOT NULL,  -- the message as answered: canonical JSON
    UNIQUE (channel_pk, message_id),
    -- Checked at commit: the conversation is created by the AFTER INSERT trigger below.
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED
) STRICT;

CREATE INDEX messages_by_conversation
    ON messages (channel_pk, conversation_id, created_at_ms, pk);

-- A conversation is created by its first message, and the sender joins it. Doing this in the
-- database keeps a receive to one statement on the hot path; the rule cannot be forgotten by
-- any writer. AFTER, not BEFORE: an INSERT that ends in ON CONFLICT DO NOTHING must not
-- create anything.
CREATE TRIGGER messages_join_conversation
AFTER INSERT ON messages
BEGIN
    INSERT INTO conversations (channel_pk, conversation_id, created_at_ms, last_activity_ms,
                               message_count)
    VALUES (NEW.channel_pk, NEW.conversation_id, NEW.received_at_ms, NEW.received_at_ms, 1)
    ON CONFLICT (channel_pk, conversation_id)
        DO UPDATE SET last_activity_ms = max(last_activity_ms, excluded.last_activity_ms),
                      message_count = message_count + 1;
    INSERT INTO participants (channel_pk, conversation_id, participant_id, joined_at_ms)
    VALUES (NEW.channel_pk, NEW.conversation_id, NEW.sender_id, NEW.received_at_ms)
    ON CONFLICT DO NOTHING;
END;

-- An update (a newer status, an edit) is activity too, and a changed sender joins.
CREATE TRIGGER messages_touch_conversation
AFTER UPDATE ON messages
BEGIN
    UPDATE conversations
       SET last_activity_ms = max(last_activity_ms, NEW.updated_at_ms)
     WHERE channel_pk = NEW.channel_pk AND conversation_id = NEW.conversation_id;
    INSERT INTO participants (channel_pk, conversation_id, participant_id, joined_at_ms)
    VALUES (NEW.channel_pk, NEW.conversation_id, NEW.sender_id, NEW.updated_at_ms)
    ON CONFLICT DO NOTHING;
END;
