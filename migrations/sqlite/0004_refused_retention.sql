-- SQLite twin of migrations/postgres/0004_refused_retention.sql: same index, same meaning.
-- `retention.refused_days` deletes journal rows with outcome `rejected` received before a
-- cutoff; this partial index finds them without reading the accepted rows.
CREATE INDEX callbacks_refused_received_at ON callbacks (received_at) WHERE outcome = 'rejected';
