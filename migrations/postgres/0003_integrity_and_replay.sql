-- Integrity and replay (paired with migrations/sqlite/0003_integrity_and_replay.sql).

-- status_rank is 0 (PENDING) to 3 (final), as protocol::Status::rank gives it. A write that
-- breaks this is a bug; the constraint makes it fail that write alone (group commit retries
-- the rest of its batch one by one), instead of storing a record no merge can rank.
ALTER TABLE verifications ADD CONSTRAINT verifications_status_rank
    CHECK (status_rank BETWEEN 0 AND 3);

-- Which configured API secret verified a delivery: `current` or `previous-N` (the N-th of
-- megvii.previous_secrets at the time). Never the secret or anything derived from it. NULL
-- for deliveries that were not verified (or were journaled before this column existed).
ALTER TABLE callbacks ADD COLUMN key_id TEXT;

-- When `replay` stored a refused delivery (its outcome then reads `replayed`).
ALTER TABLE callbacks ADD COLUMN replayed_at BIGINT;

-- Replay walks the refused deliveries by id.
CREATE INDEX callbacks_refused ON callbacks (id) WHERE outcome = 'rejected';
