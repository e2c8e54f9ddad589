-- The pending calls waiting out the backoff of earlier failures, by when they are due. When a
-- send succeeds after failures (the upstream answers again) the relay makes them all due now;
-- this index holds only them, so that costs a seek and a step per such call, not a scan of
-- every pending call (50,000 queued by an import, say).
CREATE INDEX outbox_in_backoff ON outbox (next_attempt_at_ms)
    WHERE state = 'pending' AND first_failed_at_ms IS NOT NULL;
