-- Whether a run was a dry run, whatever its status: a dry run that failed is
-- a failed dry run, not a failed real run (metrics and the status page tell
-- them apart). Earlier dry runs that finished are marked by their status.
ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET dry_run = 1 WHERE status = 'dry-run';

-- A failed or held run's error in rosterd's own words (step, host, HTTP
-- status, the limit), never what a source answered: what the public status
-- page shows. The full error stays in `error`.
ALTER TABLE runs ADD COLUMN summary TEXT;
