-- SQLite twin of migrations/postgres/0005_push.sql: same tables, columns and meaning.
-- Push: endpoints, the transactional outbox of events, per-endpoint deliveries and every
-- attempt (paired with migrations/postgres/0005_push.sql). Times are epoch milliseconds.

-- Where outcomes are pushed (managed over /api/v1/endpoints, scope admin).
CREATE TABLE push_endpoints (
    id                   TEXT PRIMARY KEY,          -- ep_<32 hex>
    url                  TEXT NOT NULL,             -- checked by the target policy when set
    events               TEXT NOT NULL,             -- comma-separated event types, sorted
    include_pii          INTEGER NOT NULL,          -- data unmasked (otherwise as a plain token sees it)
    description          TEXT,
    secret               TEXT NOT NULL,             -- whsec_…, sealed with encryption.key when set
    previous_secret      TEXT,                      -- signs beside `secret` until previous_expires_at
    previous_expires_at  BIGINT,
    disabled_at          BIGINT,                    -- NULL while enabled
    disabled_reason      TEXT,
    failing_since        BIGINT,                    -- first failed attempt since the last success
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- The outbox: one compact row per event, written in the transaction of the change it
-- reports. `data` is not stored: it is rendered from the record (or journal row) when sent.
CREATE TABLE push_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,             -- write order (not commit order)
    id           TEXT NOT NULL UNIQUE,              -- evt_<32 hex>: the webhook-id
    type         TEXT NOT NULL,                     -- verification.completed / followup.ended / callback.refused
    subject      TEXT NOT NULL,                     -- the biz_id, or the refusal bucket
    journal_id   BIGINT,                            -- callback.refused: the refusal that opened it
    created_at   BIGINT NOT NULL,
    position     BIGINT UNIQUE                      -- publication order, gap-free, set by the dispatcher
);
-- One callback.refused per bucket (route, minute): bursts coalesce.
CREATE UNIQUE INDEX push_events_refused_bucket ON push_events (subject) WHERE type = 'callback.refused';
CREATE INDEX push_events_unpublished ON push_events (seq) WHERE position IS NULL;
CREATE INDEX push_events_subject ON push_events (subject, seq);

-- The one counter publication takes (and locks) so positions become visible in order.
CREATE TABLE push_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_position  BIGINT NOT NULL
);
INSERT INTO push_state (id, last_position) VALUES (1, 0);

-- One event for one endpoint.
CREATE TABLE push_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq        BIGINT NOT NULL REFERENCES push_events (seq),
    endpoint_id      TEXT NOT NULL,
    state            TEXT NOT NULL,                 -- pending / delivered / failed
    attempts         INTEGER NOT NULL DEFAULT 0,    -- made so far (the schedule's attempt number)
    next_attempt_at  BIGINT,                        -- when pending
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_code        TEXT,                          -- `HTTP 503`, `timeout`, … of the last attempt
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (event_seq, endpoint_id)
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX push_deliveries_endpoint ON push_deliveries (endpoint_id, state);

-- Every attempt: when, what came back, how long it took. `answer` is the first KiB of the
-- endpoint's answer (never logged).
CREATE TABLE push_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq    BIGINT NOT NULL,
    endpoint_id  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    at           BIGINT NOT NULL,
    status       INTEGER,                           -- HTTP status, NULL when there was no answer
    latency_ms   BIGINT NOT NULL,
    outcome      TEXT NOT NULL,                     -- delivered / retry / gone / gave_up
    code         TEXT NOT NULL,                     -- `HTTP 200`, `timeout`, `forbidden_address`, …
    answer       BLOB NOT NULL
);
CREATE INDEX push_attempts_event ON push_attempts (event_seq, id);
CREATE INDEX push_attempts_endpoint ON push_attempts (endpoint_id, id);
