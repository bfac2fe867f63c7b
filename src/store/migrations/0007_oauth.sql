-- OAuth tokens, one per integration: the latest token response as JSON (the
-- values are secrets; only `rosterd oauth NAME --status` reads this table,
-- and it prints field names only) and when it expires (unix seconds; NULL:
-- the provider gave no expires_in).
CREATE TABLE oauth_tokens (
    integration TEXT PRIMARY KEY,
    response    TEXT NOT NULL,
    expires_at  INTEGER,
    updated_at  TEXT NOT NULL
);

-- The `state` of authorize links handed out and not yet used: single use,
-- with an expiry (unix seconds), so the daemon's callback route can check it.
CREATE TABLE oauth_states (
    state        TEXT PRIMARY KEY,
    integration  TEXT NOT NULL,
    redirect_url TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
);
