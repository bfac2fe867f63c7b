-- Which process runs a run (so a `running` or `queued` row whose process is
-- gone reads as interrupted at once, not at that integration's next run), and
-- how many pages it fetched (kept when a run fails after fetching).
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN pages INTEGER NOT NULL DEFAULT 0;
