-- What a run that went through says an admin should know (a mapped path that
-- matched no record), one line each.
ALTER TABLE runs ADD COLUMN warnings TEXT;
