-- The worker asks, on every round, which conversations have no pending or dead
-- getConversationById call: that question is answered from this index, not by a scan of
-- every call ever made (measured: 70-90 ms a round with 1,000 conversations waiting).
CREATE INDEX app_calls_by_subject ON app_calls (channel_id, subject, endpoint, state);
