-- API tokens of the hub. Only a SHA-256 of each token is kept: a copy of the database does not
-- give access to the API.
CREATE TABLE api_tokens (
    pk            INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,  -- public handle, for `token list` and `token revoke`
    name          TEXT    NOT NULL,
    sha256        BLOB    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;
