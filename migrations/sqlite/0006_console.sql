-- The operator console (src/console) and the get_result call log (the SQLite twin of
-- migrations/postgres/0006_console.sql).

-- Console sessions, in the database so that every replica serves them. Neither the session
-- id (the cookie) nor the API token is stored: only a hash of the one and a fingerprint of
-- the other.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,          -- hex sha256 of the session id
    token_fp      TEXT NOT NULL,             -- ApiToken::fingerprint (12 hex of sha256), never the token
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,           -- idle expiry counts from here
    expires_at    BIGINT NOT NULL            -- absolute expiry
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);

-- What the console was asked to do, and what it refused: sign-ins (refused ones too, never
-- with the token), sign-outs, refused form posts, reveals, fetches and replays.
CREATE TABLE console_audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    event        TEXT NOT NULL,
    token_fp     TEXT,                       -- the session's token fingerprint, when known
    remote_addr  TEXT,                       -- the client's network (masked like the journal's)
    biz_id       TEXT,
    detail       TEXT                        -- a short code, never request content
);
CREATE INDEX console_audit_at ON console_audit (at);

-- Every get_result call the worker made and what came of it, written in the transaction
-- that records the answer.
CREATE TABLE fetch_calls (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    biz_id     TEXT NOT NULL,
    call_no    INTEGER NOT NULL,             -- the job's calls_used once this call was counted
    called_at  BIGINT NOT NULL,
    outcome    TEXT NOT NULL,                -- result / error
    detail     TEXT                          -- the status answered, or the error code
);
CREATE INDEX fetch_calls_biz_id ON fetch_calls (biz_id, id);

-- The overview counts deliveries by time.
CREATE INDEX callbacks_received_at ON callbacks (received_at);
