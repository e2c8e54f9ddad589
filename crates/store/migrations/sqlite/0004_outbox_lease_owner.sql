-- Which process holds a lease: a relay starting up takes back the calls of relays that died
-- (their process is gone), not those of relays still running on the same database (several
-- `pdchannels mcp --upstream` started by different MCP clients, say).
-- `PID:START` (see crates/store/src/lease_owner.rs).
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
