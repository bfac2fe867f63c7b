-- Users, runs, and what a run leaves behind for `history`.
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    email        TEXT COLLATE NOCASE UNIQUE,
    first_name   TEXT,
    last_name    TEXT,
    external_id  TEXT UNIQUE,
    username     TEXT,
    phone        TEXT,
    job          TEXT,
    department   TEXT,
    extra_fields TEXT NOT NULL DEFAULT '{}',
    active       INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    source       TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    integration TEXT NOT NULL,
    action      TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    fetched     INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX runs_by_integration ON runs (integration, id);

-- Why a record was skipped: one row per skipped record (capped per run).
CREATE TABLE run_skips (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    record INTEGER NOT NULL,
    key    TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX run_skips_by_run ON run_skips (run_id);

-- Every HTTP request a run made, URLs redacted.
CREATE TABLE run_requests (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    step    TEXT NOT NULL,
    method  TEXT NOT NULL,
    url     TEXT NOT NULL,
    status  INTEGER,
    bytes   INTEGER,
    millis  INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    error   TEXT,
    PRIMARY KEY (run_id, seq)
);

-- The integration that owns a user: it created the user, or a sync matched it.
CREATE TABLE ownership (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    integration TEXT NOT NULL
);
CREATE INDEX ownership_by_integration ON ownership (integration);
