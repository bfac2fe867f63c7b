-- Every request a push sent to its target, with its outcome: one row per
-- create, update, remove or bulk body (user by external id, the target's id).
CREATE TABLE push_requests (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    external_id TEXT,
    target_id   TEXT,
    status      INTEGER,
    error       TEXT,
    PRIMARY KEY (run_id, seq)
);

-- A running push's progress: requests sent so far.
ALTER TABLE runs ADD COLUMN pushed INTEGER;
