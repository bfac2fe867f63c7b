-- What the last record applied to a user was: a digest of the integration,
-- its action and the record's content, written when a run writes the user.
-- Any other change to the user's content, or to who owns it, drops the row,
-- so a run that finds its own digest on a user knows the user is exactly as
-- that record left it and does not need to read or compare it.
CREATE TABLE applied (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    fingerprint BLOB NOT NULL
);

CREATE TRIGGER applied_user_changed
AFTER UPDATE OF email, first_name, last_name, external_id, username, phone, job, department, extra_fields, active
ON users
BEGIN
    DELETE FROM applied WHERE user_id = OLD.id;
END;

CREATE TRIGGER applied_user_deleted AFTER DELETE ON users
BEGIN
    DELETE FROM applied WHERE user_id = OLD.id;
END;

CREATE TRIGGER applied_owner_changed AFTER UPDATE ON ownership
BEGIN
    DELETE FROM applied WHERE user_id = OLD.user_id;
END;

CREATE TRIGGER applied_owner_deleted AFTER DELETE ON ownership
BEGIN
    DELETE FROM applied WHERE user_id = OLD.user_id;
END;
