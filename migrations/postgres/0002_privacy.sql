-- Identity data protection (paired with migrations/sqlite/0002_privacy.sql).

-- Retention: when the raw result and images of a verification were purged. The summary
-- columns (status, liveness, confidence, timestamps) are kept.
ALTER TABLE verifications ADD COLUMN purged_at BIGINT;

-- Every read of identity data (a caller with the pii scope): who, what, when.
CREATE TABLE pii_access (
    id           BIGSERIAL PRIMARY KEY,
    token_fp     TEXT NOT NULL,              -- first 12 hex of sha256(token), never the token
    route        TEXT NOT NULL,              -- the route template, e.g. GET /api/v1/verifications/{biz_id}
    biz_id       TEXT,                       -- the record disclosed
    accessed_at  BIGINT NOT NULL
);
CREATE INDEX pii_access_biz_id ON pii_access (biz_id, id DESC);
CREATE INDEX pii_access_time ON pii_access (accessed_at);
