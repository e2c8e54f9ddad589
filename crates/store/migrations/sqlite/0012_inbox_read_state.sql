-- The web inbox's read state: what each person (API token) has read, and which conversations
-- wait for our answer.
--
-- A conversation's last message from the customer and its last from us, kept by the insert
-- trigger below: "unread" compares the first with a person's read marker, "awaiting reply"
-- compares the two, and neither needs to look at messages when the list is drawn. A message is
-- ours when its sender is the conversation's `source_user` (as the provider app described it) or
-- the channel itself (a reply sent before the app described the conversation).
ALTER TABLE conversations ADD COLUMN last_incoming_ms INTEGER;
ALTER TABLE conversations ADD COLUMN last_outgoing_ms INTEGER;

UPDATE conversations
   SET last_incoming_ms = (
           SELECT max(m.received_at_ms) FROM messages m JOIN channels c ON c.pk = m.channel_pk
            WHERE m.channel_pk = conversations.channel_pk
              AND m.conversation_id = conversations.conversation_id
              AND m.sender_id <> c.provider_channel_id
              AND NOT EXISTS (SELECT 1 FROM participants p
                               WHERE p.channel_pk = m.channel_pk
                                 AND p.conversation_id = m.conversation_id
                                 AND p.participant_id = m.sender_id
                                 AND p.role = 'source_user')),
       last_outgoing_ms = (
           SELECT max(m.received_at_ms) FROM messages m JOIN channels c ON c.pk = m.channel_pk
            WHERE m.channel_pk = conversations.channel_pk
              AND m.conversation_id = conversations.conversation_id
              AND (m.sender_id = c.provider_channel_id
                   OR EXISTS (SELECT 1 FROM participants p
                               WHERE p.channel_pk = m.channel_pk
                                 AND p.conversation_id = m.conversation_id
                                 AND p.participant_id = m.sender_id
                                 AND p.role = 'source_user')));

DROP TRIGGER messages_join_conversation;
CREATE TRIGGER messages_join_conversation
AFTER INSERT ON messages
BEGIN
    INSERT INTO conversations (channel_pk, conversation_id, created_at_ms, last_activity_ms,
                               message_count, last_incoming_ms, last_outgoing_ms)
    SELECT NEW.channel_pk, NEW.conversation_id, NEW.received_at_ms, NEW.received_at_ms, 1,
           CASE WHEN ours THEN NULL ELSE NEW.received_at_ms END,
           CASE WHEN ours THEN NEW.received_at_ms END
      FROM (SELECT NEW.sender_id = (SELECT provider_channel_id FROM channels
                                     WHERE pk = NEW.channel_pk)
                   OR EXISTS (SELECT 1 FROM participants p
                               WHERE p.channel_pk = NEW.channel_pk
                                 AND p.conversation_id = NEW.conversation_id
                                 AND p.participant_id = NEW.sender_id
                                 AND p.role = 'source_user') AS ours)
     WHERE true  -- (SQLite needs a WHERE before ON CONFLICT in an INSERT … SELECT)
    ON CONFLICT (channel_pk, conversation_id)
        DO UPDATE SET last_activity_ms = max(last_activity_ms, excluded.last_activity_ms),
                      message_count = message_count + 1,
                      last_incoming_ms = coalesce(max(last_incoming_ms, excluded.last_incoming_ms),
                                                  last_incoming_ms, excluded.last_incoming_ms),
                      last_outgoing_ms = coalesce(max(last_outgoing_ms, excluded.last_outgoing_ms),
                                                  last_outgoing_ms, excluded.last_outgoing_ms);
    INSERT INTO participants (channel_pk, conversation_id, participant_id, joined_at_ms)
    VALUES (NEW.channel_pk, NEW.conversation_id, NEW.sender_id, NEW.received_at_ms)
    ON CONFLICT DO NOTHING;
END;

-- What each person has read: a conversation is unread for them when the customer wrote after
-- `read_through_ms` (the conversation's last incoming message when they last opened it), or
-- when they marked it unread.
CREATE TABLE inbox_reads (
    token_id        TEXT    NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    channel_pk      INTEGER NOT NULL,
    conversation_id TEXT    NOT NULL,
    read_through_ms INTEGER NOT NULL,
    marked_unread   INTEGER NOT NULL DEFAULT 0 CHECK (marked_unread IN (0, 1)),
    PRIMARY KEY (token_id, channel_pk, conversation_id),
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- The inbox's search over message text: an FTS5 index of each message's text, its rowid the
-- message's `pk`, kept by triggers so that an edit or a delete can never leave a stale hit. It
-- keeps its own copy of the text: a contentless table with deletes (`contentless_delete`) needs
-- SQLite 3.43, and the file must stay writable by older tools (Debian 12's sqlite3 is 3.40).
CREATE VIRTUAL TABLE message_search USING fts5 (
    text,
    tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO message_search (rowid, text)
SELECT pk, json_extract(payload, '$.message') FROM messages
 WHERE json_extract(payload, '$.message') <> '';

CREATE TRIGGER messages_search_insert
AFTER INSERT ON messages
WHEN json_extract(NEW.payload, '$.message') <> ''
BEGIN
    INSERT INTO message_search (rowid, text) VALUES (NEW.pk, json_extract(NEW.payload, '$.message'));
END;

CREATE TRIGGER messages_search_edit
AFTER UPDATE OF payload ON messages
WHEN json_extract(OLD.payload, '$.message') IS NOT json_extract(NEW.payload, '$.message')
BEGIN
    DELETE FROM message_search WHERE rowid = OLD.pk;
    INSERT INTO message_search (rowid, text)
    SELECT NEW.pk, json_extract(NEW.payload, '$.message')
     WHERE json_extract(NEW.payload, '$.message') <> '';
END;

CREATE TRIGGER messages_search_delete
AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = OLD.pk;
END;

-- And over participants' names and ids (a name search never scans every participant). Its
-- rowid is the participant's rowid.
CREATE VIRTUAL TABLE participant_search USING fts5 (
    who,
    tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO participant_search (rowid, who)
SELECT rowid, coalesce(name, '') || ' ' || participant_id FROM participants;

CREATE TRIGGER participants_search_insert
AFTER INSERT ON participants
BEGIN
    INSERT INTO participant_search (rowid, who)
    VALUES (NEW.rowid, coalesce(NEW.name, '') || ' ' || NEW.participant_id);
END;

CREATE TRIGGER participants_search_rename
AFTER UPDATE OF name ON participants
WHEN OLD.name IS NOT NEW.name
BEGIN
    DELETE FROM participant_search WHERE rowid = OLD.rowid;
    INSERT INTO participant_search (rowid, who)
    VALUES (NEW.rowid, coalesce(NEW.name, '') || ' ' || NEW.participant_id);
END;

CREATE TRIGGER participants_search_delete
AFTER DELETE ON participants
BEGIN
    DELETE FROM participant_search WHERE rowid = OLD.rowid;
END;
