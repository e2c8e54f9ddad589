-- The web inbox's logins. A browser holds a session cookie, never an API token; the hub keeps a
-- SHA-256 of the cookie only. A one-time login link (`pdchannels inbox link`) works once, for
-- 10 minutes. Neither is copied by `db copy`: people log in again.
CREATE TABLE inbox_sessions (
    sha256        BLOB    PRIMARY KEY,
    token_id      TEXT    NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    csrf          TEXT    NOT NULL,  -- the form token every POST of this session must carry
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE inbox_login_links (
    sha256        BLOB    PRIMARY KEY,
    token_id      TEXT    NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
) STRICT;

-- The inbox lists every channel's conversations together, newest activity first.
CREATE INDEX conversations_by_activity_everywhere
    ON conversations (last_activity_ms DESC, channel_pk DESC, conversation_id DESC);
