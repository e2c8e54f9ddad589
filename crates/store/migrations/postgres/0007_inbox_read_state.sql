-- The web inbox's read state: what each person (API token) has read, and which conversations
-- wait for our answer.
--
-- A conversation's last message from the customer and its last from us, kept by the insert
-- trigger below: "unread" compares the first with a person's read marker, "awaiting reply"
-- compares the two, and neither needs to look at messages when the list is drawn. A message is
-- ours when its sender is the conversation's `source_user` (as the provider app described it) or
-- the channel itself (a reply sent before the app described the conversation).
ALTER TABLE conversations ADD COLUMN last_incoming_ms BIGINT;
ALTER TABLE conversations ADD COLUMN last_outgoing_ms BIGINT;

UPDATE conversations v
   SET last_incoming_ms = t.incoming, last_outgoing_ms = t.outgoing
  FROM (SELECT m.channel_pk, m.conversation_id,
               max(m.received_at_ms) FILTER (WHERE NOT o.ours) AS incoming,
               max(m.received_at_ms) FILTER (WHERE o.ours) AS outgoing
          FROM messages m
          JOIN channels c ON c.pk = m.channel_pk
          CROSS JOIN LATERAL (
              SELECT m.sender_id = c.provider_channel_id
                     OR EXISTS (SELECT 1 FROM participants p
                                 WHERE p.channel_pk = m.channel_pk
                                   AND p.conversation_id = m.conversation_id
                                   AND p.participant_id = m.sender_id
                                   AND p.role = 'source_user') AS ours) o
         GROUP BY m.channel_pk, m.conversation_id) t
 WHERE v.channel_pk = t.channel_pk AND v.conversation_id = t.conversation_id;

CREATE OR REPLACE FUNCTION messages_join_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('pdchannels.copying', true) = 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO conversations (channel_pk, conversation_id, created_at_ms, last_activity_ms,
                               message_count, last_incoming_ms, last_outgoing_ms)
    SELECT n.channel_pk, n.conversation_id, min(n.received_at_ms), max(n.received_at_ms), count(*),
           max(n.received_at_ms) FILTER (WHERE NOT o.ours),
           max(n.received_at_ms) FILTER (WHERE o.ours)
      FROM new_messages n
      JOIN channels c ON c.pk = n.channel_pk
      CROSS JOIN LATERAL (
          SELECT n.sender_id = c.provider_channel_id
                 OR EXISTS (SELECT 1 FROM participants p
                             WHERE p.channel_pk = n.channel_pk
                               AND p.conversation_id = n.conversation_id
                               AND p.participant_id = n.sender_id
                               AND p.role = 'source_user') AS ours) o
     GROUP BY n.channel_pk, n.conversation_id
     ORDER BY n.channel_pk, n.conversation_id
    ON CONFLICT (channel_pk, conversation_id) DO UPDATE
       SET last_activity_ms = greatest(conversations.last_activity_ms, excluded.last_activity_ms),
           message_count = conversations.message_count + excluded.message_count,
           last_incoming_ms = greatest(conversations.last_incoming_ms, excluded.last_incoming_ms),
           last_outgoing_ms = greatest(conversations.last_outgoing_ms, excluded.last_outgoing_ms);
    INSERT INTO participants (channel_pk, conversation_id, participant_id, joined_at_ms)
    SELECT channel_pk, conversation_id, sender_id, min(received_at_ms)
      FROM new_messages
     GROUP BY channel_pk, conversation_id, sender_id
     ORDER BY min(pk)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

-- What each person has read: a conversation is unread for them when the customer wrote after
-- `read_through_ms` (the conversation's last incoming message when they last opened it), or
-- when they marked it unread.
CREATE TABLE inbox_reads (
    token_id        TEXT    NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    channel_pk      BIGINT  NOT NULL,
    conversation_id TEXT    NOT NULL,
    read_through_ms BIGINT  NOT NULL,
    marked_unread   BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (token_id, channel_pk, conversation_id),
    FOREIGN KEY (channel_pk, conversation_id)
        REFERENCES conversations (channel_pk, conversation_id) ON DELETE CASCADE
);

-- The inbox's search over message text: a GIN index of each message's words (the `simple`
-- configuration: no language's stemming, ids and names kept as written). PostgreSQL keeps it
-- on every insert, edit and delete.
CREATE INDEX messages_search
    ON messages USING gin (to_tsvector('simple'::regconfig, (payload::jsonb) ->> 'message'));

-- And over participants' names and ids.
CREATE INDEX participants_search
    ON participants USING gin (
        to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || participant_id));
