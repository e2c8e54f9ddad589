-- The relay's outbox: every call for a remote Channels API is written here before anything
-- else, then delivered until the upstream accepts it or rejects it for good.
CREATE TABLE outbox (
    pk                 INTEGER PRIMARY KEY,       -- the outbox id; also the acceptance order
    operation          TEXT    NOT NULL,          -- receive_message, add_channel, ...
    channel_key        TEXT    NOT NULL,          -- the channel it concerns
    conversation_key   TEXT,                      -- the conversation; NULL for channel-wide calls
    request            TEXT    NOT NULL,          -- the call: {"method","path","body"}
    dedupe             BLOB    NOT NULL UNIQUE,   -- SHA-256 of the request: the same call once
    state              TEXT    NOT NULL DEFAULT 'pending'
                               CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_until_ms     INTEGER,                   -- set while a relay is sending it
    last_error         TEXT,
    response           TEXT,                      -- the upstream's answer once delivered
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX outbox_pending ON outbox (state, pk);
