-- How long a run took, in milliseconds (started_at and finished_at are whole
-- seconds, so a fast run measured from them took 0 s).
ALTER TABLE runs ADD COLUMN duration_ms INTEGER;
