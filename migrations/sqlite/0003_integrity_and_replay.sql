-- SQLite twin of migrations/postgres/0003_integrity_and_replay.sql: same columns and meaning.

-- status_rank is 0 (PENDING) to 3 (final). SQLite cannot add a CHECK to an existing table,
-- so two triggers enforce it; RAISE(ABORT) fails the statement with SQLITE_CONSTRAINT, as a
-- CHECK would.
CREATE TRIGGER verifications_status_rank_insert BEFORE INSERT ON verifications
WHEN NEW.status_rank NOT BETWEEN 0 AND 3
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: verifications_status_rank');
END;
CREATE TRIGGER verifications_status_rank_update BEFORE UPDATE OF status_rank ON verifications
WHEN NEW.status_rank NOT BETWEEN 0 AND 3
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: verifications_status_rank');
END;

-- Which configured API secret verified a delivery: `current` or `previous-N`.
ALTER TABLE callbacks ADD COLUMN key_id TEXT;

-- When `replay` stored a refused delivery (its outcome then reads `replayed`).
ALTER TABLE callbacks ADD COLUMN replayed_at BIGINT;

-- Replay walks the refused deliveries by id.
CREATE INDEX callbacks_refused ON callbacks (id) WHERE outcome = 'rejected';
