-- Retention of refused deliveries (paired with migrations/sqlite/0004_refused_retention.sql).
-- `retention.refused_days` deletes journal rows with outcome `rejected` received before a
-- cutoff; this partial index finds them without reading the accepted rows.
CREATE INDEX callbacks_refused_received_at ON callbacks (received_at) WHERE outcome = 'rejected';
