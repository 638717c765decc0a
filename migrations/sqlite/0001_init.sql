-- SQLite twin of migrations/postgres/0001_init.sql: same tables, columns and meaning.
-- One row per biz_id: the best result we know, and how we learned it.
-- Times are epoch milliseconds (BIGINT) so both engines compare them identically.
CREATE TABLE verifications (
    biz_id       TEXT PRIMARY KEY,
    biz_no       TEXT,
    status       TEXT NOT NULL,              -- PENDING until a result is known, then FaceID's status
    status_rank  INTEGER NOT NULL,           -- 0 pending, 1 not started/unknown, 2 processing, 3 final
    liveness     TEXT,                       -- PASS / FAIL / NULL
    confidence   REAL,           -- verify_result.result_faceid.confidence
    source       TEXT NOT NULL,              -- notify / return / get_result
    signed       INTEGER NOT NULL,           -- the result came with a valid sign
    result       TEXT,                       -- raw FaceID JSON, byte-exact, images stripped
    image_names  TEXT,                       -- comma-separated names of stored images
    revision     INTEGER NOT NULL,           -- 0 while PENDING, 1 with the first result, +1 per applied update
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX verifications_biz_no ON verifications (biz_no);
CREATE INDEX verifications_newest ON verifications (created_at DESC, biz_id DESC);

-- Every callback delivery that reached us, accepted or not.
CREATE TABLE callbacks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,              -- notify / return_post / return_get
    biz_id       TEXT,
    verified     INTEGER NOT NULL,           -- the sign checked out
    outcome      TEXT NOT NULL,              -- stored / duplicate / pending / rejected
    reason       TEXT,                       -- why it was rejected (never the content)
    received_at  BIGINT NOT NULL,
    remote_addr  TEXT,
    content_type TEXT,
    body_sha256  TEXT NOT NULL,
    body_len     BIGINT NOT NULL,            -- the full length, even when body is capped
    body         BLOB NOT NULL              -- raw body, capped at the body limit
);
CREATE INDEX callbacks_biz_id ON callbacks (biz_id, id DESC);

-- Follow-up get_result work, one row per biz_id. calls_used is the durable budget: it is
-- incremented before every call and never reset.
CREATE TABLE fetch_jobs (
    biz_id          TEXT PRIMARY KEY,
    state           TEXT NOT NULL,           -- none / pending / done / not_found / expired / exhausted / failed
    calls_used      INTEGER NOT NULL DEFAULT 0 CHECK (calls_used BETWEEN 0 AND 3),
    next_at         BIGINT,
    window_ends_at  BIGINT NOT NULL,
    return_image    INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX fetch_jobs_due ON fetch_jobs (state, next_at);

-- Images decoded from get_result answers, kept apart from the result JSON.
CREATE TABLE images (
    biz_id      TEXT NOT NULL,
    name        TEXT NOT NULL,               -- image_best, image_idcard_front, ...
    jpeg        BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (biz_id, name)
);
