-- Rate limits shared by every hub on this database: one row per API token, locked for the
-- moment of each decision, so N hubs never admit N times a token's limit.
--
-- The two placeholder tables of 0001 were never used.
DROP TABLE rate_limit_buckets;
DROP TABLE rate_limit_days;

CREATE TABLE rate_limit_usage (
    token_id    TEXT     PRIMARY KEY,
    -- When each request of the rolling 2-second window was admitted (ms since the epoch, by
    -- the database's clock, so hubs on machines whose clocks differ still agree).
    admitted_ms BIGINT[] NOT NULL DEFAULT '{}',
    -- The UTC day (days since the epoch) that `spent` counts.
    day         BIGINT   NOT NULL DEFAULT 0,
    spent       BIGINT   NOT NULL DEFAULT 0
);
