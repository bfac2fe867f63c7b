-- Import asks whether a username is taken (case-insensitively) for each user
-- it creates; without an index each question read every user. Partial: users
-- without a username (most users an integration creates) cost nothing here.
CREATE INDEX users_by_username ON users (username COLLATE NOCASE) WHERE username IS NOT NULL;
