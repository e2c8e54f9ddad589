-- When the hub last asked a channel's app about a participant (getSenderById): once for one with
-- `fetch_avatar` and no avatar, at most daily for one whose avatar expires.
ALTER TABLE participants ADD COLUMN sender_fetched_at_ms INTEGER;
