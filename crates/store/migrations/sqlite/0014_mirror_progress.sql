-- The notes mirror's progress (issue 13).
--
-- `message_ids`: the messages a segment's note holds as last written (a JSON array). A sealed
-- segment keeps them, so that its continuation takes exactly the day's other messages: a note a
-- person edited, or a full one, is never written again, and nothing it held is written twice.
ALTER TABLE mirror_segments ADD COLUMN message_ids TEXT;

-- The person a segment's note was posted to (set with `creating`): an unknown outcome is
-- reconciled among that person's notes, even if the conversation was linked to another since.
ALTER TABLE mirror_segments ADD COLUMN posted_person_id INTEGER;

-- The mirror's settings that its notes depend on: `time_zone` (a note is a local day: a mirror
-- started with another zone would move messages between notes, so it is refused).
CREATE TABLE mirror_settings (
    name          TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Where the mirror's intake has read up to: messages whose `updated_at_ms` is older were already
-- seen (a restart resumes there instead of reading every message again). One row per reader
-- (`intake`).
CREATE TABLE mirror_cursor (
    name          TEXT    PRIMARY KEY,
    position_ms   INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The intake reads the messages stored or changed since its cursor: O(changes), however long the
-- conversations. One more small index entry per receive.
CREATE INDEX messages_by_update ON messages (updated_at_ms);
