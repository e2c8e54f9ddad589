-- Every call is its own row: the outbox no longer collapses calls by the hash of their request
-- (an add, delete, add again of one channel, or an edit A -> B -> A, are each three calls that
-- must all be sent). A caller that may repeat the *same* call (an import resumed after a crash)
-- names it with an idempotency key; only calls with equal keys are one row.
--
-- Delivery goes by lanes: one per conversation, plus one per channel for its channel-wide calls.
-- A claim looks at the head of each lane, so a conversation whose head keeps failing holds back
-- only itself, whatever the backlog behind it.
--
-- SQLite cannot drop a UNIQUE column: the table is rebuilt (ids, states and leases kept).
CREATE TABLE outbox_rebuilt (
    pk                 INTEGER PRIMARY KEY AUTOINCREMENT, -- the outbox id, never reused (a late
                                                  -- settle of a dropped call must not hit a
                                                  -- new one); also the acceptance order
    operation          TEXT    NOT NULL,          -- receive_message, add_channel, ...
    channel_key        TEXT    NOT NULL,          -- the channel it concerns
    conversation_key   TEXT,                      -- the conversation; NULL for channel-wide calls
    request            TEXT    NOT NULL,          -- the call: {"method","path","body"}
    idempotency_key    TEXT    UNIQUE,            -- the caller's name for a call it may repeat;
                                                  -- NULL (most calls): a call of its own
    state              TEXT    NOT NULL DEFAULT 'pending'
                               CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    lease_until_ms     INTEGER,                   -- set while a relay is sending it
    lease_owner        TEXT,                      -- PID:START of that relay
    first_failed_at_ms INTEGER,                   -- when its failures began (the give-up clock)
    last_error         TEXT,
    response           TEXT,                      -- the upstream's answer once delivered
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
) STRICT;

INSERT INTO outbox_rebuilt (pk, operation, channel_key, conversation_key, request, state,
                            attempts, next_attempt_at_ms, lease_until_ms, lease_owner,
                            last_error, response, created_at_ms, updated_at_ms)
SELECT pk, operation, channel_key, conversation_key, request, state, attempts,
       next_attempt_at_ms, lease_until_ms, lease_owner, last_error, response, created_at_ms,
       updated_at_ms
  FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;

-- `outbox list --state`, stats.
CREATE INDEX outbox_by_state ON outbox (state, pk);
-- A lane's head (its oldest pending call) in one seek.
CREATE INDEX outbox_pending_by_lane ON outbox (channel_key, conversation_key, pk)
    WHERE state = 'pending';

-- The lanes with pending calls. `conversation_key` is '' for a channel's channel-wide lane
-- (conversation ids are never empty), so that it is one key like the others.
CREATE TABLE outbox_lanes (
    channel_key      TEXT NOT NULL,
    conversation_key TEXT NOT NULL,
    PRIMARY KEY (channel_key, conversation_key)
) STRICT, WITHOUT ROWID;

INSERT INTO outbox_lanes (channel_key, conversation_key)
SELECT DISTINCT channel_key, coalesce(conversation_key, '') FROM outbox WHERE state = 'pending';

-- Kept by triggers, so that no writer can forget it: a lane exists while it has pending calls.
CREATE TRIGGER outbox_lane_opens
AFTER INSERT ON outbox WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO outbox_lanes (channel_key, conversation_key)
    VALUES (NEW.channel_key, coalesce(NEW.conversation_key, ''))
    ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER outbox_lane_reopens
AFTER UPDATE OF state ON outbox WHEN NEW.state = 'pending' AND OLD.state <> 'pending'
BEGIN
    INSERT INTO outbox_lanes (channel_key, conversation_key)
    VALUES (NEW.channel_key, coalesce(NEW.conversation_key, ''))
    ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER outbox_lane_closes
AFTER UPDATE OF state ON outbox WHEN OLD.state = 'pending' AND NEW.state <> 'pending'
BEGIN
    DELETE FROM outbox_lanes
     WHERE channel_key = OLD.channel_key
       AND conversation_key = coalesce(OLD.conversation_key, '')
       AND NOT EXISTS (SELECT 1 FROM outbox
                        WHERE state = 'pending' AND channel_key = OLD.channel_key
                          AND conversation_key IS OLD.conversation_key);
END;

CREATE TRIGGER outbox_lane_closes_on_drop
AFTER DELETE ON outbox WHEN OLD.state = 'pending'
BEGIN
    DELETE FROM outbox_lanes
     WHERE channel_key = OLD.channel_key
       AND conversation_key = coalesce(OLD.conversation_key, '')
       AND NOT EXISTS (SELECT 1 FROM outbox
                        WHERE state = 'pending' AND channel_key = OLD.channel_key
                          AND conversation_key IS OLD.conversation_key);
END;
