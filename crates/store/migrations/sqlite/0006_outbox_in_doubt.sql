-- Whether an earlier send of this call may have reached the upstream without its answer
-- reaching us (a timeout, a connection lost after sending, a relay killed mid-send). A delete
-- retried after such a send and answered 404 was most likely applied by that earlier send.
ALTER TABLE outbox ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0 CHECK (in_doubt IN (0, 1));
