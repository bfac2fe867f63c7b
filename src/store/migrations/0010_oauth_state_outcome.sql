-- A state a callback took stays until it expires, with how its code
-- exchange ended, so the `rosterd oauth NAME` that handed it out learns the
-- outcome from the daemon however slow the provider: taken (single use),
-- finished, and the error of an exchange that failed (NULL: it stored the token).
ALTER TABLE oauth_states ADD COLUMN taken INTEGER NOT NULL DEFAULT 0;
ALTER TABLE oauth_states ADD COLUMN finished INTEGER NOT NULL DEFAULT 0;
ALTER TABLE oauth_states ADD COLUMN error TEXT;
